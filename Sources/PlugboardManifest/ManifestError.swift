/// Why a manifest, a `.pbm` file, a registry cache or a plugin was rejected.
///
/// Every message names the file, the line (for `plugin.toml`, when known), the field and the fix,
/// so that the person reading a log at 3am knows what to edit:
///
///     SamplePlugins/usb-logger/plugin.toml:7: match[1].vendor: "04g3" is not a USB vendor id.
///     Fix: write four hex digits such as "046d", or "*" for any vendor.
public struct ManifestError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Which check failed. Stable names: they appear in `--json` output and in the daemon's `/plugins`.
    public enum Check: String, Sendable, Codable, CaseIterable {
        /// `plugin.toml` is not valid TOML.
        case toml
        /// A field is missing, has the wrong type or an invalid value.
        case field
        /// The `.pbm` bytes are not a well-formed manifest (magic, version, length, sections).
        case format
        /// The `.pbm` checksum does not match its bytes.
        case checksum
        /// The plugin's `.so` is missing, unreadable, or differs from the one that was packed.
        case library
        /// The manifest asks for a plugin ABI this host does not speak.
        case abi
        /// `after = [...]` names a plugin that is absent, skipped, failed, or part of a cycle.
        case dependency
        /// Two manifests declare the same plugin name.
        case duplicate
        /// A `.so` has no manifest next to it.
        case missingManifest = "missing-manifest"
        /// The registry cache could not be read or written.
        case registry
        /// The `.pbm`'s signature is missing, unknown, malformed or does not verify (`plugins.require_signature`).
        case signature
    }

    public var check: Check
    /// The file the problem is in (as given by the caller: relative paths stay relative).
    public var file: String
    /// 1-based line in `plugin.toml`, when the problem can be located there.
    public var line: Int?
    /// The field, e.g. `plugin.name`, `match[2].vendor` (rules counted from 1), `header.magic`.
    public var field: String
    /// What is wrong, with the offending value.
    public var problem: String
    /// What to do about it.
    public var fix: String

    public init(_ check: Check, file: String, line: Int? = nil, field: String, problem: String, fix: String) {
        self.check = check
        self.file = file
        self.line = line
        self.field = field
        self.problem = problem
        self.fix = fix
    }

    /// `file:line: field: problem. Fix: fix`
    public var description: String {
        "\(line.map { "\(file):\($0)" } ?? file): \(detail)"
    }

    /// `field: problem. Fix: fix` — for logs that print the file themselves.
    public var detail: String {
        let p = problem.hasSuffix(".") ? problem : problem + "."
        return "\(field): \(p) Fix: \(fix)"
    }
}

extension ManifestError {
    /// `error` itself when it is a `ManifestError` (everything this module throws is), else wrapped.
    public static func from(_ error: any Error, file: String) -> ManifestError {
        (error as? ManifestError) ?? ManifestError(.format, file: file, field: "file", problem: "\(error)", fix: "see the message")
    }
}
