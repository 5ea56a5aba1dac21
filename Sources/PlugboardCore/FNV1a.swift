/// FNV-1a, 64 bits: a fast, non-cryptographic hash of a few bytes (a settle window's device key,
/// a state file's header check). Not a defence against a deliberate collision.
public enum FNV1a {
    public static let offsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    public static let prime: UInt64 = 0x0000_0100_0000_01b3

    /// The hash of `bytes`, continuing from `h`.
    @inlinable @inline(__always)
    public static func hash(_ bytes: UnsafeRawBufferPointer, from h: UInt64 = offsetBasis) -> UInt64 {
        var h = h
        for b in bytes { h = (h ^ UInt64(b)) &* prime }
        return h
    }
}
