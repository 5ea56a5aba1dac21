import Foundation
import Logging
import PlugboardCore
import PlugboardRedis
import Testing

/// The publisher as the core wires it: a `RingConsumer` of a real `EventRing` fed by the
/// `synthetic:N` source, and the core's `OutputQueue` for plugin output.
@Suite("RedisPublisher on the core ring", .serialized)
struct RingIntegrationTests {
    @Test("synthetic:20000 through the ring: all in the stream once, in order, with the source's fields")
    func syntheticSourceThroughTheRingArrivesExactlyOnce() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let ring = try EventRing(slotCount: 1024)
        let consumer = ring.makeConsumer(name: "redis")
        let producer = ring.makeProducer()
        producer.flowControl = true  // a finite source waits for the publisher rather than lapping it
        let publisher = RedisPublisher(configuration: testConfiguration(server.url))
        try publisher.start(events: consumer)

        let context = SourceContext(producer: producer, deviceTable: DeviceTable(), logger: Logger(label: "test"))
        let sourceThread = Thread {
            try? SyntheticSource(count: 20_000).run(context)
            producer.close()
        }
        sourceThread.start()

        // The ring closes after the last event; the publisher delivers everything, then waits for stop.
        #expect(eventually(timeout: .seconds(120)) { publisher.stats.published == 20_000 })
        let stats = publisher.stop()
        #expect(stats.lapped == 0 && stats.dropped == 0 && stats.pending == 0)

        let entries = try readAll(server.client(), publisher.streamKey)
        #expect(entries.count == 20_000)
        #expect(entries.compactMap { UInt64($0["sequence"] ?? "") } == Array(1...20_000))
        let ids = entries.compactMap(\.streamID)
        #expect(zip(ids, ids.dropFirst()).allSatisfy { $0 < $1 })
        #expect(entries[0]["vendor_id"] == "1d6b" && entries[0]["product_id"] == "1000")
        #expect(entries[0]["syspath"] == "/sys/devices/synthetic/usb1/1-1")
        #expect(entries[0]["product"] == "Synthetic Device 1")
        #expect(entries[0]["action"] == "add")
        #expect(entries[16]["action"] == "remove")
    }

    @Test("the core OutputQueue drains into plugboard:{HOST}:plugin:<name>, one stream per plugin")
    func outputQueueRecordsReachPluginStreams() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let queue = OutputQueue(maxRecords: 100)
        for i in 0..<50 {
            _ = queue.push(OutputRecord(plugin: i % 2 == 0 ? "usb-logger" : "device-counter",
                                        topic: "t\(i)", payload: Array("payload \(i)".utf8)))
        }
        let ring = try EventRing(slotCount: 16)
        let publisher = RedisPublisher(configuration: testConfiguration(server.url))
        try publisher.start(events: ring.makeConsumer(name: "redis"), pluginOutput: queue)
        #expect(eventually { publisher.stats.pluginPublished == 50 })
        #expect(queue.count == 0)
        publisher.stop()
        let client = try server.client()
        #expect(try client.command(["XLEN", "plugboard:{test-host}:plugin:usb-logger"]) == .integer(25))
        #expect(try client.command(["XLEN", "plugboard:{test-host}:plugin:device-counter"]) == .integer(25))
        let first = try readAll(client, "plugboard:{test-host}:plugin:usb-logger")[0]
        #expect(first["topic"] == "t0" && first["data"] == "payload 0")
    }

    /// A publisher on a fresh server and ring with a linger of an hour: only a full batch, a stop
    /// or a finished source can send what it holds within a test.
    struct Lingering {
        let server: RedisServer
        let ring: EventRing
        let producer: RingProducer
        let queue = OutputQueue(maxRecords: 100)
        let publisher: RedisPublisher
        let context: SourceContext

        init(maxBatch: Int = 1024) throws {
            server = try RedisServer()
            ring = try EventRing(slotCount: 64)
            producer = ring.makeProducer()
            var config = testConfiguration(server.url)
            config.linger = 3_600_000_000_000
            config.maxBatch = maxBatch
            publisher = RedisPublisher(configuration: config)
            try publisher.start(events: ring.makeConsumer(name: "redis"), pluginOutput: queue)
            context = SourceContext(producer: producer, deviceTable: DeviceTable(), logger: Logger(label: "test"))
            #expect(eventually { publisher.stats.connected })
        }
    }

    @Test("linger (1 h here): small batches of events and of plugin output wait for more; a batch that fills up and a stop send at once")
    func smallBatchesLinger() throws {
        let l = try Lingering(maxBatch: 8)
        defer { l.server.stop() }
        let publisher = l.publisher
        let client = try l.server.client()

        // Three events: taken from the ring, held.
        try SyntheticSource(count: 3).run(l.context)
        #expect(eventually(timeout: .seconds(20)) { publisher.stats.pending == 3 })
        Thread.sleep(forTimeInterval: 0.3)
        #expect(publisher.stats.published == 0, "a batch of 3 (of 8) was sent without lingering")
        #expect(try client.command(["XLEN", publisher.streamKey]) == .integer(0))

        // Five more fill the batch: all eight go, without waiting out the hour.
        try SyntheticSource(count: 5).run(l.context)
        #expect(eventually(timeout: .seconds(20)) { publisher.stats.published == 8 }, "a full batch waited for the linger")

        // Plugin output lingers the same way, and a full batch of it goes at once too.
        for i in 0..<3 { _ = l.queue.push(OutputRecord(plugin: "p", topic: "t", payload: Array("r\(i)".utf8))) }
        #expect(eventually(timeout: .seconds(20)) { publisher.stats.pluginPending == 3 })
        Thread.sleep(forTimeInterval: 0.3)
        #expect(publisher.stats.pluginPublished == 0, "3 plugin records (of 8) were sent without lingering")
        for i in 3..<8 { _ = l.queue.push(OutputRecord(plugin: "p", topic: "t", payload: Array("r\(i)".utf8))) }
        #expect(eventually(timeout: .seconds(20)) { publisher.stats.pluginPublished == 8 }, "a full batch of plugin records waited")

        // Two more events are held again; a stop sends them.
        try SyntheticSource(count: 2).run(l.context)
        #expect(eventually(timeout: .seconds(20)) { publisher.stats.pending == 2 })
        #expect(publisher.stats.published == 8)
        let stats = publisher.stop(timeout: .seconds(30))
        #expect(stats.published == 10 && stats.pending == 0, "the stop waited for the linger: \(stats)")
        let entries = try readAll(client, publisher.streamKey)
        #expect(entries.compactMap { UInt64($0["sequence"] ?? "") } == Array(1...10))
    }

    @Test("linger (1 h here): the last events of a finished source (the ring closed) are sent at once")
    func finishedSourceDoesNotLinger() throws {
        let l = try Lingering()
        defer { l.server.stop() }
        try SyntheticSource(count: 2).run(l.context)
        #expect(eventually(timeout: .seconds(20)) { l.publisher.stats.pending == 2 })
        l.producer.close()
        #expect(eventually(timeout: .seconds(20)) { l.publisher.stats.published == 2 }, "a finished source's last batch waited for the linger")
        l.publisher.stop()
    }

    @Test("an idle publisher sleeps until woken: plugin output, an event and a stop each end its sleep, not a timeout (idle wait 1 h)")
    func idlePublisherIsWokenNotPolled() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let queue = OutputQueue(maxRecords: 100)
        let ring = try EventRing(slotCount: 16)
        let producer = ring.makeProducer()
        var config = testConfiguration(server.url)
        config.idleWait = 3_600_000_000_000  // an hour: only a wakeup ends the sleep within the test
        let publisher = RedisPublisher(configuration: config)
        try publisher.start(events: ring.makeConsumer(name: "redis"), pluginOutput: queue)
        #expect(eventually { publisher.stats.connected })
        for round in 1...3 {
            // Asleep again (nothing to do for 100 ms), then a record from a plugin.
            Thread.sleep(forTimeInterval: 0.1)
            _ = queue.push(OutputRecord(plugin: "p", topic: "t\(round)", payload: Array("r\(round)".utf8)))
            #expect(eventually(timeout: .seconds(20)) { publisher.stats.pluginPublished == UInt64(round) },
                    "plugin record \(round) waited for the idle timeout")
        }
        Thread.sleep(forTimeInterval: 0.1)
        let context = SourceContext(producer: producer, deviceTable: DeviceTable(), logger: Logger(label: "test"))
        try SyntheticSource(count: 1).run(context)
        #expect(eventually(timeout: .seconds(20)) { publisher.stats.published == 1 })
        Thread.sleep(forTimeInterval: 0.1)
        let start = ContinuousClock.now
        let stats = publisher.stop(timeout: .seconds(30))
        #expect(ContinuousClock.now - start < .seconds(20), "stop waited for the idle timeout")
        #expect(stats.pending == 0)
    }
}
