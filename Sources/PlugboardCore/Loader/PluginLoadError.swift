import CPlugboard

/// Why a plugin could not be loaded. Each case renders a message naming the file,
/// the cause and the fix; the host logs it and keeps serving the other plugins.
public struct PluginLoadError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable {
        /// The file could not be read.
        case unreadable(any Error)
        /// Not an ELF shared object.
        case notELF
        /// Built for another machine or word size.
        case wrongArchitecture(found: String, expected: String)
        /// The ELF headers describe something that is not in the file (a truncated or damaged
        /// `.so`: a segment past its end, no dynamic section...). Refused before `dlopen`, which
        /// would map pages past the end of the file and die of SIGBUS on the first touch.
        case malformedELF(reason: String)
        /// `dlopen` failed because a symbol the plugin needs is not defined anywhere.
        case unresolvedSymbol(symbol: String, dlerror: String)
        /// `dlopen` failed for another reason.
        case openFailed(dlerror: String)
        /// No `pb_plugin_entry` symbol.
        case noEntryPoint
        /// No `pb_plugin_entry`, but its C++-mangled name is exported: the entry point was
        /// compiled without C linkage (a C++ file and an older header, or written by hand).
        case mangledEntryPoint(symbol: String)
        /// The plugin answered with an ABI version this host does not speak.
        case abiMismatch(pluginMajor: UInt16, pluginMinor: UInt16)
        /// The entry point refused the host's version (returned non-zero).
        case negotiationRefused(status: Int32)
        /// The plugin table is missing or malformed.
        case invalidTable(reason: String)
        /// `init` returned non-zero.
        case initFailed(status: Int32, lastLog: String?)
        /// A manifest or dependency problem found before loading (the manifests layer fills this).
        case skipped(reason: String)
        /// Reported by a worker process (`code` is one of the codes above, `message` the
        /// worker's whole rendered text), or the worker itself failed (code "worker").
        case isolated(code: String, message: String)
    }

    /// The plugin file.
    public var file: String
    public var kind: Kind

    public init(file: String, kind: Kind) {
        self.file = file
        self.kind = kind
    }

    /// A stable code for the cause, e.g. `no-entry-point`.
    public var code: String {
        switch kind {
        case .unreadable: "unreadable"
        case .notELF: "not-elf"
        case .wrongArchitecture: "wrong-architecture"
        case .malformedELF: "malformed-elf"
        case .unresolvedSymbol: "unresolved-symbol"
        case .openFailed: "dlopen-failed"
        case .noEntryPoint: "no-entry-point"
        case .mangledEntryPoint: "entry-point-mangled"
        case .abiMismatch: "abi-mismatch"
        case .negotiationRefused: "negotiation-refused"
        case .invalidTable: "invalid-table"
        case .initFailed: "init-failed"
        case .skipped: "skipped"
        case .isolated(let code, _): code
        }
    }

    /// For the refusals of the ELF header checks (`ELFImage.inspect`), the cause and the fix
    /// apart, for tools that name the file their own way (`plugboard pack`, `inspect`).
    public var headerCheck: (reason: String, fix: String)? {
        switch kind {
        case .notELF:
            ("not an ELF shared object", "build the plugin with `cc -shared -fPIC`, or remove the file from the plugin directory")
        case .wrongArchitecture(let found, let expected):
            ("built for \(found), but this host is \(expected)", "rebuild the plugin for this machine")
        case .malformedELF(let reason):
            ("malformed ELF, not loaded: \(reason)", "rebuild the plugin and copy the whole .so again, then re-run `plugboard pack`")
        case .noEntryPoint:
            ("no entry point '\(PB_ENTRY_SYMBOL)'", "define it with PB_PLUGIN_ENTRY(in, out) from plugboard.h and export it")
        case .mangledEntryPoint(let symbol):
            ("no entry point '\(PB_ENTRY_SYMBOL)': the entry point was compiled as C++ (mangled name \(symbol))",
             "build with the current plugboard.h, whose PB_PLUGIN_ENTRY declares it extern \"C\", or declare it extern \"C\"")
        default: nil
        }
    }

    public var description: String {
        let host = "\(PB_ABI_MAJOR).\(PB_ABI_MINOR)"
        switch kind {
        case .unreadable(let e):
            return "\(file): cannot read the plugin: \(e) (fix: check the path and its permissions)"
        case .notELF, .wrongArchitecture, .malformedELF, .noEntryPoint, .mangledEntryPoint:
            return "\(file): \(headerCheck!.reason) (fix: \(headerCheck!.fix))"
        case .unresolvedSymbol(let symbol, let text):
            return "\(file): unresolved symbol '\(symbol)' (dlerror: \(text)) (fix: link the library that defines it, or remove the reference)"
        case .openFailed(let text):
            return "\(file): dlopen failed: \(text)"
        case .abiMismatch(let major, let minor):
            return "\(file): plugin speaks ABI \(major).\(minor), this host speaks ABI \(host) (fix: rebuild the plugin against plugboard.h \(PB_ABI_MAJOR).x, minor <= \(PB_ABI_MINOR))"
        case .negotiationRefused(let status):
            return "\(file): the plugin refused host ABI \(host) (entry point returned \(status)) (fix: rebuild the plugin against this host's plugboard.h)"
        case .invalidTable(let reason):
            return "\(file): invalid plugin table: \(reason) (fix: fill pb_plugin_api as plugboard.h describes)"
        case .initFailed(let status, let lastLog):
            let detail = lastLog.map { "; plugin said: \($0)" } ?? ""
            return "\(file): init failed with status \(status) (\(statusName(status)))\(detail) (fix: check the plugin's configuration)"
        case .skipped(let reason):
            return "\(file): skipped: \(reason)"
        case .isolated(_, let message):
            return message
        }
    }
}

/// The `PB_*` name of a status code.
public func statusName(_ status: Int32) -> String {
    switch status {
    case PB_OK: "PB_OK"
    case PB_ERR_GENERIC: "PB_ERR_GENERIC"
    case PB_ERR_ABI: "PB_ERR_ABI"
    case PB_ERR_CONFIG: "PB_ERR_CONFIG"
    case PB_ERR_NOMEM: "PB_ERR_NOMEM"
    case PB_ERR_INVALID: "PB_ERR_INVALID"
    case PB_ERR_UNSUPPORTED: "PB_ERR_UNSUPPORTED"
    case PB_ERR_FULL: "PB_ERR_FULL"
    case PB_ERR_NOT_FOUND: "PB_ERR_NOT_FOUND"
    default: "status \(status)"
    }
}
