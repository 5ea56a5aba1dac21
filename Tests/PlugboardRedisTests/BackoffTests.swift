@testable import PlugboardRedis
import Testing

@Suite("Reconnect backoff")
struct BackoffTests {
    @Test("delays double from the base up to the cap, each jittered within [d/2, d], and reset after success")
    func exponentialWithJitterAndCap() {
        var b = Backoff(base: .milliseconds(100), max: .seconds(2))
        let expected: [UInt64] = [100, 200, 400, 800, 1600, 2000, 2000].map { $0 * 1_000_000 }
        var delays: [UInt64] = []
        for d in expected {
            let delay = b.next()
            delays.append(delay)
            #expect(delay >= d / 2 && delay <= d, "delay \(delay) for ceiling \(d)")
        }
        b.reset()
        #expect(b.next() <= 100_000_000)
        // Jitter: many first delays are not all the same.
        let firsts = Set((0..<50).map { _ -> UInt64 in var x = Backoff(base: .milliseconds(100), max: .seconds(1)); return x.next() })
        #expect(firsts.count > 1)
    }
}
