import CPlugboardSupport

/// The sizes of the batches a worker handed its plugin: a histogram with one writer (the worker
/// thread, or the worker process through its control page) and any number of readers.
///
/// A batch is what was waiting when the worker polled, up to the plugin's ceiling (docs/operations.md,
/// "Memory and batching"), so this is how the batching adapted: all 1s on an idle host, near the
/// ceiling under a burst. One relaxed load and a release store per word per **batch** (not per
/// event): no lock, no allocation, no read-modify-write.
///
/// Storage: `bucketCount` power-of-two buckets (`le` 1, 2, 4 ... 4096), then the number of batches,
/// the events in them and the largest batch: `wordCount` words.
public final class BatchSizes: @unchecked Sendable {
    // @unchecked: the words are written by exactly one thread (the owner worker) through atomic
    // stores and read by others through atomic loads.

    /// Upper bounds of the buckets: 1, 2, 4 ... 4096 (the largest ceiling a manifest or the
    /// daemon allows).
    public static let upperBounds: [Int] = (0..<13).map { 1 << $0 }
    public static let bucketCount = 13
    static let countWord = 13, sumWord = 14, maxWord = 15
    /// Words of storage (`init(storage:)`).
    public static let wordCount = 16

    let words: UnsafeMutablePointer<UInt64>
    let owned: Bool

    public init() {
        words = .allocate(capacity: Self.wordCount)
        words.initialize(repeating: 0, count: Self.wordCount)
        owned = true
    }

    /// A histogram over `wordCount` words someone else owns (a worker process's control page).
    /// The memory must outlive this object.
    public init(storage: UnsafeMutablePointer<UInt64>) {
        words = storage
        owned = false
    }

    deinit { if owned { words.deallocate() } }

    /// The bucket of a batch of `n` events: the smallest power of two at or above it.
    @inline(__always)
    public static func bucket(of n: Int) -> Int {
        n <= 1 ? 0 : min(bucketCount - 1, Int.bitWidth - (n - 1).leadingZeroBitCount)
    }

    @inline(__always)
    func bump(_ i: Int, by n: UInt64) {
        let p = words + i
        pbs_store_release_u64(p, pbs_load_relaxed_u64(p) &+ n)
    }

    /// Records one batch of `n` events. Owner thread only.
    @inline(__always)
    public func record(_ n: Int) {
        bump(Self.bucket(of: n), by: 1)
        bump(Self.countWord, by: 1)
        bump(Self.sumWord, by: UInt64(n))
        let p = words + Self.maxWord
        if UInt64(n) > pbs_load_relaxed_u64(p) { pbs_store_release_u64(p, UInt64(n)) }
    }

    /// Forgets everything (a worker process's page is reused by its restarted process).
    public func reset() {
        for i in 0..<Self.wordCount { pbs_store_release_u64(words + i, 0) }
    }

    /// A copy of the counts. Each is clamped to 2^40: a worker process's control page can be
    /// scribbled on by its plugin, and sums of the counts must not overflow.
    public var snapshot: Snapshot {
        func load(_ i: Int) -> UInt64 { min(pbs_load_acquire_u64(words + i), LatencyHistogram.maxCount) }
        return Snapshot(buckets: (0..<Self.bucketCount).map(load), batches: load(Self.countWord),
                        events: load(Self.sumWord), largest: load(Self.maxWord))
    }

    /// The batch sizes at one moment.
    public struct Snapshot: Sendable, Equatable {
        /// Batches per bucket (`BatchSizes.upperBounds`), not cumulative.
        public var buckets: [UInt64]
        /// Batches handed to the plugin, and the events in them.
        public var batches: UInt64
        public var events: UInt64
        /// The largest batch handed to it.
        public var largest: UInt64

        public static let empty = Snapshot(buckets: Array(repeating: 0, count: BatchSizes.bucketCount), batches: 0, events: 0, largest: 0)

        public init(buckets: [UInt64], batches: UInt64, events: UInt64, largest: UInt64) {
            self.buckets = buckets
            self.batches = batches
            self.events = events
            self.largest = largest
        }

        /// Batches of exactly one event (the first bucket).
        public var single: UInt64 { buckets.first ?? 0 }

        /// Adds another snapshot's counts (a predecessor's, after a hot reload or a restart).
        public func merged(with other: Snapshot) -> Snapshot {
            Snapshot(buckets: zip(buckets, other.buckets).map { $0 &+ $1 }, batches: batches &+ other.batches,
                     events: events &+ other.events, largest: max(largest, other.largest))
        }
    }
}
