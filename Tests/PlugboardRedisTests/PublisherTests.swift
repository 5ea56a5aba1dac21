import CPlugboard
import Foundation
import PlugboardRedis
import Testing

/// Integration tests against a real redis-server each test starts on a free loopback port.
/// Serialized: each one moves 100,000 events and the machine is shared.
@Suite("RedisPublisher against a real redis-server", .serialized)
struct PublisherTests {
    @Test("100,000 events: XLEN 100,000, IDs strictly increasing, every field intact")
    func hundredThousandEventsArriveOnceInOrderWithFieldsIntact() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let gate = SourceGate(released: 100_000)
        let publisher = RedisPublisher(configuration: testConfiguration(server.url))
        try publisher.start(events: GeneratedEventSource(total: 100_000, gate: gate))
        #expect(publisher.flush(timeout: .seconds(300)))
        let stats = publisher.stop()
        #expect(stats.published == 100_000)
        #expect(stats.duplicates == 0 && stats.dropped == 0 && stats.rejected == 0 && stats.pending == 0)

        let client = try server.client()
        #expect(try client.command(["XLEN", publisher.streamKey]) == .integer(100_000))
        expectExactlyOnce(try readAll(client, publisher.streamKey), count: 100_000)
    }

    @Test("redis-server SIGKILLed and restarted mid-run: all 100,000 present exactly once")
    func sigkillAndRestartMidRunKeepsEveryEventExactlyOnce() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let gate = SourceGate(released: 100_000)
        let publisher = RedisPublisher(configuration: testConfiguration(server.url))
        try publisher.start(events: GeneratedEventSource(total: 100_000, gate: gate))

        #expect(eventually { publisher.stats.published >= 30_000 })
        server.kill()
        let killedAt = publisher.stats.published
        // While it is down, events keep coming and are spilled.
        #expect(eventually { !publisher.stats.connected && publisher.stats.spilled > 0 })
        usleep(300_000)
        try server.restart()

        #expect(publisher.flush(timeout: .seconds(300)))
        let stats = publisher.stop()
        #expect(killedAt < 100_000, "the kill happened mid-run")
        #expect(stats.reconnects >= 1)
        #expect(stats.replayed > 0, "the window in flight at the kill was replayed")
        #expect(stats.spilled > 0)
        #expect(stats.dropped == 0 && stats.rejected == 0)
        // Every event acknowledged once (duplicates of replays count as delivered).
        #expect(stats.published == 100_000)

        let client = try server.client()
        #expect(try client.command(["XLEN", publisher.streamKey]) == .integer(100_000))
        expectExactlyOnce(try readAll(client, publisher.streamKey), count: 100_000, fieldStride: 97)
    }

    @Test("a window replayed after a timeout is rejected by Redis as duplicates and stored once")
    func replayedWindowIsStoredExactlyOnce() throws {
        let server = try RedisServer()
        defer { server.stop() }
        var config = testConfiguration(server.url)
        config.connect.commandTimeout = .milliseconds(300)
        let gate = SourceGate(released: 1000)
        let publisher = RedisPublisher(configuration: config)
        try publisher.start(events: GeneratedEventSource(total: 2000, gate: gate))
        #expect(publisher.flush(timeout: .seconds(30)))
        // Freeze the server: the next pipeline reaches its socket but no reply comes back in time.
        server.signal(SIGSTOP)
        gate.release(upTo: 2000)
        #expect(eventually { !publisher.stats.connected && publisher.stats.lastError != nil })
        usleep(200_000)
        // Thawed, it executes the frozen pipeline first; the replay then hits IDs it already has.
        server.signal(SIGCONT)
        #expect(publisher.flush(timeout: .seconds(60)))
        let stats = publisher.stop()
        #expect(stats.replayed > 0)
        #expect(stats.duplicates > 0, "replayed XADDs were rejected as 'equal or smaller'")
        #expect(stats.published == 2000)
        expectExactlyOnce(try readAll(server.client(), publisher.streamKey), count: 2000)
    }

    @Test("Redis down at start: the publisher starts, spills, and delivers once Redis is up")
    func redisDownAtStartSpillsThenDelivers() throws {
        let server = try RedisServer(start: false)
        defer { server.stop() }
        let gate = SourceGate(released: 5000)
        let publisher = RedisPublisher(configuration: testConfiguration(server.url))
        try publisher.start(events: GeneratedEventSource(total: 5000, gate: gate))
        #expect(eventually { publisher.stats.spilled == 5000 })
        #expect(!publisher.stats.connected)
        #expect(publisher.stats.lastError?.contains("could not connect") == true)
        #expect(publisher.stats.published == 0)

        try server.start()
        #expect(publisher.flush(timeout: .seconds(60)))
        let stats = publisher.stop()
        #expect(stats.published == 5000 && stats.dropped == 0)
        expectExactlyOnce(try readAll(server.client(), publisher.streamKey), count: 5000)
    }

    @Test("Redis down and the spill buffer full: the excess is dropped and counted, the rest delivered")
    func spillPastTheBoundDropsAndCounts() throws {
        let server = try RedisServer(start: false)
        defer { server.stop() }
        var config = testConfiguration(server.url)
        config.spillBytes = 64 << 10  // 64 KiB: a few hundred test events
        let gate = SourceGate(released: 3000)
        let publisher = RedisPublisher(configuration: config)
        try publisher.start(events: GeneratedEventSource(total: 3000, gate: gate))
        #expect(eventually { publisher.stats.spilled + publisher.stats.dropped == 3000 })
        let down = publisher.stats
        #expect(down.dropped > 0 && down.spilled > 0 && down.spilled < 3000)

        try server.start()
        #expect(publisher.flush(timeout: .seconds(60)))
        let stats = publisher.stop()
        #expect(stats.published == down.spilled)
        // The oldest events were kept (new ones dropped), in order.
        let entries = try readAll(server.client(), publisher.streamKey)
        #expect(entries.count == Int(down.spilled))
        #expect(entries.compactMap { UInt64($0["sequence"] ?? "") } == Array(1...down.spilled))
    }

    @Test("a second run continues above the first run's IDs, so nothing of it is mistaken for a replay")
    func secondRunIDsStayAboveTheFirstRun() throws {
        let server = try RedisServer()
        defer { server.stop() }
        for run in 0..<2 {
            let gate = SourceGate(released: 1000)
            let publisher = RedisPublisher(configuration: testConfiguration(server.url))
            try publisher.start(events: GeneratedEventSource(total: 1000, gate: gate))
            #expect(publisher.flush(timeout: .seconds(60)))
            let stats = publisher.stop()
            #expect(stats.published == 1000 && stats.duplicates == 0, "run \(run)")
        }
        let entries = try readAll(server.client(), "plugboard:{test-host}:events")
        #expect(entries.count == 2000)
        let ids = entries.compactMap(\.streamID)
        #expect(zip(ids, ids.dropFirst()).allSatisfy { $0 < $1 })
        #expect(ids[999].ms < ids[1000].ms, "the second run has a later epoch")
    }

    @Test("the stream key holding another type is refused at start with the key and the fix")
    func streamKeyOfWrongTypeIsAClearErrorAtStart() throws {
        let server = try RedisServer()
        defer { server.stop() }
        _ = try server.client().command(["SET", "plugboard:{test-host}:events", "not a stream"])
        let publisher = RedisPublisher(configuration: testConfiguration(server.url))
        let error = #expect(throws: RedisError.self) {
            try publisher.start(events: GeneratedEventSource(total: 1, gate: SourceGate(released: 1)))
        }
        #expect(error?.code == .wrongType)
        #expect(error?.description.contains("plugboard:{test-host}:events") == true)
        #expect(error?.fix?.contains("DEL") == true)
    }

    @Test("an XADD refused by Redis (WRONGTYPE after start) is counted and skipped, never fatal")
    func refusedXADDIsCountedAndSkipped() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let gate = SourceGate(released: 10)
        let publisher = RedisPublisher(configuration: testConfiguration(server.url))
        try publisher.start(events: GeneratedEventSource(total: 20, gate: gate))
        #expect(publisher.flush(timeout: .seconds(30)))
        // Someone replaces the stream with a string under the running publisher.
        let client = try server.client()
        _ = try client.command(["DEL", publisher.streamKey])
        _ = try client.command(["SET", publisher.streamKey, "oops"])
        gate.release(upTo: 20)
        #expect(publisher.flush(timeout: .seconds(30)))
        let stats = publisher.stop()
        #expect(stats.published == 10)
        #expect(stats.rejected == 10)
        #expect(stats.pending == 0)
    }

    @Test("plugin output reaches plugboard:{HOST}:plugin:<name>, bounded and counted")
    func pluginOutputReachesItsStream() throws {
        let server = try RedisServer()
        defer { server.stop() }
        var config = testConfiguration(server.url)
        config.pluginMaxRecord = 1024
        let output = TestPluginOutput()
        output.push(plugin: "usb-logger", topic: "alert", data: Array("first".utf8))
        output.push(plugin: "device-counter", topic: "count", data: Array("{\"n\":2}".utf8))
        output.push(plugin: "usb-logger", topic: "big", data: Array(repeating: 0x41, count: 5000))  // too large
        output.push(plugin: "usb-logger", topic: "alert", data: [0, 1, 2, 255])  // binary payload
        let publisher = RedisPublisher(configuration: config)
        try publisher.start(events: GeneratedEventSource(total: 0, gate: SourceGate(released: 0)), pluginOutput: output)
        #expect(publisher.flush(timeout: .seconds(30)))
        let stats = publisher.stop()
        #expect(stats.pluginPublished == 3)
        #expect(stats.pluginRejected == 1)

        let client = try server.client()
        let logger = try client.command(["XRANGE", "plugboard:{test-host}:plugin:usb-logger", "-", "+"])
        guard case .array(let entries) = logger, entries.count == 2 else {
            Issue.record("expected 2 entries, got \(logger.shape)"); return
        }
        guard case .array(let first) = entries[0], case .array(let f0) = first[1],
              case .array(let second) = entries[1], case .array(let f1) = second[1] else {
            Issue.record("bad shape"); return
        }
        #expect(f0 == [.string(Array("topic".utf8)), .string(Array("alert".utf8)), .string(Array("data".utf8)), .string(Array("first".utf8))])
        #expect(f1[3] == .string([0, 1, 2, 255]))
        #expect(try client.command(["XLEN", "plugboard:{test-host}:plugin:device-counter"]) == .integer(1))
    }

    @Test("mode both: each event is XADDed and PUBLISHed as JSON to subscribers")
    func publishModeSendsJSONToSubscribers() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let subscriber = try server.client()
        let channel = "plugboard:{test-host}:events"
        _ = try subscriber.command(["SUBSCRIBE", channel])
        var config = testConfiguration(server.url)
        config.mode = .both
        let publisher = RedisPublisher(configuration: config)
        try publisher.start(events: GeneratedEventSource(total: 3, gate: SourceGate(released: 3)))
        #expect(publisher.flush(timeout: .seconds(30)))
        let stats = publisher.stop()
        #expect(stats.published == 3 && stats.channelPublished == 3)
        let entries = try readAll(try server.client(), channel)
        for seq in 1...3 {
            let message = try subscriber.readReply()
            guard case .array(let parts) = message, parts.count == 3, case .string(let payload) = parts[2] else {
                Issue.record("unexpected message \(message.shape)"); return
            }
            let json = try JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any]
            #expect(json?["sequence"] as? Int == seq)
            #expect(json?["manufacturer"] as? String == "Acme \"Quoted\" \\ Co")
            #expect(json?["product"] as? String == "Widget \u{00FC} \(seq)")
            #expect((json?["id"] as? String)?.hasSuffix("-\(seq)") == true)
            // The payload is what `tail --json` prints for the stream entry (and monitor for the event).
            #expect(String(decoding: payload, as: UTF8.self) == (try StreamTail.json(entries[seq - 1])))
        }
        #expect(try server.client().command(["XLEN", channel]) == .integer(3))
    }
}

