import CPlugboardSupport

/// A latency histogram with fine log-linear buckets, read at scrape time.
///
/// Values are nanoseconds. Buckets: 0..7 ns one each, then 8 sub-buckets per power of two
/// (each at most 12.5% wide) up to 2^42 ns (~73 minutes); larger values land in the last bucket.
/// That is fine enough for p50/p95/p99 within 6.25% (the midpoint of a bucket) without HDR.
public struct HistogramSnapshot: Sendable, Equatable {
    /// Per fine bucket (see `LatencyHistogram.bucketCount`), not cumulative.
    public var counts: [UInt64]
    /// Sum of the recorded values, nanoseconds.
    public var sumNanoseconds: UInt64

    public static let empty = HistogramSnapshot(counts: Array(repeating: 0, count: LatencyHistogram.bucketCount), sumNanoseconds: 0)

    public init(counts: [UInt64], sumNanoseconds: UInt64) {
        precondition(counts.count == LatencyHistogram.bucketCount)
        self.counts = counts
        self.sumNanoseconds = sumNanoseconds
    }

    /// Builds a snapshot from individual values (for timings measured once, e.g. plugin load times).
    public init(values nanoseconds: some Sequence<UInt64>) {
        var counts = Array(repeating: UInt64(0), count: LatencyHistogram.bucketCount)
        var sum: UInt64 = 0
        for v in nanoseconds {
            counts[LatencyHistogram.bucket(for: v)] += 1
            sum &+= v
        }
        self.init(counts: counts, sumNanoseconds: sum)
    }

    public var count: UInt64 { counts.reduce(0, +) }

    /// Adds another snapshot (e.g. every plugin's into one).
    public func merged(with other: HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot(counts: zip(counts, other.counts).map { $0 &+ $1 }, sumNanoseconds: sumNanoseconds &+ other.sumNanoseconds)
    }

    /// The value at quantile `q` (0...1) in nanoseconds, as the midpoint of its bucket; nil when empty.
    public func quantile(_ q: Double) -> Double? {
        let total = count
        guard total > 0 else { return nil }
        let rank = max(1, UInt64((q * Double(total)).rounded(.up)))
        var seen: UInt64 = 0
        for (i, c) in counts.enumerated() where c > 0 {
            seen += c
            if seen >= rank {
                let (lo, hi) = LatencyHistogram.bounds(of: i)
                return (Double(lo) + Double(hi)) / 2
            }
        }
        return nil
    }

    /// Cumulative counts at each of `upperBounds` (seconds, ascending) plus the total, for Prometheus.
    /// A fine bucket counts towards the first bound at or above its midpoint.
    public func cumulative(upperBounds: [Double]) -> [UInt64] {
        var out = Array(repeating: UInt64(0), count: upperBounds.count)
        for (i, c) in counts.enumerated() where c > 0 {
            let (lo, hi) = LatencyHistogram.bounds(of: i)
            let mid = (Double(lo) + Double(hi)) / 2 / 1e9
            if let j = upperBounds.firstIndex(where: { mid <= $0 }) {
                out[j] += c
            }
        }
        for j in out.indices.dropFirst() { out[j] += out[j - 1] }
        return out
    }
}

/// A histogram one thread records into and any thread snapshots, without locks or read-modify-write.
///
/// Single writer: only the owning thread (a plugin's worker, the publisher) calls `record`. Each
/// bucket is a plain `UInt64` updated with a relaxed load and a release store (no RMW needed with one
/// writer); readers use acquire loads, so a snapshot sees whole counts, possibly a few events behind.
/// Memory is allocated once; `record` allocates nothing.
public final class LatencyHistogram: @unchecked Sendable {
    // @unchecked: the only mutable state is the buffer behind `storage`, touched exclusively through the
    // atomic load/store helpers of CPlugboardSupport, and written by one thread (documented contract).
    public static let bucketCount = 8 + 40 * 8
    private let storage: UnsafeMutablePointer<UInt64>  // bucketCount counts, then the sum

    public init() {
        storage = .allocate(capacity: Self.bucketCount + 1)
        storage.initialize(repeating: 0, count: Self.bucketCount + 1)
    }

    deinit { storage.deallocate() }

    /// Records one value. Call from the owning thread only.
    @inline(__always)
    public func record(nanoseconds v: UInt64) {
        let p = storage + Self.bucket(for: v)
        pbs_store_release_u64(p, pbs_load_relaxed_u64(p) &+ 1)
        let s = storage + Self.bucketCount
        pbs_store_release_u64(s, pbs_load_relaxed_u64(s) &+ v)
    }

    /// A copy of the counts, from any thread.
    public func snapshot() -> HistogramSnapshot {
        var counts = [UInt64](repeating: 0, count: Self.bucketCount)
        for i in 0..<Self.bucketCount { counts[i] = pbs_load_acquire_u64(storage + i) }
        return HistogramSnapshot(counts: counts, sumNanoseconds: pbs_load_acquire_u64(storage + Self.bucketCount))
    }

    /// The fine bucket of a value in nanoseconds.
    @inline(__always)
    public static func bucket(for v: UInt64) -> Int {
        if v < 8 { return Int(v) }
        let e = 63 - v.leadingZeroBitCount  // 3...63
        let sub = Int((v >> UInt64(e - 3)) & 7)
        return min(8 + (e - 3) * 8 + sub, bucketCount - 1)
    }

    /// The half-open range [lower, upper) of values (nanoseconds) in fine bucket `i`.
    public static func bounds(of i: Int) -> (UInt64, UInt64) {
        if i < 8 { return (UInt64(i), UInt64(i) + 1) }
        let e = (i - 8) / 8 + 3
        let sub = UInt64((i - 8) % 8)
        return ((8 + sub) << UInt64(e - 3), (9 + sub) << UInt64(e - 3))
    }
}
