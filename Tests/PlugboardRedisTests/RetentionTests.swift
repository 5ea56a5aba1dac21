import Foundation
import PlugboardRedis
import Testing
import PlugboardTestSupport

/// `redis.retention` (docs/redis.md, "Retention"): the real binary against a real redis-server whose
/// stream already holds entries with explicit IDs in the past (the IDs' milliseconds are what
/// `MINID ~` compares, so writing old IDs is how a test injects time).
@Suite("redis.retention: streams keep a time (MINID ~) or a count (MAXLEN ~), against a real redis-server", .serialized)
struct RetentionTests {
    var plugboard: String { PackagePaths.product("plugboard") }
    static let day: UInt64 = 86_400_000

    /// Small stream nodes: `~` trims whole nodes, and these make the nodes' edges fall where the test puts them.
    func server() throws -> RedisServer { try RedisServer(extraArgs: ["--stream-node-max-entries", "10"]) }

    func emptyDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pb-retention-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    func nowMs() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }

    @Test("retention 1d: entries older than a day are trimmed, an hour-old one and every new event stay; new IDs carry their send time")
    func trimsByTime() throws {
        let server = try server()
        defer { server.stop() }
        let dir = try emptyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = "plugboard:{ret}:events"
        let client = try server.client()
        let start = nowMs()
        // 100 entries two days old and 100 an hour old (explicit IDs: XADD key <ms>-<n>).
        for (ms, label) in [(start - 2 * Self.day, "old"), (start - 3_600_000, "recent")] {
            for n in 1...100 { #expect(try client.command(["XADD", key, "\(ms)-\(n)", "seeded", label]) == .string(Array("\(ms)-\(n)".utf8))) }
        }
        let r = try TestProcess.run(plugboard, ["run", "--plugins", dir, "--source", "synthetic:1000",
                                                 "--redis", "redis://127.0.0.1:\(server.port)/0", "--redis-host", "ret",
                                                 "--redis-retention", "1d"])
        #expect(r.status == 0, "\(r.output.suffix(2000))")
        #expect(r.output.contains("redis_retention=1d (MINID ~)"), "the start line says what is kept")
        let entries = try readAll(client, key)
        let ids = entries.compactMap(\.streamID)
        #expect(!entries.contains { $0["seeded"] == "old" }, "the two-day-old entries are trimmed")
        #expect(entries.filter { $0["seeded"] == "recent" }.count == 100, "the hour-old ones are inside the day")
        #expect(entries.filter { $0["sequence"] != nil }.count == 1000, "every new event is stored")
        #expect(ids.allSatisfy { $0.ms >= start - Self.day }, "nothing older than the window is left")
        #expect(ids.filter { $0.ms >= start }.count == 1000, "new IDs carry the time of their send, not an old epoch")
    }

    @Test("with a time retention the IDs follow the clock through a run: an event sent 1.5 s after another has a later millisecond part")
    func idsFollowTheClock() throws {
        let server = try server()
        defer { server.stop() }
        let dir = try emptyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Without this, every ID of a run carries the run's start: after `retention` of running, MINID
        // would trim the run's own new entries.
        try """
            {"action":"add","syspath":"/sys/devices/test/usb1/1-1"}
            {"action":"remove","syspath":"/sys/devices/test/usb1/1-1","delay_ms":1500}
            """.write(toFile: "\(dir)/session.jsonl", atomically: true, encoding: .utf8)
        for (host, retention) in [("clock", ["--redis-retention", "1d"]), ("epoch", [])] {
            let r = try TestProcess.run(plugboard, ["run", "--plugins", dir, "--source", "replay:\(dir)/session.jsonl",
                                                     "--redis", "redis://127.0.0.1:\(server.port)/0", "--redis-host", host] + retention)
            #expect(r.status == 0, "\(r.output.suffix(2000))")
        }
        let client = try server.client()
        let clock = try readAll(client, "plugboard:{clock}:events").compactMap(\.streamID)
        let epoch = try readAll(client, "plugboard:{epoch}:events").compactMap(\.streamID)
        #expect(clock.count == 2 && epoch.count == 2)
        if clock.count == 2 { #expect(clock[1].ms >= clock[0].ms + 1000, "the second ID says when it was sent: \(clock)") }
        if epoch.count == 2 { #expect(epoch[1].ms == epoch[0].ms, "without a time retention, one epoch per run: \(epoch)") }
    }

    @Test("retention as a count (\"50\") is MAXLEN ~ 50: 1,000 events leave about 50")
    func trimsByCount() throws {
        let server = try server()
        defer { server.stop() }
        let dir = try emptyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try TestProcess.run(plugboard, ["run", "--plugins", dir, "--source", "synthetic:1000",
                                                 "--redis", "redis://127.0.0.1:\(server.port)/0", "--redis-host", "count",
                                                 "--set", "redis.retention=50"])
        #expect(r.status == 0, "\(r.output.suffix(2000))")
        #expect(r.output.contains("redis_maxlen=50"), "\(r.output.suffix(2000))")
        guard case .integer(let n) = try server.client().command(["XLEN", "plugboard:{count}:events"]) else {
            Issue.record("XLEN"); return
        }
        #expect((50...60).contains(n), "MAXLEN ~ 50 with 10-entry nodes keeps 50 to 59: \(n)")
    }

    @Test("bad redis.retention values are refused naming the key, the value and the fix", arguments: [
        ("7x", "\"7x\" is neither a time nor an entry count"),
        ("1.5d", "\"1.5d\" is neither a time nor an entry count"),
        ("-5m", "\"-5m\" is neither a time nor an entry count"),
        ("10s", "\"10s\" is out of range"),
        ("3651d", "\"3651d\" is out of range"),
        ("0", "0 entries is out of range (1 to 1000000000). Fix: to keep every entry, set redis.retention = \"\" and redis.maxlen = 0"),
    ])
    func badValues(value: String, problem: String) throws {
        let r = try TestProcess.run(plugboard, ["config", "check", "--set", "redis.url=redis://127.0.0.1:1/0",
                                                 "--set", "redis.retention=\(value)"])
        #expect(r.status != 0, "\(r.output)")
        #expect(r.output.contains("--set redis.retention=\(value): redis.retention: \(problem)"), "\(r.output)")
        #expect(r.output.contains("Fix: "), "\(r.output)")
    }

    @Test("redis.retention and redis.maxlen both set is refused naming both and where they came from")
    func bothSetIsRefused() throws {
        let dir = try emptyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try TestProcess.run(plugboard, ["run", "--plugins", dir, "--source", "synthetic:1", "--redis", "redis://127.0.0.1:1/0",
                                                 "--redis-retention", "7d", "--redis-maxlen", "5"])
        #expect(r.status == 64, "bad configuration: \(r.output)")
        #expect(r.output.contains("redis.retention (from command line --redis-retention 7d) and redis.maxlen (from command line --redis-maxlen 5) are both set (fix: keep one"),
                "\(r.output)")
    }
}
