#if canImport(Glibc)
import Glibc
#endif

/// A `dlopen`, `dlsym` or `dlclose` failure, with the text `dlerror` gave for it.
public struct DynamicLinkError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `dlopen`, `dlsym` or `dlclose`.
    public var call: String
    /// The library.
    public var path: String
    /// The symbol looked up (for `dlsym`).
    public var symbol: String?
    /// What `dlerror` said, e.g. "libfoo.so: undefined symbol: bar".
    public var message: String

    public init(call: String, path: String, symbol: String? = nil, message: String) {
        self.call = call
        self.path = path
        self.symbol = symbol
        self.message = message
    }

    /// The name after "undefined symbol: " when `dlopen` failed on an unresolved symbol.
    public var undefinedSymbol: String? {
        guard let range = message.firstRange(of: "undefined symbol: ") else { return nil }
        return String(message[range.upperBound...].prefix { $0 != " " && $0 != "," && $0 != "\t" })
    }

    public var description: String {
        "\(call)(\"\(path)\"\(symbol.map { ", \"\($0)\"" } ?? "")): \(message)"
    }
}

/// A shared object opened with `dlopen`. A value: nothing closes it but `close()` (Swift images
/// must never be closed; the owner decides).
public struct DynamicLibrary: @unchecked Sendable {
    // @unchecked: the handle is an opaque token the dynamic linker owns; dlsym/dlclose are
    // thread-safe.
    /// The handle `dlopen` returned.
    public let handle: UnsafeMutableRawPointer
    /// The path it was opened from.
    public let path: String

    /// How symbols are bound and shared.
    public struct Options: OptionSet, Sendable {
        public let rawValue: CInt
        public init(rawValue: CInt) { self.rawValue = rawValue }
        /// Resolve every symbol now (a missing one fails the open, not a later call).
        public static let now = Options(rawValue: RTLD_NOW)
        public static let lazy = Options(rawValue: RTLD_LAZY)
        /// Keep the library's symbols out of later lookups (plugins cannot collide).
        public static let local = Options(rawValue: RTLD_LOCAL)
        public static let global = Options(rawValue: RTLD_GLOBAL)
    }

    /// Opens `path`. The corresponding C function is `dlopen`.
    /// - Throws: `DynamicLinkError` with call `dlopen` and the `dlerror` text.
    public static func open(_ path: String, _ options: Options = [.now, .local]) throws(DynamicLinkError) -> DynamicLibrary {
        _ = system_dlerror()  // clear a stale error, so the text below is this call's
        guard let handle = system_dlopen(path, options.rawValue) else {
            throw DynamicLinkError(call: "dlopen", path: path, message: system_dlerror() ?? "unknown error")
        }
        return DynamicLibrary(handle: handle, path: path)
    }

    /// The address of `name`. The corresponding C function is `dlsym`.
    /// - Throws: `DynamicLinkError` with call `dlsym`, the symbol and the `dlerror` text.
    public func symbol(_ name: String) throws(DynamicLinkError) -> UnsafeMutableRawPointer {
        _ = system_dlerror()
        guard let address = system_dlsym(handle, name) else {
            throw DynamicLinkError(call: "dlsym", path: path, symbol: name,
                                   message: system_dlerror() ?? "\(name) is NULL")
        }
        return address
    }

    /// Closes the library (its code may be unmapped: no pointer into it may be used after).
    /// The corresponding C function is `dlclose`.
    /// - Throws: `DynamicLinkError` with call `dlclose` and the `dlerror` text.
    public func close() throws(DynamicLinkError) {
        guard system_dlclose(handle) == 0 else {
            throw DynamicLinkError(call: "dlclose", path: path, message: system_dlerror() ?? "unknown error")
        }
    }
}
