/// The value checks shared by the `plugin.toml` parser and the `.pbm` reader, so both reject the
/// same things with the same words. Each returns `nil` when fine, else (problem, fix).
public enum ManifestValidation {
    public typealias Finding = (problem: String, fix: String)

    public static let maxNameLength = 64
    public static let maxStringLength = 4096

    public static func pluginName(_ s: String) -> Finding? {
        let bytes = Array(s.utf8)
        guard !bytes.isEmpty else {
            return ("the name is empty", "give the plugin a short name such as \"usb-logger\"")
        }
        guard bytes.count <= maxNameLength else {
            return ("\"\(s.prefix(80))\" is \(bytes.count) bytes long (at most \(maxNameLength))", "use a shorter name")
        }
        let ok = bytes.allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") }
        guard ok, isLowerAlnum(bytes[0]) else {
            return ("\"\(s)\" is not a valid plugin name",
                    "use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit, e.g. \"usb-logger\"")
        }
        return nil
    }

    /// Semantic version MAJOR.MINOR.PATCH, optionally followed by `-pre` and/or `+build` (letters, digits, '.', '-', '+').
    public static func version(_ s: String) -> Finding? {
        let b = Array(s.utf8)
        var i = 0
        var numbers = 0
        while true {
            let start = i
            while i < b.count, isDigit(b[i]) { i += 1 }
            if i == start { break }
            numbers += 1
            if i < b.count, b[i] == UInt8(ascii: "."), numbers < 3 { i += 1 } else { break }
        }
        var ok = numbers == 3 && b.count <= maxNameLength && (i == b.count || (b[i - 1] != UInt8(ascii: ".")))
        if ok, i < b.count {
            ok = (b[i] == UInt8(ascii: "-") || b[i] == UInt8(ascii: "+")) && i + 1 < b.count
                && b[(i + 1)...].allSatisfy { isAlnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "+") }
        }
        return ok ? nil : ("\"\(s)\" is not a semantic version (MAJOR.MINOR.PATCH)", "write a version such as \"1.0.0\" or \"2.1.0-beta.1\"")
    }

    public static func library(_ s: String) -> Finding? {
        if s.isEmpty { return ("the library file name is empty", "name the plugin's shared object, e.g. \"libusb-logger.so\"") }
        if s.contains("/") {
            return ("\"\(s)\" contains '/'",
                    "give only the file name; the .so must sit in the same directory as the manifest")
        }
        if s.utf8.count > 255 { return ("\"\(s.prefix(80))...\" is longer than a file name can be", "use a shorter file name") }
        if !s.hasSuffix(".so") {
            return ("\"\(s)\" does not end in .so", "name the shared object the package builds, e.g. \"libusb-logger.so\"")
        }
        if s.utf8.contains(0) { return ("the file name contains a NUL byte", "remove it") }
        return nil
    }

    public static func abi(major: UInt16, minor: UInt16) -> Finding? {
        if major != HostABI.major {
            return ("plugin ABI \(major).\(minor) is not supported by this host (ABI \(HostABI.major).\(HostABI.minor))",
                    "rebuild the plugin against this plugboard's SDK/include/plugboard.h and set abi = \"\(HostABI.major).\(HostABI.minor)\"")
        }
        if minor > HostABI.minor {
            return ("plugin ABI \(major).\(minor) is newer than this host's \(HostABI.major).\(HostABI.minor)",
                    "upgrade plugboard, or build the plugin against ABI \(HostABI.major).\(HostABI.minor)")
        }
        return nil
    }

    public static func cIdentifier(_ s: String) -> Finding? {
        let b = Array(s.utf8)
        let ok = !b.isEmpty && b.count <= 255 && !isDigit(b[0]) && b.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: "_") }
        return ok ? nil : ("\"\(s)\" is not a C identifier", "use the exported symbol's name, e.g. \"pb_plugin_entry\"")
    }

    public static func signature(_ s: String) -> Finding? {
        let t = s.trimmingSpaces
        if t.isEmpty { return ("the C signature is empty", "write the prototype, e.g. \"pb_status (const pb_negotiate_in *, pb_negotiate_out *)\"") }
        if !t.contains("(") || !t.hasSuffix(")") {
            return ("\"\(s)\" is not a C function signature",
                    "write it as 'return-type (parameter types)', e.g. \"pb_status (const pb_negotiate_in *, pb_negotiate_out *)\"")
        }
        return nil
    }

    public static func configKey(_ s: String) -> Finding? {
        let b = Array(s.utf8)
        let ok = !b.isEmpty && b.count <= maxNameLength
            && b.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }
        return ok ? nil : ("\"\(s)\" is not a valid config key", "use letters, digits, '_', '-' and '.' (at most \(maxNameLength) bytes)")
    }

    public static func serialPattern(_ s: String) -> Finding? {
        if s.isEmpty { return ("the serial pattern is empty", "remove serial to match any serial, or write a pattern such as \"A1B2*\"") }
        if s.utf8.count > 255 { return ("the serial pattern is longer than 255 bytes (the longest serial the host keeps)", "shorten it; use '*' for the rest") }
        if s.utf8.contains(0) { return ("the serial pattern contains a NUL byte", "remove it") }
        return nil
    }

    /// `[worker] nice`: -20...19 (setpriority's range).
    public static func nice(_ n: Int) -> Finding? {
        WorkerSettings.niceRange.contains(n) ? nil
            : ("\(n) is outside -20...19", "write a nice value from -20 (most favoured) to 19 (least); 0 is the default, 10 a background plugin")
    }

    /// Largest CPU number a cpulist may name (glibc's CPU_SETSIZE - 1).
    public static let maxCPU = 1023

    /// `[worker] cpu_affinity`: a cpulist as `taskset -c` takes it ("2", "0-3", "0,2-3"), not empty.
    public static func cpuList(_ s: String) -> Finding? {
        let fix = "write CPU numbers and ranges such as \"2\", \"0-3\" or \"0,2-3\" (taskset -c syntax), or remove the key not to pin"
        if s.isEmpty { return ("the CPU list is empty", fix) }
        for part in s.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count <= 2, bounds.allSatisfy({ !$0.isEmpty && $0.count <= 5 && $0.utf8.allSatisfy(isDigit) }),
                  let lo = Int(bounds[0]), let hi = Int(bounds[bounds.count - 1]) else {
                return ("\"\(part)\" in \"\(s)\" is not a CPU number or a range like 0-3", fix)
            }
            if lo > hi { return ("the range \"\(part)\" runs backwards", "write the smaller CPU first") }
            if hi > maxCPU { return ("CPU \(hi) is past the largest CPU number Linux supports (\(maxCPU))", fix) }
        }
        return nil
    }

    /// A short free-text field (author, license): one line, at most 255 bytes.
    public static func text(_ s: String, what: String, allowEmpty: Bool = false) -> Finding? {
        if s.isEmpty && !allowEmpty { return ("the \(what) is empty", "remove the empty entry") }
        if s.utf8.count > 255 { return ("the \(what) is longer than 255 bytes", "shorten it") }
        if s.contains("\n") || s.utf8.contains(0) { return ("the \(what) contains a line break or NUL", "keep it on one line") }
        return nil
    }

    public static func subsystem(_ s: String) -> Finding? {
        s == "usb" ? nil : ("subsystem \"\(s)\" is not supported (the host only sees USB device events)", "write subsystem = \"usb\" or remove the field")
    }

    /// Problems across fields: product without vendor, dependencies on itself, duplicates.
    public static func crossChecks(_ m: Manifest) -> [(field: String, problem: String, fix: String)] {
        var out: [(String, String, String)] = []
        if m.rules.isEmpty {
            out.append(("match", "the manifest has no [[match]] rule, so the plugin would receive no events",
                        "add a [[match]] table; `subsystem = \"usb\"` alone matches every USB device"))
        }
        for (i, r) in m.rules.enumerated() where r.product != nil && r.vendor == nil {
            out.append(("match[\(i + 1)].product", "a product id without a vendor id matches unrelated devices",
                        "add vendor = \"xxxx\" to this rule"))
        }
        var seen: Set<String> = []
        for d in m.after {
            if d == m.name {
                out.append(("dependencies.after", "the plugin lists itself in after", "remove \"\(d)\" from after"))
            } else if !seen.insert(d).inserted {
                out.append(("dependencies.after", "\"\(d)\" is listed twice", "list each dependency once"))
            } else if let f = pluginName(d) {
                out.append(("dependencies.after", f.problem, f.fix))
            }
        }
        for (i, r) in m.rules.enumerated() {
            for (name, range) in [("vendor", r.vendor), ("product", r.product)] {
                if let range, range.lowerBound > range.upperBound {
                    out.append(("match[\(i + 1)].\(name)", "the range is empty", "write FIRST-LAST with FIRST <= LAST"))
                }
            }
        }
        for a in m.authors {
            if let f = text(a, what: "author") { out.append(("plugin.authors", f.problem, f.fix)) }
        }
        if let f = text(m.license, what: "license", allowEmpty: true) { out.append(("plugin.license", f.problem, f.fix)) }
        var keys: Set<String> = []
        for c in m.config where !keys.insert(c.key).inserted {
            out.append(("config.\(c.key)", "the key appears twice", "keep one"))
        }
        return out
    }

    @inline(__always) static func isLowerAlnum(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7a) || isDigit(c) }
    @inline(__always) static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    @inline(__always) static func isAlnum(_ c: UInt8) -> Bool { isLowerAlnum(c) || (c >= 0x41 && c <= 0x5a) }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\n" || f == "\r" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\n" || l == "\r" { s.removeLast() }
        return String(s)
    }
}
