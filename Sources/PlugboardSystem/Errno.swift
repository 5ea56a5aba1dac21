#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: the `errno` it set, the call's name and the path it was given.
///
/// The description reads `open("/etc/plugboard/x.so"): No such file or directory (errno 2)`;
/// `reason` is the part after the call (`No such file or directory (errno 2)`), for messages that
/// name the file and the call themselves. Creating one does not allocate unless `path` or
/// `detail` is given (the text is looked up when read).
public struct Errno: Error, Sendable, Equatable, CustomStringConvertible {
    /// The `errno` value, e.g. `ENOENT`.
    public var code: CInt
    /// The C function that failed, e.g. `"open"`.
    public var call: String
    /// The path the call was given, if any.
    public var path: String?
    /// More about the failure when the code alone does not say it (e.g. a file shorter than the
    /// mapping asked for).
    public var detail: String?

    public init(code: CInt, call: String, path: String? = nil, detail: String? = nil) {
        self.code = code
        self.call = call
        self.path = path
        self.detail = detail
    }

    /// The error of the last failed call on this thread (reads `errno`).
    @inlinable
    public static func current(_ call: String, path: String? = nil) -> Errno {
        Errno(code: errno, call: call, path: path)
    }

    /// `strerror(code)`, e.g. "Too many open files". The corresponding C function is `strerror`.
    public var text: String { Errno.text(code) }

    /// The text and the number, e.g. "Too many open files (errno 24)", plus the detail if any.
    public var reason: String {
        "\(text) (errno \(code))" + (detail.map { ": \($0)" } ?? "")
    }

    public var description: String {
        (path.map { "\(call)(\"\($0)\")" } ?? call) + ": " + reason
    }

    /// `strerror(code)` as a Swift string.
    public static func text(_ code: CInt) -> String { String(cString: strerror(code)) }
}
