/// Encodes a `Manifest` as `.pbm` bytes (see `PBMFormat` and docs/manifest.md).
///
/// The writer trusts its input to be valid (the TOML parser and the reader validate); the output is
/// deterministic: the same manifest always gives the same bytes.
public enum PBMWriter {
    public static func encode(_ m: Manifest) -> [UInt8] {
        var strings = StringTable()
        func ref(_ s: String) -> (UInt32, UInt32) { strings.add(s) }

        var sections: [(PBMFormat.Kind, [UInt8])] = []

        var plugin = ByteWriter()
        for s in [m.name, m.version, m.library, m.summary, m.license] { plugin.strref(ref(s)) }
        plugin.u16(m.abiMajor); plugin.u16(m.abiMinor); plugin.u32(0)
        sections.append((.plugin, plugin.bytes))

        if let h = m.librarySHA256 {
            var w = ByteWriter()
            w.u32(PBMFormat.hashSHA256)
            w.bytes += h
            sections.append((.libraryHash, w.bytes))
        }

        var worker = ByteWriter()
        worker.u32(m.worker.batch); worker.u32(m.worker.deadlineMs); worker.u16(m.worker.isolation.rawValue)
        worker.u16(0); worker.u32(0)
        sections.append((.worker, worker.bytes))

        var match = ByteWriter()
        for r in m.rules {
            var fields: UInt16 = 0
            if r.vendor != nil { fields |= PBMFormat.MatchField.vendor }
            if r.product != nil { fields |= PBMFormat.MatchField.product }
            if r.deviceClass != nil { fields |= PBMFormat.MatchField.deviceClass }
            if r.interfaceClass != nil { fields |= PBMFormat.MatchField.interfaceClass }
            if r.serial != nil { fields |= PBMFormat.MatchField.serial }
            match.u16(fields)
            match.u16(r.vendor?.lowerBound ?? 0); match.u16(r.vendor?.upperBound ?? 0)
            match.u16(r.product?.lowerBound ?? 0); match.u16(r.product?.upperBound ?? 0)
            match.u8(r.deviceClass ?? 0); match.u8(r.interfaceClass ?? 0); match.u8(r.actions.rawValue)
            match.u8(PBMFormat.subsystemUSB); match.u16(0)
            match.strref(r.serial.map(ref) ?? (0, 0))
        }
        sections.append((.match, match.bytes))

        if !m.config.isEmpty {
            var w = ByteWriter()
            for c in m.config { w.strref(ref(c.key)); w.strref(ref(c.value)) }
            sections.append((.config, w.bytes))
        }
        if !m.exports.isEmpty {
            var w = ByteWriter()
            for e in m.exports { w.strref(ref(e.symbol)); w.strref(ref(e.signature)) }
            sections.append((.exports, w.bytes))
        }
        if !m.after.isEmpty {
            var w = ByteWriter()
            for a in m.after { w.strref(ref(a)) }
            sections.append((.after, w.bytes))
        }
        if !m.authors.isEmpty {
            var w = ByteWriter()
            for a in m.authors { w.strref(ref(a)) }
            sections.append((.authors, w.bytes))
        }
        if m.worker.hasTuning {
            var w = ByteWriter()
            var flags: UInt16 = 0
            var settle: UInt32 = 0
            switch m.worker.settle {
            case .off: break
            case .daemonDefault: flags |= PBMFormat.TuningField.settleDefault
            case .milliseconds(let ms): settle = ms
            }
            if m.worker.nice != nil { flags |= PBMFormat.TuningField.nice }
            if !m.worker.cpuAffinity.isEmpty { flags |= PBMFormat.TuningField.cpuAffinity }
            w.u32(settle); w.u16(flags); w.u8(UInt8(bitPattern: m.worker.nice ?? 0)); w.u8(0)
            w.strref(m.worker.cpuAffinity.isEmpty ? (0, 0) : ref(m.worker.cpuAffinity))
            sections.append((.tuning, w.bytes))
        }
        sections.insert((.strings, strings.bytes), at: 0)

        // Layout: header, section table, then each section's payload aligned to 8.
        var offset = PBMFormat.headerSize + sections.count * PBMFormat.sectionEntrySize
        var table = ByteWriter()
        var body: [UInt8] = []
        for (kind, payload) in sections {
            let pad = (8 - offset % 8) % 8
            body += [UInt8](repeating: 0, count: pad)
            offset += pad
            // Sections newer than format 1.0 are optional: a 1.0 reader skips them.
            let flags = kind == .tuning ? PBMFormat.optionalFlag : 0
            table.u32(kind.rawValue); table.u32(UInt32(offset)); table.u32(UInt32(payload.count)); table.u32(flags)
            body += payload
            offset += payload.count
        }
        var header = ByteWriter()
        header.bytes += PBMFormat.magic
        header.u16(PBMFormat.formatMajor); header.u16(m.worker.hasTuning ? PBMFormat.formatMinorTuning : PBMFormat.formatMinor)
        header.u32(UInt32(offset)); header.u32(0)
        header.u32(UInt32(sections.count)); header.u32(UInt32(PBMFormat.headerSize)); header.u32(0); header.u32(0)
        var file = header.bytes + table.bytes + body
        let crc = file.withUnsafeBytes { CRC32C.checksum($0, skippingFieldAt: PBMFormat.checksumOffset) }
        file.withUnsafeMutableBytes { $0.storeBytes(of: crc.littleEndian, toByteOffset: PBMFormat.checksumOffset, as: UInt32.self) }
        return file
    }
}

/// Deduplicating string table: offset/length pairs into one byte area. Offset 0 is never used by a
/// real string (the area starts with one NUL), so (0, 0) means "absent".
struct StringTable {
    var bytes: [UInt8] = [0]
    var index: [String: (UInt32, UInt32)] = [:]

    mutating func add(_ s: String) -> (UInt32, UInt32) {
        if let r = index[s] { return r }
        let r = (UInt32(bytes.count), UInt32(s.utf8.count))
        bytes += s.utf8
        bytes.append(0)
        index[s] = r
        return r
    }
}

struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { bytes.append(UInt8(v & 0xFF)); bytes.append(UInt8(v >> 8)) }
    mutating func u32(_ v: UInt32) { for s in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
    mutating func u64(_ v: UInt64) { for s in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) } }
    mutating func strref(_ r: (UInt32, UInt32)) { u32(r.0); u32(r.1) }
}
