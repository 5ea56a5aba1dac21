import Foundation
import PlugboardCore
import PlugboardRedis
import Testing

/// Every entry of `key`, oldest first, read with XRANGE in pages.
func readAll(_ conn: RedisConnection, _ key: String) throws -> [StreamEntry] {
    var out: [StreamEntry] = []
    var start = "-"
    while true {
        let page = try StreamEntry.entries(fromRange: conn.command(["XRANGE", key, start, "+", "COUNT", "10000"]),
                                           command: "XRANGE", server: conn.url.redacted)
        out += page
        guard let last = page.last, page.count == 10000 else { return out }
        start = "(" + last.id
    }
}

/// Waits until `condition` holds, polling every 5 ms; false when `timeout` passed first.
func eventually(timeout: Duration = .seconds(30), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(5000)
    }
    return condition()
}

/// Checks that `entries` are events 1...count, each exactly once, IDs strictly increasing, and
/// (for every `fieldStride`-th event) every field equal to what `TestEvents` wrote.
func expectExactlyOnce(_ entries: [StreamEntry], count: Int, fieldStride: Int = 1,
                       sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(entries.count == count, "XLEN-equivalent", sourceLocation: sourceLocation)
    var previous: StreamID?
    var increasing = true
    var seqs: [UInt64] = []
    seqs.reserveCapacity(entries.count)
    var fieldMismatches = 0
    for (i, e) in entries.enumerated() {
        guard let id = e.streamID else {
            Issue.record("entry \(i) has an unreadable ID \(e.id)", sourceLocation: sourceLocation)
            return
        }
        if let previous, !(previous < id) { increasing = false }
        previous = id
        let seq = UInt64(e["sequence"] ?? "") ?? 0
        seqs.append(seq)
        #expect(id.seq == seq, "the ID's sequence part is the event sequence", sourceLocation: sourceLocation)
        if i % fieldStride == 0 {
            let expected = TestEvents.expectedFields(seq)
            let actual = Dictionary(e.fields.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
            if actual != expected {
                fieldMismatches += 1
                if fieldMismatches <= 3 {
                    Issue.record("event \(seq) fields differ: \(actual) vs \(expected)", sourceLocation: sourceLocation)
                }
            }
            #expect(e.fields.map(\.name) == EventField.allCases.map(\.name), sourceLocation: sourceLocation)
        }
    }
    #expect(increasing, "IDs strictly increasing", sourceLocation: sourceLocation)
    #expect(seqs == Array(1...UInt64(max(count, 1))).prefix(count).map { $0 }, "every event once, in order",
            sourceLocation: sourceLocation)
    #expect(fieldMismatches == 0, sourceLocation: sourceLocation)
}

func testConfiguration(_ url: RedisURL, host: String = "test-host") -> RedisPublisher.Configuration {
    var c = RedisPublisher.Configuration(url: url, host: host)
    c.backoffBase = .milliseconds(20)
    c.backoffMax = .milliseconds(200)
    c.connect = RedisConnectOptions(connectTimeout: .milliseconds(500), commandTimeout: .seconds(5))
    return c
}
