/// Exponential backoff with jitter: the n-th delay is uniform in [d/2, d] for d = min(max, base * 2^n).
struct Backoff {
    let base: UInt64
    let max: UInt64
    private(set) var attempt = 0

    init(base: Duration, max: Duration) {
        self.base = UInt64(Swift.max(1_000_000, base.nanoseconds))
        self.max = UInt64(Swift.max(base.nanoseconds, max.nanoseconds))
    }

    /// The next delay in nanoseconds.
    mutating func next() -> UInt64 {
        var d = base
        for _ in 0..<Swift.min(attempt, 64) { d = d >= max / 2 ? max : d * 2 }
        d = Swift.min(d, max)
        attempt += 1
        return d / 2 + UInt64.random(in: 0...(d / 2))
    }

    mutating func reset() { attempt = 0 }
}
