import Foundation
import Testing

/// Worker recycling (`plugins.recycle_after_*`), with the real `plugboard run` and a C plugin
/// that appends every sequence it gets to a file and carries a count through save_state.
@Suite("Worker recycling")
struct RecycleTests {
    @Test("recycled after every 50 events over a 6,000-event stream: more than 50 recycles, every event exactly once, the count carried through all of them, recycles on /metrics")
    func recycledUnderAStream() throws {
        let dir = TempDir(), plugins = dir.path + "/plugins"
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        try ControlTests.installCanary(in: plugins, version: "1.0.0")
        let replay = dir.path + "/stream.jsonl"
        try ControlTests.longReplay(replay, count: 6000, gapMs: 1)
        let seen = dir.path + "/seen.txt"
        FileManager.default.createFile(atPath: seen, contents: nil, attributes: [.posixPermissions: 0o666])
        let r = try runProcess(productBinary("plugboard")!, [
            "run", "--plugins", plugins, "--source", "replay:\(replay)", "--registry-cache", "none", "--log-level", "info",
            "--shutdown-deadline", "120",
            "--set", "plugins.recycle_after_events=50", "--plugin-config", "canary.output=\(seen)",
        ], env: [:])
        #expect(r.status == 0, "\(r.stderr)")
        let recycles = r.stderr.components(separatedBy: "worker process recycled").count - 1
        #expect(recycles > 50, "recycles: \(recycles)")
        let text = try String(contentsOfFile: seen, encoding: .utf8)
        let sequences = text.split(separator: "\n").filter { !$0.hasPrefix("COUNT") }.compactMap { UInt64($0) }
        #expect(sequences == Array(1...6000), "every event once, in order, across \(recycles) recycles")
        // Each retired worker wrote its count at shutdown; the last one has seen all 6,000.
        let counts = text.split(separator: "\n").filter { $0.hasPrefix("COUNT ") }.compactMap { UInt64($0.dropFirst(6)) }
        #expect(counts.count == recycles + 1 && counts.last == 6000, "counts: \(counts.suffix(3)) of \(counts.count)")
        #expect(counts == counts.sorted(), "the state only grows from worker to worker")
    }

    @Test("a plugin file replaced since its worker started is not recycled into the new build, with a warning naming the fix; plugins.recycle limits which plugins are recycled")
    func changedFileIsNotRecycled() throws {
        let dir = TempDir(), plugins = dir.path + "/plugins"
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        try ControlTests.installCanary(in: plugins, version: "1.0.0")
        let socket = dir.path + "/ctl.sock"
        let d = try ControlTests.serve(dir, socket: socket, plugins: plugins, set: ["plugins.recycle_after_events=100"])
        defer { d.signal(SIGTERM); d.waitForExit() }
        try d.waitFor("a recycle") { (try ControlTests.pluginInfo(socket, "canary")?["recycles"] as? Int ?? 0) >= 2 }
        let metrics = try httpGetBlocking(port: d.port(), path: "/metrics").body
        #expect(metrics.contains("plugboard_plugin_recycles_total{plugin=\"canary\"}"), "\(metrics.prefix(200))")
        try ControlTests.installCanary(in: plugins, version: "2.0.0")
        try d.waitFor("the warning") { d.stderr.contains("not recycled: ") && d.stderr.contains("plugboard ctl reload canary") }
        #expect(try ControlTests.pluginInfo(socket, "canary")?["version"] as? String == "1.0.0")

        // Recycling limited to another plugin: this one is never recycled.
        let dir2 = TempDir(), plugins2 = dir2.path + "/plugins"
        try FileManager.default.createDirectory(atPath: plugins2, withIntermediateDirectories: true)
        try ControlTests.installCanary(in: plugins2, version: "1.0.0")
        let r = try runProcess(productBinary("plugboard")!, [
            "run", "--plugins", plugins2, "--source", "synthetic:20000", "--registry-cache", "none", "--log-level", "info",
            "--set", "plugins.recycle_after_events=10", "--set", "plugins.recycle=[\"someone-else\"]",
        ], env: [:])
        #expect(r.status == 0 && !r.stderr.contains("worker process recycled"), "\(r.stderr.suffix(500))")
    }

    @Test("with plugins.prewarm each crash restart adopts the spare worker initialised ahead, and the poison event decided after that spare was set up is still withheld from it")
    func prewarmedRestart() throws {
        let dir = TempDir(), plugins = dir.path + "/plugins"
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        try ControlTests.installCanary(in: plugins, version: "1.0.0")
        let socket = dir.path + "/ctl.sock"
        let d = try ControlTests.serve(dir, socket: socket, plugins: plugins,
                                       set: ["plugins.prewarm=true", "plugins.restart_backoff=300ms"], plugin: ["canary.crash_at=300"])
        defer { d.signal(SIGTERM); d.waitForExit() }
        try d.waitFor("events past the poison event") {
            let i = try ControlTests.pluginInfo(socket, "canary")
            return i?["state"] as? String == "running" && (i?["events"] as? Int ?? 0) > 600
        }
        // Crash 1 in a batch, crash 2 in the batch again (now delivered one event at a time),
        // crash 3 on event 300 alone: it is poison. The spare adopted after crash 3 was set up
        // before it: a fourth crash would mean it was handed the poison event.
        let info = try ControlTests.pluginInfo(socket, "canary")
        #expect(info?["restarts"] as? Int == 3 && info?["skipped_events"] as? Int == 1, "\(info ?? [:])")
        #expect((info?["crashes"] as? [String: Any])?["SIGSEGV"] as? Int == 3, "\(info ?? [:])")
        let restarts = d.stderr.split(separator: "\n").filter { $0.contains("plugin restarted") }
        #expect(restarts.count == 3 && restarts.allSatisfy { $0.contains("spare=adopted") }, "\(restarts)")
        // A new spare is ready again: two worker processes for the plugin, the current one and the spare.
        try d.waitFor("a new spare") {
            let r = try runProcess("/usr/bin/pgrep", ["-f", "plugboard-worker canary", "-P", "\(d.process.processIdentifier)"], env: [:])
            return r.stdout.split(separator: "\n").count == 2
        }
    }

    @Test("the restart backoff doubles only for crashes within plugins.crash_interval: a plugin crashing less often always waits the base backoff")
    func backoffPerWindow() throws {
        let dir = TempDir(), plugins = dir.path + "/plugins"
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        try ControlTests.installCanary(in: plugins, version: "1.0.0")
        let socket = dir.path + "/ctl.sock"
        // Each worker crashes 1.2 s after its first event: crashes are further apart than the
        // 1 s window, so every restart waits the base 50 ms (it used to double each time).
        let d = try ControlTests.serve(dir, socket: socket, plugins: plugins,
                                       set: ["plugins.restart_backoff=50ms", "plugins.crash_interval=1s", "plugins.crash_burst=100"],
                                       plugin: ["canary.crash_after_ms=1200", "canary.output=/dev/null"])
        defer { d.signal(SIGTERM); d.waitForExit() }
        try d.waitFor("four restarts") { (try ControlTests.pluginInfo(socket, "canary")?["restarts"] as? Int ?? 0) >= 4 }
        var waits: [String] = []
        for line in d.stderr.split(separator: "\n") where line.contains("plugin crashed") {
            guard let r = line.range(of: "cursor in ") else { continue }
            waits.append(String(line[r.upperBound...].prefix { $0 != " " }))
        }
        let firstWaits = Array(waits.prefix(4))
        #expect(firstWaits.count == 4 && firstWaits.allSatisfy { $0 == "50ms" }, "\(waits)")
    }
}
