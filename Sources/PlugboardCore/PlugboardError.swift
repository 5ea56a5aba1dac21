/// An error a person can act on: what failed, where (file, field), and what to do.
///
/// Messages are written for someone reading a log at 3am: they name the file
/// and the field, say what was expected, and end with the fix.
public struct PlugboardError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A stable machine-readable code, e.g. `loader.no-entry-point`.
    public var code: String
    /// The file concerned, if any.
    public var file: String?
    /// The field, key or symbol concerned, if any.
    public var field: String?
    /// What went wrong.
    public var reason: String
    /// What to do about it.
    public var fix: String?

    public init(code: String, file: String? = nil, field: String? = nil, reason: String, fix: String? = nil) {
        self.code = code
        self.file = file
        self.field = field
        self.reason = reason
        self.fix = fix
    }

    public var description: String {
        var s = ""
        if let file { s += "\(file): " }
        if let field { s += "\(field): " }
        s += reason
        if let fix { s += " (fix: \(fix))" }
        return s
    }
}

