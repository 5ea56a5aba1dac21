import Foundation
import PlugboardRedis
import Synchronization
import Testing

/// Reply shapes redis-server never sends for these commands come from `FakeRedisServer`
/// (the only fake in this suite); everything else here is a real redis-server.
@Suite("Unexpected replies never crash", .serialized)
struct UnexpectedReplyTests {
    @Test("XADD answered with integer, array, status and nil: counted as rejected with context, the rest delivered")
    func unexpectedReplyTypesToXADDAreCountedNotFatal() throws {
        let xadds = Atomic<Int>(0)
        let fake = try FakeRedisServer { args, _ in
            if let r = FakeRedisServer.setupReply(args) { return r }
            let k = xadds.add(1, ordering: .relaxed).newValue
            switch k {
            case 1: return Array(":42\r\n".utf8)
            case 2: return Array("*2\r\n$1\r\na\r\n$1\r\nb\r\n".utf8)
            case 3: return Array("+OK\r\n".utf8)
            case 4: return Array("$-1\r\n".utf8)
            default: return Array("$3\r\n1-\(k)\r\n".utf8)
            }
        }
        defer { fake.stop() }
        let url = RedisURL(endpoint: .tcp(host: "127.0.0.1", port: fake.port))
        let publisher = RedisPublisher(configuration: testConfiguration(url))
        try publisher.start(events: GeneratedEventSource(total: 10, gate: SourceGate(released: 10)))
        #expect(publisher.flush(timeout: .seconds(30)))
        let stats = publisher.stop()
        #expect(stats.rejected == 4)
        #expect(stats.published == 6)
        #expect(stats.pending == 0)
    }

    @Test("a malformed reply (protocol error) drops the connection, reconnects and replays; nothing crashes")
    func protocolGarbageReconnectsAndReplays() throws {
        let xadds = Atomic<Int>(0)
        let fake = try FakeRedisServer { args, _ in
            if let r = FakeRedisServer.setupReply(args) { return r }
            let k = xadds.add(1, ordering: .relaxed).newValue
            return k == 3 ? Array("?garbage\r\n".utf8) : Array("$3\r\n1-\(k)\r\n".utf8)
        }
        defer { fake.stop() }
        let url = RedisURL(endpoint: .tcp(host: "127.0.0.1", port: fake.port))
        let publisher = RedisPublisher(configuration: testConfiguration(url))
        try publisher.start(events: GeneratedEventSource(total: 5, gate: SourceGate(released: 5)))
        #expect(publisher.flush(timeout: .seconds(30)))
        let stats = publisher.stop()
        #expect(stats.published == 5)
        #expect(stats.reconnects >= 1)
        #expect(stats.replayed >= 3, "the unanswered window (events 3-5) is replayed")
        #expect(fake.connections.load(ordering: .relaxed) >= 2)
    }

    @Test("XREAD answered with an integer: tail throws an unexpectedReply error naming the command")
    func tailRejectsUnexpectedXREADReply() throws {
        let fake = try FakeRedisServer { args, _ in
            FakeRedisServer.setupReply(args) ?? Array(":7\r\n".utf8)
        }
        defer { fake.stop() }
        var options = StreamTail.Options(url: RedisURL(endpoint: .tcp(host: "127.0.0.1", port: fake.port)), host: "h")
        options.count = 1
        let tail = try StreamTail(options: options)
        let error = #expect(throws: RedisError.self) { try tail.run { _ in } }
        #expect(error?.code == .unexpectedReply)
        #expect(error?.message.contains("XREAD plugboard:{h}:events") == true)
        #expect(error?.message.contains("integer 7") == true)
    }

    @Test("stream entries of the wrong shape are errors, not traps", arguments: [
        RedisReply.integer(3),
        .array([.integer(1)]),
        .array([.array([.string(Array("1-1".utf8))])]),
        .array([.array([.string(Array("1-1".utf8)), .array([.string(Array("odd".utf8))])])]),
        .array([.array([.integer(5), .array([])])]),
    ])
    func malformedEntriesThrow(reply: RedisReply) {
        let error = #expect(throws: RedisError.self) {
            _ = try StreamEntry.entries(fromRange: reply, command: "XRANGE k", server: "redis://x:1/0")
        }
        #expect(error?.code == .unexpectedReply)
        #expect(error?.message.hasPrefix("XRANGE k:") == true)
    }

    @Test("a real key of the wrong type: XRANGE and tail report WRONGTYPE with the key")
    func wrongTypeKeyOnRealServer() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let client = try server.client()
        _ = try client.command(["LPUSH", "plugboard:{h}:events", "x"])
        let error = #expect(throws: RedisError.self) {
            _ = try StreamEntry.entries(fromRange: client.command(["XRANGE", "plugboard:{h}:events", "-", "+"]),
                                        command: "XRANGE plugboard:{h}:events", server: server.url.redacted)
        }
        #expect(error?.code == .wrongType)
        var options = StreamTail.Options(url: server.url, host: "h")
        options.from = "0"
        options.count = 1
        let tail = try StreamTail(options: options)
        let tailError = #expect(throws: RedisError.self) { try tail.run { _ in } }
        #expect(tailError?.code == .wrongType)
        #expect(tailError?.message.contains("plugboard:{h}:events") == true)
    }
}
