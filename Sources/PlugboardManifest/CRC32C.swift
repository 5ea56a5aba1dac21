/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum inside `.pbm` and registry files.
///
/// Chosen over CRC-32 for its better error detection on short messages; software table lookup is
/// plenty for files of a few kilobytes. Check value: CRC-32C("123456789") == 0xE3069283.
public enum CRC32C {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    /// Continues a CRC over `bytes`. Start with `state = 0xFFFF_FFFF`, finish with `~state`.
    public static func update(_ state: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c = state
        table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        }
        return c
    }

    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        ~update(0xFFFF_FFFF, bytes)
    }

    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }

    /// The checksum of `bytes` with the 4 bytes at `fieldOffset` read as zero (the field that stores it).
    public static func checksum(_ bytes: UnsafeRawBufferPointer, skippingFieldAt fieldOffset: Int) -> UInt32 {
        precondition(fieldOffset >= 0 && fieldOffset + 4 <= bytes.count)
        var c: UInt32 = 0xFFFF_FFFF
        c = update(c, UnsafeRawBufferPointer(rebasing: bytes[0..<fieldOffset]))
        let zeros: (UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0)
        c = withUnsafeBytes(of: zeros) { update(c, $0) }
        c = update(c, UnsafeRawBufferPointer(rebasing: bytes[(fieldOffset + 4)...]))
        return ~c
    }
}
