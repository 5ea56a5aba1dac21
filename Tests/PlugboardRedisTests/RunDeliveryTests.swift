import Foundation
import PlugboardRedis
import Testing
import PlugboardTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `plugboard run`'s exit status says whether every event was delivered (docs/operations.md,
/// exit code 3): the real binary against a real redis-server that is missing, killed or restarted.
@Suite("plugboard run exits 3 when events were not delivered, 0 when all were (the real binary)", .serialized)
struct RunDeliveryTests {
    var plugboard: String { PackagePaths.product("plugboard") }

    /// A temporary directory, removed by `remove()`; empty: a run without plugins.
    struct Dir {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("pb-delivery-\(UUID().uuidString)").path
        init() throws { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
        func remove() { try? FileManager.default.removeItem(atPath: path) }
    }

    /// `plugboard run` started in the background, its output into a file.
    final class RunProcess {
        let process = Process()
        let log: String
        init(_ plugboard: String, _ arguments: [String], log: String) throws {
            self.log = log
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            let out = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            process.executableURL = URL(fileURLWithPath: plugboard)
            process.arguments = arguments
            process.standardOutput = out
            process.standardError = out
            try process.run()
        }
        var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        /// Waits for the exit; the status, or 128+signal when a signal ended it.
        func wait() -> Int32 {
            process.waitUntilExit()
            return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        }
        deinit { if process.isRunning { process.terminate() } }
    }

    func xlen(_ client: RedisConnection?, _ key: String) -> Int64 {
        if case .integer(let n)? = try? client?.command(["XLEN", key]) { return n }
        return -1
    }

    @Test("Redis never up: run exits 3 and says how many events were not stored, and why")
    func redisNeverUp() throws {
        let dir = try Dir()
        defer { dir.remove() }
        let port = try RedisServer.freePort()
        let r = try TestProcess.run(plugboard, ["run", "--plugins", dir.path, "--source", "synthetic:2000",
                                                 "--redis", "redis://127.0.0.1:\(port)/0", "--redis-host", "never",
                                                 "--shutdown-deadline", "1"])
        #expect(r.status == 3, "\(r.output.suffix(2000))")
        #expect(r.output.contains("plugboard: events not delivered (exit 3):"), "\(r.output.suffix(2000))")
        #expect(r.output.contains("2000 events not stored in plugboard:{never}:events (2000 not acknowledged by Redis when the publisher stopped)"),
                "\(r.output.suffix(2000))")
        #expect(r.output.contains("could not connect"), "the last error says why")
        #expect(!r.output.contains("shutdown deadline exceeded"), "nothing was stuck: it was not delivered")
    }

    @Test("Redis killed before the run's last event and not restarted: run exits 3 (no SIGPIPE), naming what was not stored")
    func redisDownAtTheEnd() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let dir = try Dir()
        defer { dir.remove() }
        // Two events, the second 1.5 s after the first: Redis is killed between them.
        let session = "\(dir.path)/session.jsonl"
        try """
            {"action":"add","syspath":"/sys/devices/test/usb1/1-1","busnum":1,"devnum":2}
            {"action":"remove","syspath":"/sys/devices/test/usb1/1-1","delay_ms":1500}
            """.write(toFile: session, atomically: true, encoding: .utf8)
        let key = "plugboard:{down-at-end}:events"
        let client = try server.client()
        let run = try RunProcess(plugboard, ["run", "--plugins", dir.path, "--source", "replay:\(session)",
                                             "--redis", "redis://127.0.0.1:\(server.port)/0", "--redis-host", "down-at-end",
                                             "--shutdown-deadline", "1"], log: "\(dir.path)/run.log")
        #expect(eventually(timeout: .seconds(30)) { xlen(client, key) == 1 }, "\(run.output)")
        server.kill()
        let status = run.wait()
        #expect(status == 3, "\(run.output.suffix(2000))")
        // The first entry is in the stream, but Redis may be killed before the publisher read its
        // reply (seen on a loaded machine): an entry never acknowledged counts as not stored
        // (at least once), so the run names 1 or both, never none.
        #expect(run.output.contains("1 events not stored in \(key) (1 not acknowledged by Redis when the publisher stopped)")
                || run.output.contains("2 events not stored in \(key) (2 not acknowledged by Redis when the publisher stopped)"),
                "\(run.output.suffix(2000))")
    }

    /// Without SIGPIPE ignored, about one kill in ten ended such a run with status 141 (measured with
    /// a build without it: 1 run in 3 with four kills). TailTests' closed-output test shows the
    /// same protection deterministically.
    @Test("Redis SIGKILLed and restarted four times during a run of 150,000 events: exit 0, not 141, every event exactly once")
    func redisRestartedMidRun() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let dir = try Dir()
        defer { dir.remove() }
        let key = "plugboard:{restarted}:events"
        let total = 150_000
        let run = try RunProcess(plugboard, ["run", "--plugins", dir.path, "--source", "synthetic:\(total)",
                                             "--redis", "redis://127.0.0.1:\(server.port)/0", "--redis-host", "restarted",
                                             "--redis-maxlen", "0",
                                             // Time to deliver what the outages left in the spill on a loaded
                                             // machine (the run ends as soon as it is delivered).
                                             "--shutdown-deadline", "120"], log: "\(dir.path)/run.log")
        var client: RedisConnection? = try server.client()
        for mark in [10_000, 40_000, 70_000, 100_000] {
            #expect(eventually(timeout: .seconds(120)) { xlen(client, key) >= Int64(mark) }, "\(run.output.suffix(2000))")
            #expect(xlen(client, key) < Int64(total), "the run was still publishing when Redis was killed")
            try server.restart()  // SIGKILL, then the same port and AOF directory
            client = try server.client()
        }
        let status = run.wait()
        #expect(status == 0, "\(run.output.suffix(2000))")
        #expect(run.output.contains("reconnected to Redis"), "\(run.output.suffix(2000))")
        let entries = try readAll(try server.client(), key)
        #expect(entries.count == total)
        let sequences = entries.compactMap { UInt64($0["sequence"] ?? "") }
        #expect(sequences == Array(1...UInt64(total)), "every event once, in order")
    }
}
