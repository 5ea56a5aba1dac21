import Foundation
import PlugboardRedis
import Synchronization
import Testing

/// Retryable error replies in the middle of a pipeline, from a real redis-server: a Lua script
/// that runs past `busy-reply-threshold` makes Redis answer every other command `-BUSY` until it
/// ends. A pipeline that straddles the end gets BUSY for its first entries and success for the
/// next: the failed ones can no longer be stored under their IDs (a stream only takes IDs above
/// its top), so they must be reissued, not taken for duplicates of a replay.
@Suite("RedisPublisher: retryable errors mid-pipeline (real redis-server)", .serialized)
struct RetryableErrorTests {
    /// Busy-loops in Lua for `ms` milliseconds.
    static let busyScript = """
        local t = redis.call('TIME')
        local start = t[1] * 1000000 + t[2]
        while true do
          local n = redis.call('TIME')
          if n[1] * 1000000 + n[2] - start > tonumber(ARGV[1]) * 1000 then return 1 end
        end
        """

    @Test("BUSY for some entries of a pipeline and success for later ones: every event stored exactly once")
    func busyMidPipelineLosesNothing() throws {
        let total = 60_000
        var reissuedSeen: UInt64 = 0
        // The straddle is up to timing: up to three runs for at least one reissue.
        for attempt in 1...3 {
            let server = try RedisServer(extraArgs: ["--busy-reply-threshold", "2"])
            defer { server.stop() }
            let gate = SourceGate(released: total)
            let publisher = RedisPublisher(configuration: testConfiguration(server.url))
            try publisher.start(events: GeneratedEventSource(total: total, gate: gate))

            // Scripts of 15 ms, 5 ms apart, while the events stream out.
            let scripts = try server.client()
            var ran = 0
            while publisher.stats.published + publisher.stats.duplicates < UInt64(total) * 9 / 10 && ran < 400 {
                _ = try scripts.command(["EVAL", Self.busyScript, "0", "15"])
                ran += 1
                usleep(5000)
            }
            #expect(publisher.flush(timeout: .seconds(120)))
            let stats = publisher.stop()
            #expect(stats.dropped == 0 && stats.rejected == 0 && stats.pending == 0, "\(stats)")
            #expect(stats.lastError?.contains("BUSY") == true, "the scripts made Redis answer BUSY: \(stats)")

            // Every event exactly once, IDs strictly increasing, each ID's sequence part its event's.
            let entries = try readAll(server.client(), publisher.streamKey)
            var seen = Set<UInt64>()
            var previous: StreamID?
            for e in entries {
                let seq = try #require(UInt64(e["sequence"] ?? ""))
                #expect(seen.insert(seq).inserted, "event \(seq) stored twice")
                let id = try #require(e.streamID)
                #expect(id.seq == seq)
                if let previous { #expect(previous < id) }
                previous = id
            }
            #expect(entries.count == total, "stored \(entries.count) of \(total) (\(stats))")
            let missing = Set(1...UInt64(total)).subtracting(seen)
            #expect(missing.isEmpty, "\(missing.count) events never stored, e.g. \(missing.sorted().prefix(5))")
            #expect(stats.published == UInt64(total), "\(stats)")
            reissuedSeen += stats.reissued
            if reissuedSeen > 0 { break }
            print("attempt \(attempt): no pipeline straddled a script's end; again")
        }
        #expect(reissuedSeen > 0, "no retryable error was followed by a success in the same pipeline in 3 runs")
    }

    @Test("the same for plugin streams and in mode both: every record once per plugin stream, every event once")
    func busyMidPipelineWithPluginsAndPublish() throws {
        let events = 30_000, perPlugin = 15_000
        var reissuedSeen: UInt64 = 0
        for attempt in 1...3 {
            let server = try RedisServer(extraArgs: ["--busy-reply-threshold", "2"])
            defer { server.stop() }
            var config = testConfiguration(server.url)
            config.mode = .both
            let output = TestPluginOutput()
            for i in 1...perPlugin {
                output.push(plugin: "alpha", topic: "n", data: Array("\(i)".utf8))
                output.push(plugin: "beta", topic: "n", data: Array("\(i)".utf8))
            }
            let publisher = RedisPublisher(configuration: config)
            try publisher.start(events: GeneratedEventSource(total: events, gate: SourceGate(released: events)), pluginOutput: output)
            let scripts = try server.client()
            var ran = 0
            while publisher.stats.pluginPublished < UInt64(2 * perPlugin) * 9 / 10 && ran < 400 {
                _ = try scripts.command(["EVAL", Self.busyScript, "0", "15"])
                ran += 1
                usleep(5000)
            }
            #expect(publisher.flush(timeout: .seconds(120)))
            let stats = publisher.stop()
            #expect(stats.pluginPublished == UInt64(2 * perPlugin) && stats.pluginRejected == 0 && stats.pluginPending == 0, "\(stats)")
            #expect(stats.published == UInt64(events) && stats.channelPublished >= UInt64(events), "\(stats)")

            let client = try server.client()
            for plugin in ["alpha", "beta"] {
                let entries = try readAll(client, "plugboard:{test-host}:plugin:\(plugin)")
                let values = entries.compactMap { $0["data"].flatMap { Int($0) } }
                #expect(values.count == perPlugin, "\(plugin): \(values.count) of \(perPlugin)")
                #expect(Set(values) == Set(1...perPlugin), "\(plugin): each record once")
                let ids = entries.compactMap(\.streamID)
                #expect(zip(ids, ids.dropFirst()).allSatisfy { $0 < $1 }, "\(plugin): IDs increasing")
            }
            let stored = try readAll(client, publisher.streamKey).compactMap { $0["sequence"].flatMap { UInt64($0) } }
            #expect(stored.count == events && Set(stored).count == events, "events: \(stored.count) entries, \(Set(stored).count) distinct")
            reissuedSeen += stats.reissued
            if reissuedSeen > 0 { break }
            print("attempt \(attempt): no pipeline straddled a script's end; again")
        }
        #expect(reissuedSeen > 0, "no retryable error was followed by a success in the same pipeline in 3 runs")
    }
}
