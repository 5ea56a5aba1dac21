/// Decodes and validates `.pbm` bytes without trusting any of them.
///
/// Every offset and length is bounds-checked before use, the checksum is verified before any section
/// is interpreted, and the decoded manifest goes through the same value checks as `plugin.toml`.
/// Any input either decodes to a valid `Manifest` or throws a `ManifestError` naming the file, the
/// field (e.g. `section[3].length`, `match[2].vendor`) and the fix; it never traps (fuzzed, see
/// Sources/PlugboardManifestFuzz). This file depends on nothing but the standard library.
public enum PBMReader {
    /// Decodes a `.pbm` file through a memory map.
    public static func decode(contentsOf path: String) throws -> Manifest {
        let map = try MappedFile(path: path, check: .format, field: "file")
        return try decode(map.bytes, file: path)
    }

    public static func decode(_ bytes: [UInt8], file: String) throws -> Manifest {
        try bytes.withUnsafeBytes { raw in try decode(raw, file: file) }
    }

    /// Decodes `.pbm` bytes. `file` is only used in error messages.
    public static func decode(_ raw: UnsafeRawBufferPointer, file: String) throws -> Manifest {
        var r = Reader(raw: raw, file: file)
        return try r.decode()
    }
}

private struct Reader {
    let raw: UnsafeRawBufferPointer
    let file: String
    var strings: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)

    init(raw: UnsafeRawBufferPointer, file: String) {
        self.raw = raw
        self.file = file
    }

    static let repack = "re-create it with `plugboard pack plugin.toml`"

    func fail(_ field: String, _ problem: String, fix: String = Reader.repack, check: ManifestError.Check = .format) -> ManifestError {
        ManifestError(check, file: file, field: field, problem: problem, fix: fix)
    }

    @inline(__always) func u8(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt8 { b[o] }
    @inline(__always) func u16(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
    @inline(__always) func u32(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt32 {
        UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
    }

    mutating func decode() throws -> Manifest {
        // Header: magic, version, length, checksum — in that order, so the message says the most useful thing.
        guard raw.count >= 4, raw[0] == PBMFormat.magic[0], raw[1] == PBMFormat.magic[1],
              raw[2] == PBMFormat.magic[2], raw[3] == PBMFormat.magic[3] else {
            throw fail("header.magic", raw.count < 4 ? "the file is \(raw.count) bytes long, too short for a manifest"
                                                     : "the file does not start with \"PBMF\": it is not a plugboard manifest",
                       fix: "point at a .pbm written by `plugboard pack`, or \(Reader.repack)")
        }
        guard raw.count >= PBMFormat.headerSize else {
            throw fail("header", "the file is \(raw.count) bytes long, shorter than the \(PBMFormat.headerSize)-byte header (truncated)")
        }
        let major = u16(raw, 4), minor = u16(raw, 6)
        guard major == PBMFormat.formatMajor else {
            throw fail("header.format_version", "format version \(major).\(minor) is not supported (this plugboard reads \(PBMFormat.formatMajor).x)",
                       fix: major > PBMFormat.formatMajor ? "upgrade plugboard, or pack the manifest with this plugboard"
                                                          : Reader.repack)
        }
        let length = Int(u32(raw, 8))
        guard length == raw.count else {
            throw fail("header.length", "the header says \(length) bytes but the file has \(raw.count) (truncated or appended to)")
        }
        guard length <= PBMFormat.maxFileSize else {
            throw fail("header.length", "\(length) bytes is larger than the \(PBMFormat.maxFileSize)-byte limit for a manifest")
        }
        let stored = u32(raw, PBMFormat.checksumOffset)
        let actual = CRC32C.checksum(raw, skippingFieldAt: PBMFormat.checksumOffset)
        guard stored == actual else {
            throw fail("header.checksum", "CRC-32C mismatch (stored \(hex(stored)), computed \(hex(actual))): the file is corrupt",
                       fix: Reader.repack, check: .checksum)
        }
        let count = Int(u32(raw, 16))
        let headerSize = Int(u32(raw, 20))
        guard headerSize >= PBMFormat.headerSize, headerSize % 8 == 0, headerSize <= raw.count else {
            throw fail("header.header_size", "\(headerSize) is not a valid header size (at least \(PBMFormat.headerSize), a multiple of 8)")
        }
        guard count >= 1, count <= PBMFormat.maxSections else {
            throw fail("header.section_count", "\(count) sections (expected 1...\(PBMFormat.maxSections))")
        }
        let tableEnd = headerSize + count * PBMFormat.sectionEntrySize
        guard tableEnd <= raw.count else {
            throw fail("header.section_count", "\(count) section entries do not fit in \(raw.count) bytes")
        }

        // Section table: known kinds once each, inside the file, after the table, not overlapping.
        var found: [PBMFormat.Kind: UnsafeRawBufferPointer] = [:]
        var spans: [(start: Int, end: Int, index: Int)] = []
        for i in 0..<count {
            let e = headerSize + i * PBMFormat.sectionEntrySize
            let kindRaw = u32(raw, e), offset = Int(u32(raw, e + 4)), len = Int(u32(raw, e + 8)), flags = u32(raw, e + 12)
            let field = "section[\(i + 1)]"
            guard offset >= tableEnd, offset + len <= raw.count else {
                throw fail("\(field).offset", "bytes \(offset)..<\(offset + len) lie outside the file's \(tableEnd)..<\(raw.count)")
            }
            spans.append((offset, offset + len, i))
            guard let kind = PBMFormat.Kind(rawValue: kindRaw) else {
                if flags & PBMFormat.optionalFlag != 0 { continue }
                throw fail("\(field).kind", "unknown required section kind \(kindRaw): written by a newer plugboard",
                           fix: "upgrade plugboard, or pack the manifest with this plugboard")
            }
            guard found[kind] == nil else {
                throw fail("\(field).kind", "a second \(kind.name) section")
            }
            if kind.isSingle, len != kind.recordSize {
                throw fail("\(field).length", "the \(kind.name) section is \(len) bytes (expected \(kind.recordSize))")
            }
            if kind.recordSize > 0, len % kind.recordSize != 0 {
                throw fail("\(field).length", "the \(kind.name) section is \(len) bytes, not a multiple of its \(kind.recordSize)-byte records")
            }
            found[kind] = UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + len)])
        }
        spans.sort { $0.start < $1.start }
        for j in spans.indices.dropFirst() where spans[j].start < spans[j - 1].end {
            throw fail("section[\(spans[j].index + 1)].offset", "overlaps section[\(spans[j - 1].index + 1)]")
        }
        for required in [PBMFormat.Kind.strings, .plugin, .worker, .match] where found[required] == nil {
            throw fail("section.\(required.name)", "the required \(required.name) section is missing")
        }
        strings = found[.strings]!
        guard strings.count >= 1, strings[0] == 0 else {
            throw fail("strings", "the string table must start with a NUL byte")
        }

        // plugin
        let p = found[.plugin]!
        let name = try string(p, 0, "plugin.name")
        let version = try string(p, 8, "plugin.version")
        let library = try string(p, 16, "plugin.library")
        let summary = try string(p, 24, "plugin.description")
        let license = try string(p, 32, "plugin.license")
        let abiMajor = u16(p, 40), abiMinor = u16(p, 42)
        try check(ManifestValidation.pluginName(name), "plugin.name")
        try check(ManifestValidation.version(version), "plugin.version")
        try check(ManifestValidation.library(library), "plugin.library")
        try check(ManifestValidation.abi(major: abiMajor, minor: abiMinor), "plugin.abi", kind: .abi)

        var hash: [UInt8]?
        if let h = found[.libraryHash] {
            guard u32(h, 0) == PBMFormat.hashSHA256 else {
                throw fail("library-hash.algorithm", "unknown hash algorithm \(u32(h, 0)) (1 = SHA-256)")
            }
            hash = Array(h[4..<36])
        }

        let w = found[.worker]!
        let batch = u32(w, 0), deadline = u32(w, 4), isolationRaw = u16(w, 8)
        guard WorkerSettings.batchRange.contains(Int(batch)) else {
            throw fail("worker.batch", "\(batch) is outside \(WorkerSettings.batchRange)", fix: "set batch in [worker] to 1...4096, then pack again")
        }
        guard WorkerSettings.deadlineRange.contains(Int(deadline)) else {
            throw fail("worker.deadline_ms", "\(deadline) is outside \(WorkerSettings.deadlineRange)")
        }
        guard let isolation = WorkerSettings.Isolation(rawValue: isolationRaw) else {
            throw fail("worker.isolation", "unknown isolation code \(isolationRaw) (0 = thread, 1 = process)")
        }

        var worker = WorkerSettings(batch: batch, deadlineMs: deadline, isolation: isolation)
        if let t = found[.tuning] {
            let settle = u32(t, 0), flags = u16(t, 4), nice = Int8(bitPattern: u8(t, 6))
            guard flags & ~PBMFormat.TuningField.all == 0 else { throw fail("tuning.flags", "unknown flag bits \(hex(UInt32(flags)))") }
            guard WorkerSettings.settleRange.contains(Int(settle)) else {
                throw fail("worker.settle_ms", "\(settle) is outside \(WorkerSettings.settleRange)")
            }
            if flags & PBMFormat.TuningField.settleDefault != 0 {
                guard settle == 0 else { throw fail("worker.settle_ms", "both \"default\" and \(settle) ms are set") }
                worker.settle = .daemonDefault
            } else if settle > 0 {
                worker.settle = .milliseconds(settle)
            }
            if flags & PBMFormat.TuningField.nice != 0 {
                try check(ManifestValidation.nice(Int(nice)), "worker.nice")
                worker.nice = nice
            }
            if flags & PBMFormat.TuningField.cpuAffinity != 0 {
                let cpus = try string(t, 8, "worker.cpu_affinity")
                try check(ManifestValidation.cpuList(cpus), "worker.cpu_affinity")
                worker.cpuAffinity = cpus
            }
        }

        var rules: [MatchRule] = []
        let m = found[.match]!
        for i in 0..<(m.count / 24) {
            let o = i * 24
            let field = "match[\(i + 1)]"
            let fields = u16(m, o)
            guard fields & ~PBMFormat.MatchField.all == 0 else { throw fail("\(field).fields", "unknown field bits \(hex(UInt32(fields)))") }
            let actions = u8(m, o + 12)
            guard actions & ~MatchRule.Actions.validMask == 0 else { throw fail("\(field).actions", "unknown action bits \(hex(UInt32(actions)))") }
            guard u8(m, o + 13) == PBMFormat.subsystemUSB else { throw fail("\(field).subsystem", "unknown subsystem code \(u8(m, o + 13)) (1 = usb)") }
            var rule = MatchRule(actions: MatchRule.Actions(rawValue: actions))
            for (bit, at, name) in [(PBMFormat.MatchField.vendor, 2, "vendor"), (PBMFormat.MatchField.product, 6, "product")]
            where fields & bit != 0 {
                let lo = u16(m, o + at), hi = u16(m, o + at + 2)
                guard lo <= hi else { throw fail("\(field).\(name)", "the range \(lo)...\(hi) is empty") }
                if name == "vendor" { rule.vendor = lo...hi } else { rule.product = lo...hi }
            }
            if fields & PBMFormat.MatchField.deviceClass != 0 { rule.deviceClass = u8(m, o + 10) }
            if fields & PBMFormat.MatchField.interfaceClass != 0 { rule.interfaceClass = u8(m, o + 11) }
            if fields & PBMFormat.MatchField.serial != 0 {
                let s = try string(m, o + 16, "\(field).serial")
                try check(ManifestValidation.serialPattern(s), "\(field).serial")
                rule.serial = s
            }
            rules.append(rule)
        }

        var config: [ConfigEntry] = []
        if let c = found[.config] {
            for i in 0..<(c.count / 16) {
                let key = try string(c, i * 16, "config[\(i + 1)].key")
                try check(ManifestValidation.configKey(key), "config[\(i + 1)].key")
                let value = try string(c, i * 16 + 8, "config.\(key)")
                config.append(ConfigEntry(key: key, value: value))
            }
        }
        var exports: [Export] = []
        if let x = found[.exports] {
            for i in 0..<(x.count / 16) {
                let sym = try string(x, i * 16, "exports[\(i + 1)]")
                try check(ManifestValidation.cIdentifier(sym), "exports[\(i + 1)]")
                let sig = try string(x, i * 16 + 8, "exports.\(sym)")
                try check(ManifestValidation.signature(sig), "exports.\(sym)")
                exports.append(Export(symbol: sym, signature: sig))
            }
        }
        var after: [String] = []
        if let a = found[.after] {
            for i in 0..<(a.count / 8) { after.append(try string(a, i * 8, "dependencies.after[\(i + 1)]")) }
        }
        var authors: [String] = []
        if let a = found[.authors] {
            for i in 0..<(a.count / 8) { authors.append(try string(a, i * 8, "plugin.authors[\(i + 1)]")) }
        }

        let manifest = Manifest(name: name, version: version, library: library, summary: summary,
                                authors: authors, license: license,
                                abiMajor: abiMajor, abiMinor: abiMinor, librarySHA256: hash,
                                worker: worker,
                                rules: rules, config: config, exports: exports, after: after)
        if let c = ManifestValidation.crossChecks(manifest).first {
            throw ManifestError(.field, file: file, field: c.field, problem: c.problem, fix: c.fix + ", then pack again")
        }
        return manifest
    }

    /// A string reference (u32 offset, u32 length) at `o` in `b`, resolved in the string table.
    func string(_ b: UnsafeRawBufferPointer, _ o: Int, _ field: String) throws -> String {
        let off = Int(u32(b, o)), len = Int(u32(b, o + 4))
        if off == 0 && len == 0 { return "" }
        guard off >= 1, off + len < strings.count, strings[off + len] == 0 else {
            throw fail(field, "string reference \(off)+\(len) lies outside the \(strings.count)-byte string table or is not NUL-terminated")
        }
        guard len <= ManifestValidation.maxStringLength else {
            throw fail(field, "a \(len)-byte string is longer than the \(ManifestValidation.maxStringLength)-byte limit")
        }
        let bytes = UnsafeRawBufferPointer(rebasing: strings[off..<(off + len)])
        guard let s = String(validating: bytes, as: UTF8.self), !bytes.contains(0) else {
            throw fail(field, "the string is not valid UTF-8 or contains a NUL byte")
        }
        return s
    }

    func check(_ finding: ManifestValidation.Finding?, _ field: String, kind: ManifestError.Check = .field) throws {
        if let f = finding { throw ManifestError(kind, file: file, field: field, problem: f.problem, fix: f.fix + (kind == .abi ? "" : ", then pack again")) }
    }

    func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }
}
