import CPlugboardSupport

/// A log-linear histogram of nanosecond values with one writer and any number of readers.
///
/// Eight sub-buckets per power of two (12.5 % resolution) from 1 ns to about 18 minutes.
/// The writer does a relaxed load and store per value: no lock, no allocation, no
/// read-modify-write. Readers see a slightly stale but never torn count per bucket.
public final class LatencyHistogram: @unchecked Sendable {
    // @unchecked: `counts` is written by exactly one thread (the owner worker)
    // through atomic stores, and read by others through atomic loads.
    public static let subBucketBits = 3
    public static let octaves = 41
    public static let bucketCount = octaves << subBucketBits

    let counts: UnsafeMutablePointer<UInt64>
    let owned: Bool

    public init() {
        counts = .allocate(capacity: Self.bucketCount)
        counts.initialize(repeating: 0, count: Self.bucketCount)
        owned = true
    }

    /// A histogram over `bucketCount` words someone else owns (a worker process's control
    /// page, written there and read by the host). The memory must outlive this object.
    public init(storage: UnsafeMutablePointer<UInt64>) {
        counts = storage
        owned = false
    }

    /// Bytes of storage `init(storage:)` needs.
    public static var storageSize: Int { bucketCount * MemoryLayout<UInt64>.size }

    deinit { if owned { counts.deallocate() } }

    /// The bucket index of `value` nanoseconds.
    @inline(__always)
    public static func bucket(of value: UInt64) -> Int {
        if value < 8 { return Int(value) }
        let msb = 63 - value.leadingZeroBitCount
        let sub = Int((value >> UInt64(msb - subBucketBits)) & 7)
        return min(((msb - subBucketBits + 1) << subBucketBits) + sub, bucketCount - 1)
    }

    /// The smallest value that falls into `bucket`.
    public static func lowerBound(of bucket: Int) -> UInt64 {
        if bucket < 8 { return UInt64(bucket) }
        let octave = (bucket >> subBucketBits) - 1 + subBucketBits
        let sub = UInt64(bucket & 7)
        return (8 + sub) << UInt64(octave - subBucketBits)
    }

    /// Records one value. Owner thread only.
    @inline(__always)
    public func record(_ nanoseconds: UInt64) {
        let p = counts + Self.bucket(of: nanoseconds)
        pbs_store_release_u64(p, pbs_load_relaxed_u64(p) &+ 1)
    }

    /// A copy of every bucket's count. Each is clamped to 2^40: a histogram in a worker process's
    /// control page can be scribbled on by the plugin, and sums of its counts must not overflow.
    public func snapshot() -> [UInt64] {
        (0..<Self.bucketCount).map { min(pbs_load_acquire_u64(counts + $0), Self.maxCount) }
    }

    /// The largest count a bucket reports (far beyond any real one).
    public static let maxCount: UInt64 = 1 << 40

    /// Values recorded.
    public var total: UInt64 { snapshot().reduce(0, +) }

    /// The value at quantile `q` (0...1), as the upper edge of its bucket; nil when empty.
    public func quantile(_ q: Double) -> UInt64? { Self.quantile(q, of: snapshot()) }

    /// The value at quantile `q` of bucket counts `counts`.
    public static func quantile(_ q: Double, of counts: [UInt64]) -> UInt64? {
        let total = counts.reduce(0, &+)
        guard total > 0 else { return nil }
        let rank = UInt64((Double(total) * q).rounded(.up))
        var seen: UInt64 = 0
        for (i, c) in counts.enumerated() {
            seen &+= c
            if seen >= max(rank, 1) { return i + 1 < bucketCount ? lowerBound(of: i + 1) - 1 : lowerBound(of: i) }
        }
        return nil
    }
}
