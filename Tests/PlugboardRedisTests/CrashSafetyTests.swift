import Foundation
import PlugboardRedis
import Testing
import PlugboardTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// docs/redis.md, "Crash safety": with `state.dir` and `state.ring_dir`, a daemon SIGKILLed at
/// any moment leaves what it received for the next one, which publishes it first (same IDs:
/// exactly once) and continues the sequences. The real binary against a real redis-server.
@Suite("A daemon killed mid-run loses nothing: the next one publishes what it had received (the real binary)", .serialized)
struct CrashSafetyTests {
    typealias RunProcess = RunDeliveryTests.RunProcess
    var plugboard: String { PackagePaths.product("plugboard") }

    /// A plugin directory (empty) and the two state directories.
    struct Dirs {
        /// On a tmpfs (/dev/shm): the state files' writeback would otherwise compete for the disk with
        /// the `appendfsync always` redis-servers of the suites running beside these, stalling them.
        let root = (FileManager.default.fileExists(atPath: "/dev/shm") ? URL(fileURLWithPath: "/dev/shm")
                    : FileManager.default.temporaryDirectory).appendingPathComponent("pb-crash-\(UUID().uuidString)").path
        var plugins: String { root + "/plugins" }
        var state: String { root + "/state" }
        var ring: String { root + "/ring" }
        init() throws {
            for d in [plugins, state, ring] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        }
        func remove() { try? FileManager.default.removeItem(atPath: root) }
        func arguments(_ source: String, redis port: Int, host: String) -> [String] {
            ["run", "--plugins", plugins, "--source", source, "--redis", "redis://127.0.0.1:\(port)/0", "--redis-host", host,
             "--redis-maxlen", "0", "--shutdown-deadline", "60", "--set", "state.dir=\(state)", "--set", "state.ring_dir=\(ring)"]
        }
        /// A UInt64 of a state file's header (320 acked byte ... 344 stored count, 352 last sequence).
        func header(_ file: String, at offset: Int) -> UInt64 {
            guard let f = FileHandle(forReadingAtPath: file) else { return 0 }
            defer { try? f.close() }
            guard let h = try? f.read(upToCount: offset + 8), h.count >= offset + 8 else { return 0 }
            return h[offset..<offset + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) }
        }
        /// The newest sequence the ring file says was published.
        var ringPublished: UInt64 { header(ring + "/ring", at: 64) }
    }

    func xlen(_ client: RedisConnection, _ key: String) -> Int64 {
        if case .integer(let n)? = try? client.command(["XLEN", key]) { return n }
        return -1
    }

    /// Every entry's sequence is 1...count exactly once, and the IDs strictly increase.
    func expectSequences(_ entries: [StreamEntry], count: UInt64, sourceLocation: SourceLocation = #_sourceLocation) {
        let seqs = entries.compactMap { UInt64($0["sequence"] ?? "") }
        #expect(seqs.count == entries.count, "every entry has a sequence", sourceLocation: sourceLocation)
        let unique = Set(seqs)
        #expect(unique.count == seqs.count, "no duplicates: \(seqs.count - unique.count)", sourceLocation: sourceLocation)
        let missing = Set(1...count).subtracting(unique).count
        #expect(unique == Set(1...count), "exactly 1...\(count): \(unique.count) distinct, \(missing) missing", sourceLocation: sourceLocation)
        var increasing = true
        for (a, b) in zip(entries, entries.dropFirst()) where !(a.streamID! < b.streamID!) { increasing = false }
        #expect(increasing, "IDs strictly increasing", sourceLocation: sourceLocation)
        for e in entries { if let id = e.streamID, id.seq != UInt64(e["sequence"] ?? "") { Issue.record("ID \(e.id) for sequence \(e["sequence"] ?? "?")", sourceLocation: sourceLocation); break } }
    }

    @Test("SIGKILL mid-run with Redis up, then a new run: exactly the events received before the kill plus the new ones, once each, sequences continuing")
    func killedWithRedisUp() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let dirs = try Dirs()
        defer { dirs.remove() }
        let key = "plugboard:{crash-up}:events"
        let client = try server.client()
        let run = try RunProcess(plugboard, dirs.arguments("synthetic:5000000", redis: server.port, host: "crash-up"),
                                 log: dirs.root + "/run1.log")
        #expect(eventually(timeout: .seconds(60)) { xlen(client, key) >= 50_000 }, "\(run.output.suffix(2000))")
        kill(run.process.processIdentifier, SIGKILL)
        #expect(run.wait() == 128 + SIGKILL)
        let received = dirs.ringPublished
        let stored = UInt64(xlen(client, key))
        #expect(received > stored, "killed with events received and not yet in Redis: \(received) received, \(stored) stored")

        let rerun = try TestProcess.run(plugboard, dirs.arguments("synthetic:5000", redis: server.port, host: "crash-up"))
        #expect(rerun.status == 0, "\(rerun.output.suffix(3000))")
        #expect(rerun.output.contains("sequences continue from the previous run"), "\(rerun.output.suffix(3000))")
        #expect(rerun.output.contains("first_sequence=\(received + 1)"), "\(rerun.output.suffix(3000))")
        expectSequences(try readAll(client, key), count: received + 5000)
    }

    @Test("SIGKILL while Redis is down (the spill holds the events), Redis back, a new run: exactly once, nothing lost")
    func killedWithRedisDown() throws {
        let dirs = try Dirs()
        defer { dirs.remove() }
        let server = try RedisServer(start: false)
        defer { server.stop() }
        let port = server.port
        let run = try RunProcess(plugboard, dirs.arguments("synthetic:5000000", redis: port, host: "crash-down"),
                                 log: dirs.root + "/run1.log")
        let events = dirs.state + "/redis-crash-down.events"
        #expect(eventually(timeout: .seconds(60)) { dirs.header(events, at: 344) >= 30_000 }, "\(run.output.suffix(2000))")
        kill(run.process.processIdentifier, SIGKILL)
        #expect(run.wait() == 128 + SIGKILL)
        let received = dirs.ringPublished
        #expect(received >= 30_000)

        try server.start()
        let rerun = try TestProcess.run(plugboard, dirs.arguments("synthetic:1000", redis: port, host: "crash-down"))
        #expect(rerun.status == 0, "\(rerun.output.suffix(3000))")
        #expect(rerun.output.contains("publishing first what the previous run had not delivered"), "\(rerun.output.suffix(3000))")
        expectSequences(try readAll(server.client(), "plugboard:{crash-down}:events"), count: received + 1000)
    }

    @Test("a stop, then a start: nothing is sent twice, the sequences continue")
    func cleanRestart() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let dirs = try Dirs()
        defer { dirs.remove() }
        for _ in 0..<2 {
            let r = try TestProcess.run(plugboard, dirs.arguments("synthetic:3000", redis: server.port, host: "clean"))
            #expect(r.status == 0, "\(r.output.suffix(3000))")
            #expect(!r.output.contains("publishing first"), "a clean stop leaves nothing to replay")
        }
        expectSequences(try readAll(server.client(), "plugboard:{clean}:events"), count: 6000)
    }

    @Test("a corrupt, a foreign and a truncated state file are set aside with a warning, never trusted, never fatal")
    func badStateFiles() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let dirs = try Dirs()
        defer { dirs.remove() }
        let client = try server.client()
        // A first run leaves sound files for host "a".
        var r = try TestProcess.run(plugboard, dirs.arguments("synthetic:1000", redis: server.port, host: "a"))
        #expect(r.status == 0, "\(r.output.suffix(3000))")
        let events = dirs.state + "/redis-a.events"

        // Corrupt: a stray write over the header's fixed part.
        let fd = open(events, O_WRONLY)
        #expect(fd >= 0)
        _ = pwrite(fd, "garbage!garbage!", 16, 40)
        close(fd)
        r = try TestProcess.run(plugboard, dirs.arguments("synthetic:1000", redis: server.port, host: "a"))
        #expect(r.status == 0, "\(r.output.suffix(3000))")
        #expect(r.output.contains("\(events): the Redis publisher state file left by the previous run is not usable: its header checksum does not match. It was set aside as \(events).corrupt-"),
                "\(r.output.suffix(3000))")
        let asides = try FileManager.default.contentsOfDirectory(atPath: dirs.state).filter { $0.hasPrefix("redis-a.events.corrupt-") }
        #expect(asides.count == 1, "\(asides)")
        #expect(r.output.contains("first_sequence=1001"), "the ring still continues the sequences")
        expectSequences(try readAll(client, "plugboard:{a}:events"), count: 2000)

        // Foreign: another host's file under this host's name.
        try FileManager.default.copyItem(atPath: events, toPath: dirs.state + "/redis-b.events")
        r = try TestProcess.run(plugboard, dirs.arguments("synthetic:10", redis: server.port, host: "b"))
        #expect(r.status == 0, "\(r.output.suffix(3000))")
        #expect(r.output.contains("it belongs to another host name (a)"), "\(r.output.suffix(3000))")

        // Truncated: the ring file cut short.
        #expect(truncate(dirs.ring + "/ring", 100) == 0)
        r = try TestProcess.run(plugboard, dirs.arguments("synthetic:10", redis: server.port, host: "a"))
        #expect(r.status == 0, "\(r.output.suffix(3000))")
        #expect(r.output.contains("ring: the event ring file left by the previous run is not usable: it is 100 bytes, too short for a ring header"),
                "\(r.output.suffix(3000))")
        // The publisher state (host a) still continues the sequences: 2000 + 10.
        expectSequences(try readAll(client, "plugboard:{a}:events"), count: 2010)
    }

    @Test("two daemons on one state.dir: the second is refused, naming the key and the fix; the first goes on")
    func sharedStateDirectory() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let dirs = try Dirs()
        defer { dirs.remove() }
        let client = try server.client()
        let key = "plugboard:{shared}:events"
        let first = try RunProcess(plugboard, dirs.arguments("synthetic:150000", redis: server.port, host: "shared"),
                                   log: dirs.root + "/run1.log")
        #expect(eventually(timeout: .seconds(60)) { xlen(client, key) >= 1000 })
        let second = try TestProcess.run(plugboard, dirs.arguments("synthetic:10", redis: server.port, host: "shared"))
        #expect(second.status != 0)
        #expect(second.output.contains("another running plugboard daemon"), "\(second.output.suffix(2000))")
        #expect(second.output.contains("state.ring_dir") || second.output.contains("state.dir"), "\(second.output.suffix(2000))")
        #expect(first.wait() == 0, "\(first.output.suffix(2000))")
        expectSequences(try readAll(client, key), count: 150_000)
    }

    @Test("serve: Redis SIGKILLed and restarted twice mid-stream, then SIGTERM: exit 0, exactly N entries")
    func serveAcrossRedisRestarts() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let dirs = try Dirs()
        defer { dirs.remove() }
        let key = "plugboard:{serve-restarts}:events"
        let total = 100_000
        let arguments = ["serve", "--plugins", dirs.plugins, "--source", "synthetic:\(total)",
                         "--set", "redis.url=redis://127.0.0.1:\(server.port)/0", "--set", "redis.host=serve-restarts",
                         "--set", "redis.maxlen=0", "--set", "shutdown.deadline=60s", "--set", "state.dir=\(dirs.state)",
                         "--set", "state.ring_dir=\(dirs.ring)", "--set", "monitoring.enabled=false", "--set", "control.socket="]
        let serve = try RunProcess(plugboard, arguments, log: dirs.root + "/serve.log")
        var client = try server.client()
        for mark in [10_000, 50_000] {
            try #require(eventually(timeout: .seconds(120)) { !serve.process.isRunning || xlen(client, key) >= Int64(mark) }
                         && serve.process.isRunning, "\(serve.output.suffix(2000))")
            #expect(xlen(client, key) < Int64(total), "serve was still publishing when Redis was killed")
            try server.restart()  // SIGKILL, then the same port and AOF directory
            client = try server.client()
        }
        #expect(eventually(timeout: .seconds(120)) { xlen(client, key) >= Int64(total) }, "\(serve.output.suffix(2000))")
        kill(serve.process.processIdentifier, SIGTERM)
        #expect(serve.wait() == 0, "\(serve.output.suffix(2000))")
        #expect(serve.output.contains("reconnected to Redis"), "\(serve.output.suffix(2000))")
        expectSequences(try readAll(client, key), count: UInt64(total))
    }

    @Test("run exits 3 with Redis down, keeping the undelivered events; the next run with Redis up delivers them first; a record torn in the file is set aside")
    func undeliveredKeptAcrossRuns() throws {
        let server = try RedisServer(start: false)
        defer { server.stop() }
        let dirs = try Dirs()
        defer { dirs.remove() }
        func down(_ n: Int) throws {
            var args = dirs.arguments("synthetic:\(n)", redis: server.port, host: "kept")
            args[args.firstIndex(of: "--shutdown-deadline")! + 1] = "1"
            let r = try TestProcess.run(plugboard, args)
            #expect(r.status == 3, "\(r.output.suffix(2000))")
            #expect(r.output.contains("the \(n) not acknowledged are kept in \(dirs.state) and published first by the next start"),
                    "\(r.output.suffix(2000))")
        }
        try down(2000)
        #expect(dirs.header(dirs.state + "/redis-kept.events", at: 344) == 2000, "all 2,000 are in the file")
        try server.start()
        var r = try TestProcess.run(plugboard, dirs.arguments("synthetic:10", redis: server.port, host: "kept"))
        #expect(r.status == 0, "\(r.output.suffix(2000))")
        #expect(r.output.contains("events=2000"), "\(r.output.suffix(2000))")
        expectSequences(try readAll(server.client(), "plugboard:{kept}:events"), count: 2010)

        // Undelivered again, then the first waiting record's length is overwritten in the file.
        server.kill()
        try down(500)
        let file = dirs.state + "/redis-kept.events"
        let acked = dirs.header(file, at: 320)
        let fd = open(file, O_WRONLY)
        var garbage: UInt32 = 0xffff_ff00
        #expect(pwrite(fd, &garbage, 4, off_t(4096 + Int(acked % (64 << 20)))) == 4)
        close(fd)
        try server.start()
        r = try TestProcess.run(plugboard, dirs.arguments("synthetic:10", redis: server.port, host: "kept"))
        #expect(r.status == 0, "\(r.output.suffix(2000))")
        #expect(r.output.contains("is not usable: the record at byte \(acked) (4294967040 bytes) is not sound. It was set aside"),
                "\(r.output.suffix(3000))")
        // Never trusted: none of the 500 is published from the bad file; sequences still continue (the ring).
        let seqs = try readAll(server.client(), "plugboard:{kept}:events").compactMap { UInt64($0["sequence"] ?? "") }
        #expect(seqs.count == 2020 && seqs.suffix(10) == Array(2511...2520), "\(seqs.suffix(12))")
    }

    @Test("plugin records too: a plugin's output Redis did not take (Redis down, exit 3) is kept and published by the next run, each record once")
    func pluginRecordsKeptAcrossRuns() throws {
        let server = try RedisServer(start: false)
        defer { server.stop() }
        let dirs = try Dirs()
        defer { dirs.remove() }
        let bed = try IsolationBed(misbehave: nil)
        defer { bed.remove() }
        func args(_ n: Int, deadline: String) -> [String] {
            var a = dirs.arguments("synthetic:\(n)", redis: server.port, host: "records")
            a[a.firstIndex(of: "--plugins")! + 1] = bed.dir
            a[a.firstIndex(of: "--shutdown-deadline")! + 1] = deadline
            return a + ["--registry-cache", "none", "--plugin-config", "recorder.publish=1"]
        }
        var r = try TestProcess.run(plugboard, args(1000, deadline: "1"))
        #expect(r.status == 3, "\(r.output.suffix(2000))")
        #expect(r.output.contains("and 1000 plugin records"), "\(r.output.suffix(2000))")
        try server.start()
        r = try TestProcess.run(plugboard, args(10, deadline: "60"))
        #expect(r.status == 0, "\(r.output.suffix(2000))")
        #expect(r.output.contains("plugin_records=1000"), "\(r.output.suffix(2000))")
        let records = try readAll(server.client(), "plugboard:{records}:plugin:recorder")
        let seen = records.compactMap { $0["topic"] == "seen" ? UInt64($0["data"] ?? "") : nil }
        #expect(seen.count == records.count && seen.count == 1010, "\(records.count) records")
        #expect(Set(seen) == Set(1...1010), "every event's record once: \(Set(1...1010).subtracting(seen).count) missing")
        var increasing = true
        for (a, b) in zip(records, records.dropFirst()) where !(a.streamID! < b.streamID!) { increasing = false }
        #expect(increasing, "plugin stream IDs strictly increasing across the two runs")
    }
}
