import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import PlugboardCore
import PlugboardRedis
import PlugboardTestSupport
import Synchronization
import Testing

/// A plugin directory for the isolation tests: a recorder (writes every field of every event to
/// `recorder.txt`) and the deliberately bad `misbehave` plugin, each with its manifest packed by
/// the real `plugboard pack`.
struct IsolationBed {
    let dir: String
    var plugboard: String { PackagePaths.product("plugboard") }
    var recorderOutput: String { "\(dir)/recorder.txt" }

    init(misbehave: [String: String]?, misbehaveWorker: String = "", recorderWorker: String = "") throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("pb-iso-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let cc = try TestProcess.run("/usr/bin/cc", ["-std=gnu11", "-O2", "-shared", "-fPIC", "-fvisibility=hidden",
                                                     "-I", PackagePaths.root + "/SDK/include", "-o", "\(dir)/librecorder.so",
                                                     PackagePaths.root + "/Tests/TestPlugins/recorder/recorder.c"])
        guard cc.status == 0 else { throw TestFailure("cc: \(cc.output)") }
        try pack(name: "recorder", library: "librecorder.so", worker: recorderWorker,
                 config: ["output": recorderOutput])
        if let misbehave {
            try FileManager.default.copyItem(atPath: PackagePaths.plugin("pbtest-misbehave"), toPath: "\(dir)/libmisbehave.so")
            try pack(name: "misbehave", library: "libmisbehave.so", worker: misbehaveWorker, config: misbehave)
        }
    }

    func pack(name: String, library: String, worker: String, config: [String: String]) throws {
        let entries = config.sorted { $0.key < $1.key }.map { "\($0.key) = \"\($0.value)\"" }.joined(separator: "\n")
        try """
            [plugin]
            name = "\(name)"
            version = "1.0.0"
            library = "\(library)"

            [worker]
            \(worker)

            [[match]]
            subsystem = "usb"

            [config]
            \(entries)
            """.write(toFile: "\(dir)/\(name).toml", atomically: true, encoding: .utf8)
        let r = try TestProcess.run(plugboard, ["pack", "\(dir)/\(name).toml", "--library", "\(dir)/\(library)", "-o", "\(dir)/\(name).pbm"])
        guard r.status == 0 else { throw TestFailure("pack: \(r.output)") }
    }

    /// The recorder's event lines (without the SHUTDOWN marker).
    func recorded() -> [Substring] {
        ((try? String(contentsOfFile: recorderOutput, encoding: .utf8)) ?? "").split(separator: "\n").filter { $0 != "SHUTDOWN" }
    }

    func remove() { try? FileManager.default.removeItem(atPath: dir) }
}

/// Small process helpers (the test target has no shared one for arbitrary programs).
enum TestProcess {
    static func run(_ path: String, _ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = arguments
        if let environment { p.environment = environment }
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// A Redis entry without its receipt time (which differs from run to run).
func comparable(_ e: StreamEntry) -> String {
    e.fields.filter { $0.name != "timestamp_ns" }.map { "\($0.name)=\($0.value)" }.joined(separator: " ")
}

/// What a run with the recorder alone records and publishes: what every run beside a bad plugin
/// must match, byte for byte.
final class IsolationReference: Sendable {
    static let events = 200_000
    static let shared = Mutex<IsolationReference?>(nil)
    let lines: [Substring]
    let entries: [String]

    init(lines: [Substring], entries: [String]) {
        self.lines = lines
        self.entries = entries
    }

    static func get() throws -> IsolationReference {
        if let r = shared.withLock({ $0 }) { return r }
        let server = try RedisServer()
        defer { server.stop() }
        let bed = try IsolationBed(misbehave: nil, recorderWorker: "isolation = \"thread\"")
        defer { bed.remove() }
        let r = try TestProcess.run(bed.plugboard, ["run", "--plugins", bed.dir, "--registry-cache", "none",
                                                     "--source", "synthetic:\(events)", "--redis", "redis://127.0.0.1:\(server.port)/0",
                                                     "--set", "redis.host=reference", "--set", "redis.maxlen=0"])
        guard r.status == 0 else { throw TestFailure("reference run: \(r.output)") }
        let entries = try readAll(try server.client(), "plugboard:{reference}:events").map(comparable)
        let ref = IsolationReference(lines: bed.recorded(), entries: entries)
        guard ref.lines.count == events, ref.entries.count == events else {
            throw TestFailure("reference: \(ref.lines.count) lines, \(ref.entries.count) entries")
        }
        shared.withLock { $0 = ref }
        return ref
    }
}

/// `plugboard serve` from a config file, output in a log file.
final class ServeProcess {
    let process = Process()
    let log: String

    init(bed: IsolationBed, redisPort: Int, host: String, extra: String = "", environment: [String: String] = [:]) throws {
        let config = "\(bed.dir)/plugboard.toml"
        try """
            source = "synthetic:\(IsolationReference.events)"
            [plugins]
            dirs = ["\(bed.dir)"]
            registry_cache = "none"
            restart_backoff = "10ms"
            \(extra)
            [redis]
            url = "redis://127.0.0.1:\(redisPort)/0"
            host = "\(host)"
            maxlen = 0
            [monitoring]
            listen = "127.0.0.1:0"
            [shutdown]
            deadline = "10s"
            """.write(toFile: config, atomically: true, encoding: .utf8)
        log = "\(bed.dir)/serve.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.executableURL = URL(fileURLWithPath: bed.plugboard)
        process.arguments = ["serve", "--config", config, "--log-level", "info"]
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        process.environment = env
        process.standardOutput = out
        process.standardError = out
        try process.run()
    }

    var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// GET a path of the monitoring server (throws until it listens).
    func get(_ path: String) throws -> String {
        guard let line = output.split(separator: "\n").first(where: { $0.contains("listening on http://") }) else {
            throw TestFailure("not listening yet")
        }
        let address = String(line.split(separator: "/").last ?? "")
        return String(decoding: try Data(contentsOf: URL(string: "http://\(address)\(path)")!), as: UTF8.self)
    }

    /// /plugins, the entry of `name` (throws while there is none).
    func plugin(_ name: String) throws -> [String: Any] {
        let json = try JSONSerialization.jsonObject(with: Data(try get("/plugins").utf8))
        let list = (json as? [String: Any])?["plugins"] as? [[String: Any]] ?? (json as? [[String: Any]]) ?? []
        guard let p = list.first(where: { $0["name"] as? String == name }) else { throw TestFailure("no plugin \(name) in \(json)") }
        return p
    }

    /// SIGTERM, then the exit status and how long the exit took (killed after `limit`).
    func terminate(limit: Duration) -> (status: Int32, took: Duration) {
        let start = ContinuousClock.now
        kill(process.processIdentifier, SIGTERM)
        while process.isRunning && ContinuousClock.now - start < limit { usleep(10_000) }
        let took = ContinuousClock.now - start
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return (-1, took)
        }
        return (process.terminationStatus, took)
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

@Suite("Isolation: one plugin's bug never reaches the host, the other plugins or Redis", .serialized)
struct IsolationTests {
    /// Each bad behaviour in the events callback, and what the host must name it with.
    static let badEvents: [(mode: String, reason: String, label: String?)] = [
        ("segfault", "killed by SIGSEGV", "SIGSEGV"),
        ("abort", "killed by SIGABRT", "SIGABRT"),
        ("exit", "exited with status 3", "exit_3"),
        ("stack-overflow", "killed by SIGSEGV", "SIGSEGV"),
        ("spin", "overran its deadline of 300 ms", "deadline"),
        ("sleep", "overran its deadline of 300 ms", "deadline"),
        ("write-event", "killed by SIGSEGV", "SIGSEGV"),
        // It scribbles on its own writable mappings first (its control page, its host-call queue):
        // the host may see the corrupt queue and kill it ("protocol") before it faults on the ring.
        ("write-maps", "killed by SIGSEGV|corrupted its host-call queue", nil),
        ("dlclose-self", "killed by SIG", nil),
        ("thread-outlives", "", nil),
    ]

    @Test("a bad plugin beside a recorder on 200,000 events: the host survives, the recorder and Redis get every event unaltered, the bad plugin is named, restarted and its poison event skipped, SIGTERM exits 0",
          arguments: badEvents.map(\.mode))
    func badPluginBesideRecorder(mode: String) throws {
        let expected = Self.badEvents.first { $0.mode == mode }!
        let reference = try IsolationReference.get()
        let server = try RedisServer()
        defer { server.stop() }
        let bed = try IsolationBed(misbehave: ["mode": mode, "where": mode == "thread-outlives" ? "init" : "events",
                                               "at_sequence": "1000", "publish": "1"],
                                   misbehaveWorker: "deadline_ms = 300")
        defer { bed.remove() }
        let host = "iso-\(mode)"
        let serve = try ServeProcess(bed: bed, redisPort: server.port, host: host)
        let client = try server.client()
        let done = eventually(timeout: .seconds(240)) {
            (try? client.command(["XLEN", "plugboard:{\(host)}:events"])) == .integer(Int64(IsolationReference.events))
                && bed.recorded().count == IsolationReference.events
        }
        #expect(done, "\(serve.output.suffix(3000))")
        let misbehave = try serve.plugin("misbehave")
        let recorder = try serve.plugin("recorder")
        #expect(recorder["isolation"] as? String == "process" && (recorder["crashes"] as? [String: Any])?.isEmpty == true, "\(recorder)")
        let crashes = misbehave["crashes"] as? [String: Int] ?? [:]
        if expected.reason.isEmpty {
            #expect(crashes.isEmpty && misbehave["state"] as? String == "running", "\(misbehave)")
        } else {
            // Crashed on the batch holding 1000, then once more on 1000 alone: skipped from then on.
            if let label = expected.label { #expect(crashes[label] == 2, "\(misbehave)") }
            #expect(crashes.values.reduce(0, +) == 2, "\(misbehave)")
            #expect(misbehave["skipped_events"] as? Int == 1 && misbehave["restarts"] as? Int == 2, "\(misbehave)")
            #expect(misbehave["state"] as? String == "running", "\(misbehave)")
            let log = serve.output
            let named = expected.reason.split(separator: "|").contains { log.contains("plugin crashed: \($0)") }
            #expect(named && log.contains("plugin=misbehave"), "\(log.suffix(4000))")
            #expect(log.contains("sequence 1000"), "the crash names the event it was handling")
            // The poison event went to the plugin's own stream.
            let poison = try readAll(client, "plugboard:{\(host)}:plugin:misbehave").filter { $0["topic"] == "poison" }
            #expect(poison.count == 1 && poison.first?["data"]?.contains("\"sequence\":1000") == true, "\(poison)")
        }
        let (status, took) = serve.terminate(limit: .seconds(20))
        #expect(status == 0, "\(serve.output.suffix(3000))")
        #expect(took < .seconds(12), "SIGTERM finished within the 10 s shutdown deadline (took \(took))")
        // Byte for byte what the recorder alone saw and published.
        let lines = bed.recorded()
        #expect(lines.count == reference.lines.count)
        #expect(lines == reference.lines, "the recorder saw altered or missing events")
        let entries = try readAll(client, "plugboard:{\(host)}:events").map(comparable)
        #expect(entries.count == reference.entries.count)
        #expect(entries == reference.entries, "Redis received altered or missing events")
    }

    @Test("with the ring in a file (state.ring_dir, crash safety) a plugin writing into its events still faults: the recorder and Redis get every event unaltered")
    func ringFileStaysReadOnly() throws {
        let reference = try IsolationReference.get()
        let server = try RedisServer()
        defer { server.stop() }
        let bed = try IsolationBed(misbehave: ["mode": "write-event", "where": "events", "at_sequence": "1000", "publish": "1"],
                                   misbehaveWorker: "deadline_ms = 300")
        defer { bed.remove() }
        let host = "iso-ring-file"
        // A tmpfs, as /run/plugboard is in production.
        let state = "/dev/shm/pb-iso-state-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: state) }
        let serve = try ServeProcess(bed: bed, redisPort: server.port, host: host,
                                     extra: "[state]\nring_dir = \"\(state)\"\ndir = \"\(state)\"")
        let client = try server.client()
        let done = eventually(timeout: .seconds(240)) {
            (try? client.command(["XLEN", "plugboard:{\(host)}:events"])) == .integer(Int64(IsolationReference.events))
                && bed.recorded().count == IsolationReference.events
        }
        #expect(done, "\(serve.output.suffix(3000))")
        #expect(FileManager.default.fileExists(atPath: state + "/ring"), "the ring is the file")
        let misbehave = try serve.plugin("misbehave")
        #expect((misbehave["crashes"] as? [String: Int])?["SIGSEGV"] == 2, "\(misbehave)")
        let (status, _) = serve.terminate(limit: .seconds(20))
        #expect(status == 0, "\(serve.output.suffix(3000))")
        #expect(bed.recorded() == reference.lines, "the recorder saw altered or missing events")
        #expect(try readAll(client, "plugboard:{\(host)}:events").map(comparable) == reference.entries,
                "Redis received altered or missing events")
    }

    @Test("a plugin that crashes on every batch is quarantined after plugins.crash_burst crashes; the others never stop",
          .timeLimit(.minutes(5)))
    func crashLoopQuarantined() throws {
        let reference = try IsolationReference.get()
        let server = try RedisServer()
        defer { server.stop() }
        let bed = try IsolationBed(misbehave: ["mode": "abort", "every": "1"])
        defer { bed.remove() }
        let serve = try ServeProcess(bed: bed, redisPort: server.port, host: "loop", extra: "crash_burst = 3\ncrash_interval = \"60s\"")
        let client = try server.client()
        #expect(eventually(timeout: .seconds(240)) {
            (try? client.command(["XLEN", "plugboard:{loop}:events"])) == .integer(Int64(IsolationReference.events))
                && bed.recorded().count == IsolationReference.events
        }, "\(serve.output.suffix(3000))")
        let misbehave = try serve.plugin("misbehave")
        #expect(misbehave["state"] as? String == "quarantined", "\(misbehave)")
        #expect((misbehave["crashes"] as? [String: Int])?["SIGABRT"] == 4, "3 allowed, the 4th quarantines: \(misbehave)")
        #expect((misbehave["quarantined"] as? String)?.contains("crashed 4 times within 60s") == true, "\(misbehave)")
        let metrics = try serve.get("/metrics")
        #expect(metrics.contains("plugboard_plugin_quarantined{plugin=\"misbehave\"} 1"), "\(metrics)")
        #expect(metrics.contains("plugboard_plugin_crashes_total{plugin=\"misbehave\",reason=\"SIGABRT\"} 4"), "\(metrics)")
        #expect(serve.output.contains("plugin quarantined"), "\(serve.output.suffix(2000))")
        #expect(serve.terminate(limit: .seconds(20)).status == 0, "\(serve.output.suffix(2000))")
        #expect(bed.recorded() == reference.lines)
    }

    @Test("bad plugins in init and shutdown, and a constructor that exits: named with the reason; the recorder gets every event; run exits 0 in time",
          arguments: [("init", "spin", "init did not return within 500ms"), ("init", "sleep", "init did not return within 500ms"),
                      ("init", "segfault", "killed by SIGSEGV"), ("init", "exit", "exited with status 3"),
                      ("shutdown", "sleep", "did not finish its shutdown in time"),
                      ("shutdown", "spin", "did not finish its shutdown in time"),
                      ("shutdown", "segfault", "killed by SIGSEGV (Segmentation fault) in shutdown"),
                      ("ctor", "", "exited with status 7"),
                      ("init-thread", "sleep", "init did not return within 500ms; the plugin runs as a thread, which cannot be stopped")])
    func initAndShutdown(where: String, mode: String, message: String) throws {
        let bed = try IsolationBed(misbehave: `where` == "ctor" ? nil : ["mode": mode, "where": `where` == "init-thread" ? "init" : `where`],
                                   misbehaveWorker: `where` == "init-thread" ? "isolation = \"thread\"" : "")
        defer { bed.remove() }
        if `where` == "ctor" {
            try FileManager.default.copyItem(atPath: PackagePaths.plugin("pbtest-ctor-exit"), toPath: "\(bed.dir)/libctor.so")
            try bed.pack(name: "ctor-exit", library: "libctor.so", worker: "", config: [:])
        }
        let start = ContinuousClock.now
        let r = try TestProcess.run(bed.plugboard, ["run", "--plugins", bed.dir, "--registry-cache", "none", "--source", "synthetic:20000",
                                                     "--set", "plugins.init_deadline=500ms", "--set", "shutdown.deadline=3s"])
        let took = ContinuousClock.now - start
        #expect(r.status == 0, "\(r.output.suffix(3000))")
        #expect(r.output.contains(message), "\(r.output.suffix(3000))")
        #expect(took < .seconds(30))
        #expect(bed.recorded().count == 20000)
    }

    @Test("run: a plugin that crashes on one event gets every other event, and run exits 3 naming the event it skipped")
    func runExitsThreeWhenAPluginSkippedAnEvent() throws {
        let bed = try IsolationBed(misbehave: ["mode": "segfault", "where": "events", "at_sequence": "1000"],
                                   misbehaveWorker: "deadline_ms = 300")
        defer { bed.remove() }
        let r = try TestProcess.run(bed.plugboard, ["run", "--plugins", bed.dir, "--registry-cache", "none", "--source", "synthetic:5000"])
        #expect(r.status == 3, "\(r.output.suffix(3000))")
        #expect(r.output.contains("plugboard: events not delivered (exit 3):\n  plugin misbehave: 1 skipped (poison events it crashed on)"),
                "\(r.output.suffix(3000))")
        #expect(!r.output.contains("plugin recorder:"), "the recorder got every event")
        #expect(bed.recorded().count == 5000)
    }

    @Test("SIGTERM while a plugin sleeps in init: serve kills its worker, does not start the source, and exits 0 at once")
    func sigtermDuringInit() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let bed = try IsolationBed(misbehave: ["mode": "sleep", "where": "init"])
        defer { bed.remove() }
        let serve = try ServeProcess(bed: bed, redisPort: server.port, host: "init", extra: "init_deadline = \"300s\"")
        #expect(eventually(timeout: .seconds(30)) { serve.output.contains("plugin found") && serve.output.contains("misbehave") })
        usleep(300_000)
        let (status, took) = serve.terminate(limit: .seconds(20))
        #expect(status == 0, "\(serve.output)")
        #expect(took < .seconds(10), "took \(took)")
        #expect(serve.output.contains("stopped during init"), "\(serve.output)")
    }

    @Test("worker processes drop to plugins.worker_user with no_new_privs and no capability at all (read from /proc/PID/status)")
    func privilegeDrop() throws {
        guard geteuid() == 0 else { return }
        let server = try RedisServer()
        defer { server.stop() }
        let bed = try IsolationBed(misbehave: ["mode": "none"])
        defer { bed.remove() }
        // The recorder writes a file in a root-only directory: it runs as a trusted thread here.
        let serve = try ServeProcess(bed: bed, redisPort: server.port, host: "priv", extra: "thread = [\"recorder\"]",
                                     environment: ["PLUGBOARD_PLUGINS_WORKER_USER": "nobody"])
        #expect(eventually(timeout: .seconds(60)) { ((try? serve.plugin("misbehave"))?["pid"] as? Int ?? 0) > 0 }, "\(serve.output)")
        let pid = try serve.plugin("misbehave")["pid"] as? Int ?? 0
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        func field(_ name: String) -> [Substring] {
            status.split(separator: "\n").first { $0.hasPrefix(name + ":") }?.split(separator: "\t").dropFirst().map { $0 } ?? []
        }
        let nobody = try TestProcess.run("/usr/bin/id", ["-u", "nobody"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(field("Uid").allSatisfy { $0 == Substring(nobody) }, "\(status)")
        #expect(!field("Gid").contains("0"), "\(status)")
        #expect(field("NoNewPrivs") == ["1"], "\(status)")
        // No capability in any set, the bounding set included (nothing can be regained).
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            #expect(field(set) == ["0000000000000000"], "\(set): \(status)")
        }
        #expect(field("Groups").allSatisfy { $0.trimmingCharacters(in: .whitespaces).isEmpty }, "no supplementary groups: \(status)")
        // Only 0, 1, 2 and the five it was given are open (no descriptor of the host leaked).
        let fds = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").compactMap(Int.init).sorted()
        #expect(fds == [0, 1, 2, 3, 4, 5, 6, 7], "\(fds)")
        #expect(try serve.plugin("recorder")["isolation"] as? String == "thread")
        #expect(serve.terminate(limit: .seconds(20)).status == 0)
    }

    @Test("thread mode: a plugin writing into its events faults (the ring is read-only there too) and ends the process, as documented")
    func threadModeWriteFaults() throws {
        let bed = try IsolationBed(misbehave: ["mode": "write-event", "at_sequence": "10"], misbehaveWorker: "isolation = \"thread\"")
        defer { bed.remove() }
        let r = try TestProcess.run("/bin/sh", ["-c", "'\(bed.plugboard)' run --plugins '\(bed.dir)' --registry-cache none --source synthetic:100; echo rc=$?"])
        #expect(r.output.contains("rc=139"), "SIGSEGV, not altered events: \(r.output.suffix(2000))")
        #expect(!bed.recorded().contains { $0.contains("id=dead:") }, "no event was altered before the fault")
    }
}
