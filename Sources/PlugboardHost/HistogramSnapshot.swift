import PlugboardCore

/// A copy of a core `LatencyHistogram`'s fine buckets, taken at scrape time.
///
/// Values are nanoseconds in the core's log-linear layout: 0..7 ns one each, then 8 sub-buckets per
/// power of two (each at most 12.5% wide). That is fine enough for p50/p95/p99 within 6.25% (the
/// midpoint of a bucket) without an HDR histogram. The core keeps no sum, so `sumNanoseconds` of a
/// snapshot taken from the core is estimated from bucket midpoints (same 6.25% bound).
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
            counts[LatencyHistogram.bucket(of: v)] += 1
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
                let (lo, hi) = Self.bounds(of: i)
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
            let (lo, hi) = Self.bounds(of: i)
            let mid = (Double(lo) + Double(hi)) / 2 / 1e9
            if let j = upperBounds.firstIndex(where: { mid <= $0 }) {
                out[j] += c
            }
        }
        for j in out.indices.dropFirst() { out[j] += out[j - 1] }
        return out
    }

    /// A snapshot of a core histogram; the sum is estimated from bucket midpoints.
    public init(_ histogram: LatencyHistogram) {
        let counts = histogram.snapshot()
        var sum: Double = 0
        for (i, c) in counts.enumerated() where c > 0 {
            let (lo, hi) = Self.bounds(of: i)
            sum += Double(c) * (Double(lo) + Double(hi)) / 2
        }
        self.init(counts: counts, sumNanoseconds: UInt64(sum))
    }

    /// The half-open range [lower, upper) of nanosecond values in fine bucket `i`.
    public static func bounds(of i: Int) -> (UInt64, UInt64) {
        let lo = LatencyHistogram.lowerBound(of: i)
        let hi = i + 1 < LatencyHistogram.bucketCount ? LatencyHistogram.lowerBound(of: i + 1) : lo * 2
        return (lo, hi)
    }
}
