import Foundation
import Logging
import PlugboardCore
import Testing

@testable import PlugboardDaemon
@testable import PlugboardHost

@Suite("Shutdown coordinator (the real host, real plugins)")
struct ShutdownCoordinatorTests {
    @Test("a clean shutdown drains every event to every plugin, shuts them down, then flushes the sinks")
    func cleanShutdownOrder() throws {
        let dir = TempDir()
        let names = ["p0", "p1", "p2"]
        let probe = ProbeSink(files: names.map { "\(dir.path)/\($0).txt" })
        let host = try makeHost(in: dir.path, plugins: Dictionary(uniqueKeysWithValues: names.map { ($0, ["delay_us": "200"]) }),
                                source: "synthetic:50", sinks: [probe])
        try host.start()
        host.waitUntilSourceDrained()
        // Drained but not shut down: the plugins wait for the coordinator's plugin-shutdown step.
        for n in names { #expect(!((try? String(contentsOfFile: "\(dir.path)/\(n).txt", encoding: .utf8)) ?? "").contains("SHUTDOWN")) }
        let report = ShutdownCoordinator.shutdown(host, deadline: .seconds(10))
        #expect(report.completed)
        #expect(report.stuck.isEmpty)
        #expect(report.message.hasPrefix("shutdown complete in"))
        for n in names {
            #expect(recordedSequences("\(dir.path)/\(n).txt") == Array(1...50), "\(n)")
            #expect(try String(contentsOfFile: "\(dir.path)/\(n).txt", encoding: .utf8).hasSuffix("SHUTDOWN\n"))
        }
        // The sinks are flushed last: by then every plugin had shut down; the probe read all 50.
        #expect(probe.shutDownAtStop.withLock { $0 } == [true, true, true])
        #expect(probe.seen.load(ordering: .relaxed) == 50)
    }

    @Test("a plugin slower than the deadline is named as stuck in the drain step, with where it is and what is left")
    func slowPluginNamed() throws {
        let dir = TempDir()
        let host = try makeHost(in: dir.path, plugins: ["fast": [:], "slow": ["delay_us": "200000"]],
                                source: "synthetic:20", set: ["performance.batch_size": "1"])
        try host.start()
        defer { host.runtime.abort() }
        // All 20 published (the source is not stopped before it ran) and "slow" inside its first callback.
        let ready = ContinuousClock.now + .seconds(10)
        while (host.status().ring.published < 20 || host.runtime.workers.first { $0.name == "slow" }?.activity != .inEvents)
            && ContinuousClock.now < ready { Thread.sleep(forTimeInterval: 0.001) }
        let start = ContinuousClock.now
        let report = ShutdownCoordinator.shutdown(host, deadline: .milliseconds(300))
        let elapsed = ContinuousClock.now - start
        #expect(!report.completed)
        #expect(report.stuckPhase == "drain")
        #expect(report.stuck.count == 1)
        let stuck = report.stuck.first ?? ""
        #expect(stuck.hasPrefix("plugin slow (in events callback, ") && stuck.hasSuffix(" events left)"), "\(stuck)")
        #expect(report.message.contains("stuck: plugin slow"))
        #expect(!report.message.contains("fast"))
        // The hard deadline holds: the call returned, though a thread is still asleep in a callback.
        #expect(elapsed < .seconds(3))
    }

    @Test("a plugin whose shutdown sleeps past the deadline is named in the plugin shutdown step")
    func stuckInShutdown() throws {
        let dir = TempDir()
        let host = try makeHost(in: dir.path, plugins: ["ok": [:], "sleepy": ["shutdown_delay_us": "5000000"]],
                                source: "synthetic:5")
        try host.start()
        let report = ShutdownCoordinator.shutdown(host, deadline: .milliseconds(300))
        #expect(!report.completed)
        #expect(report.stuckPhase == "plugin shutdown")
        #expect(report.stuck == ["plugin sleepy (in shutdown)"])
        #expect(try String(contentsOfFile: dir.path + "/ok.txt", encoding: .utf8).hasSuffix("SHUTDOWN\n"))
    }

    @Test("a sink that ignores the deadline cannot hold the caller past it")
    func uninterruptibleStep() throws {
        let dir = TempDir()
        let host = try makeHost(in: dir.path, plugins: ["p": [:]], source: "synthetic:5",
                                sinks: [ProbeSink(stopDelay: .seconds(5))])
        try host.start()
        let start = ContinuousClock.now
        let report = ShutdownCoordinator.shutdown(host, deadline: .milliseconds(300))
        #expect(ContinuousClock.now - start < .seconds(3))
        #expect(!report.completed)
        #expect(report.stuckPhase == "flush outputs")
        #expect(report.message.contains("during flush outputs"))
    }

    @Test("a plugin stuck in a 3 s callback while a live-rate source fills the ring is named at the deadline")
    func realCoreStuckPlugin() throws {
        let dir = TempDir()
        let host = try makeHost(in: dir.path, plugins: ["stuckrec": ["delay_us": "3000000"]], source: "synthetic:1000000",
                                set: ["performance.event_buffer_size": "64"])
        try host.start()
        defer { host.runtime.abort() }
        // Wait until the plugin is inside its (3 s) callback: the ring fills behind it.
        let end = ContinuousClock.now + .seconds(10)
        while host.status().ring.fill < 63 && ContinuousClock.now < end { Thread.sleep(forTimeInterval: 0.01) }
        let report = ShutdownCoordinator.shutdown(host, deadline: .milliseconds(300))
        #expect(!report.completed)
        #expect(report.stuck.contains { $0.hasPrefix("plugin stuckrec (in events callback, ") }, "\(report.stuck)")
    }

    @Test("the last shutdown record survives a round trip through its file")
    func shutdownRecordFile() throws {
        let dir = TempDir()
        let path = dir.path + "/last-shutdown"
        try ShutdownRecord(seconds: 0.042, completed: true).write(to: path)
        #expect(ShutdownRecord.read(from: path) == ShutdownRecord(seconds: 0.042, completed: true))
        #expect(ShutdownRecord.read(from: dir.path + "/none") == nil)
        _ = dir.write("bad", "garbage\n")
        #expect(ShutdownRecord.read(from: dir.path + "/bad") == nil)
    }
}

/// The real `plugboard serve` binary, real plugins, real signals.
@Suite("Daemon process: signals and deadlines", .serialized)
struct DaemonProcessTests {
    @Test("SIGTERM with a full ring and 10 plugins: every delivered event is processed, exit 0")
    func sigtermFullRingTenPlugins() async throws {
        try await onTestThread {
            let dir = TempDir()
            var args = ["--source", "synthetic:100000000", "--plugins", dir.path, "--listen", "127.0.0.1:0",
                        "--set", "performance.event_buffer_size=512", "--set", "shutdown.deadline=20s"]
            for i in 0..<10 {
                try buildRecorderPlugin(named: "rec\(i)", into: dir.path)
                args += ["--plugin-config", "rec\(i).output=\(dir.path)/rec\(i).txt", "--plugin-config", "rec\(i).delay_us=500"]
            }
            let d = try DaemonProcess(arguments: args)
            let port = try d.port()
            // A full ring: the slowest consumer is a whole ring behind the producer.
            try d.waitFor("a full ring") {
                metricValue(try httpGetBlocking(port: port, path: "/metrics").body, "plugboard_ring_fill_ratio") == 1
            }
            d.signal(SIGTERM)
            let status = d.waitForExit()
            #expect(status == 0, "stderr: \(d.stderr)")
            let summary = try #require(d.stdout.split(separator: "\n").first { $0.contains("events in") })
            let published = try #require(UInt64(summary.split(separator: " ")[2]))
            #expect(published >= 512)
            try checkEveryEventProcessed(dir: dir.path, plugins: 10, published: published)
            #expect(d.stdout.contains("shutdown complete in"))
        }
    }

    /// Every recorder processed exactly 1...published, each once, in order, then shut down.
    private func checkEveryEventProcessed(dir: String, plugins: Int, published: UInt64) throws {
        for i in 0..<plugins {
            let path = "\(dir)/rec\(i).txt"
            let seqs = recordedSequences(path)
            // Exactly 1...published, each once, in order (compared without printing thousands of numbers).
            #expect(seqs.count == Int(published), "rec\(i) processed \(seqs.count) of \(published)")
            #expect(seqs.first == 1 && seqs.last == published && zip(seqs, seqs.dropFirst()).allSatisfy { $1 == $0 + 1 },
                    "rec\(i): gaps or repeats")
            #expect(try String(contentsOfFile: path, encoding: .utf8).hasSuffix("SHUTDOWN\n"))
            #expect(!(try String(contentsOfFile: path, encoding: .utf8).contains("RESYNC")), "rec\(i) was lapped")
        }
    }

    @Test("a stuck plugin: the hard deadline holds, exit 70, the message names the plugin")
    func stuckPluginHardDeadline() async throws {
        try await onTestThread {
            let dir = TempDir()
            try buildRecorderPlugin(named: "wedged", into: dir.path)
            try buildRecorderPlugin(named: "healthy", into: dir.path)
            let d = try DaemonProcess(arguments: [
                "--source", "synthetic:100000000", "--plugins", dir.path, "--listen", "127.0.0.1:0",
                "--set", "shutdown.deadline=500ms", "--set", "performance.event_buffer_size=64",
                "--plugin-config", "wedged.output=\(dir.path)/w.txt", "--plugin-config", "wedged.delay_us=30000000",
                "--plugin-config", "healthy.output=\(dir.path)/h.txt",
            ])
            let port = try d.port()
            try d.waitFor("the wedged plugin to block the ring") {
                metricValue(try httpGetBlocking(port: port, path: "/metrics").body, "plugboard_ring_fill_ratio") == 1
            }
            let start = ContinuousClock.now
            d.signal(SIGTERM)
            let status = d.waitForExit(timeout: .seconds(20))
            let elapsed = ContinuousClock.now - start
            #expect(status == 70, "stderr: \(d.stderr)")
            #expect(d.stderr.contains("shutdown deadline exceeded"))
            let stuckLine = d.stderr.split(separator: "\n").first { $0.contains("stuck:") } ?? ""
            #expect(stuckLine.contains("plugin wedged"))
            #expect(!stuckLine.contains("plugin healthy"))
            #expect(elapsed < .seconds(10), "the 500 ms deadline did not hold: \(elapsed)")
        }
    }

    static func commandLine(_ pid: Int32) -> String {
        (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
    }

    static func children(of parent: Int32) -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap(Int32.init).filter { pid in
            guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return false }
            return s.contains("PPid:\t\(parent)\n")
        }
    }

    @Test("a SIGKILLed daemon takes its worker processes with it, also after they dropped to an unprivileged user")
    func killedDaemonLeavesNoWorker() async throws {
        try await onTestThread {
            let dir = TempDir()
            try buildRecorderPlugin(named: "dropped", into: dir.path)
            let out = dir.path + "/out.txt"
            FileManager.default.createFile(atPath: out, contents: nil, attributes: [.posixPermissions: 0o666])
            let d = try DaemonProcess(arguments: [
                "--source", "synthetic:100000000", "--plugins", dir.path, "--listen", "127.0.0.1:0",
                "--set", "plugins.isolation=process", "--set", "plugins.worker_user=nobody", "--lossy",
                "--plugin-config", "dropped.output=\(out)", "--plugin-config", "dropped.delay_us=1000",
            ])
            let port = try d.port()
            var pid = 0
            try d.waitFor("the worker process") {
                let body: String
                do { body = try httpGetBlocking(port: port, path: "/plugins").body } catch { throw TestFailure("GET /plugins: \(error); daemon running: \(d.process.isRunning); stderr: \(d.stderr)") }
                let list = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [[String: Any]]
                pid = list?.first?["pid"] as? Int ?? 0
                return pid > 0
            }
            let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
            #expect(status.contains("Uid:\t65534"), "the worker dropped to nobody: \(status)")
            // The worker is a copy of the fork server (plugins.fork_server, on by default), and
            // both are the daemon's children.
            let daemon = d.process.processIdentifier
            #expect(status.contains("PPid:\t\(daemon)\n"), "the daemon's child: \(status)")
            let zygotes = Self.children(of: daemon).filter { Self.commandLine($0).contains("\u{0}--zygote") }
            #expect(zygotes.count == 1, "one fork server among the daemon's children")
            d.signal(SIGKILL)
            _ = d.waitForExit()
            // The parent-death signal survives the drop to nobody: the worker goes with the daemon,
            // and so does the fork server it was copied from.
            for (what, p) in [("the worker", pid)] + zygotes.map({ ("the fork server", Int($0)) }) {
                try d.waitFor("\(what) to end") {
                    guard let s = try? String(contentsOfFile: "/proc/\(p)/status", encoding: .utf8) else { return true }
                    return s.contains("State:\tZ")
                }
            }
        }
    }

    @Test("a second SIGTERM during a slow shutdown stops at once")
    func secondSignalStopsAtOnce() async throws {
        try await onTestThread {
            let dir = TempDir()
            try buildRecorderPlugin(named: "slowpoke", into: dir.path)
            let d = try DaemonProcess(arguments: [
                "--source", "synthetic:100000000", "--plugins", dir.path, "--listen", "127.0.0.1:0",
                "--set", "shutdown.deadline=60s", "--set", "performance.event_buffer_size=64",
                "--plugin-config", "slowpoke.output=\(dir.path)/s.txt", "--plugin-config", "slowpoke.delay_us=30000000",
            ])
            let port = try d.port()
            try d.waitFor("ready") { try httpGetBlocking(port: port, path: "/readyz").status == 200 }
            d.signal(SIGTERM)
            try d.waitFor("shutdown to begin") { try httpGetBlocking(port: port, path: "/readyz").status == 503 }
            d.signal(SIGTERM)
            let start = ContinuousClock.now
            let status = d.waitForExit(timeout: .seconds(20))
            #expect(status == 128 + SIGTERM)
            #expect(d.stderr.contains("second SIGTERM during shutdown: stopping at once"))
            #expect(ContinuousClock.now - start < .seconds(10))
        }
    }

    @Test("/readyz is 200 while running and 503 once a shutdown has begun; /healthz stays 200; /devices shows the table")
    func readyzDuringShutdown() async throws {
        try await onTestThread {
            let dir = TempDir()
            try buildRecorderPlugin(named: "drainer", into: dir.path)
            // A live replay: one keyboard now, the next event a minute later (the source stays live).
            let session = dir.write("session.jsonl", """
                {"action":"add","seqnum":1,"busnum":1,"devnum":3,"vendor_id":"046d","product_id":"c31c","syspath":"/sys/devices/usb1/1-1","devnode":"/dev/bus/usb/001/003","manufacturer":"Logitech","product":"USB Keyboard","serial":"K1"}
                {"action":"remove","seqnum":2,"busnum":1,"devnum":3,"vendor_id":"046d","product_id":"c31c","syspath":"/sys/devices/usb1/1-1","delay_ms":60000}

                """)
            let d = try DaemonProcess(arguments: [
                "--source", "replay:\(session)", "--plugins", dir.path, "--listen", "127.0.0.1:0", "--set", "shutdown.deadline=30s",
                "--plugin-config", "drainer.output=\(dir.path)/d.txt", "--plugin-config", "drainer.delay_us=2000000",
            ])
            let port = try d.port()
            try d.waitFor("ready") { try httpGetBlocking(port: port, path: "/readyz").status == 200 }
            #expect(try httpGetBlocking(port: port, path: "/readyz").body == "ready\n")
            let devices = try JSONSerialization.jsonObject(with: Data(try httpGetBlocking(port: port, path: "/devices").body.utf8)) as? [[String: Any]]
            #expect(devices?.first?["serial"] as? String == "K1")
            // The plugin has written the event and now sleeps 2 s in its callback: the shutdown must wait for it.
            try d.waitFor("the first callback") { recordedSequences(dir.path + "/d.txt") == [1] }
            d.signal(SIGTERM)
            try d.waitFor("not ready") { try httpGetBlocking(port: port, path: "/readyz").status == 503 }
            #expect(try httpGetBlocking(port: port, path: "/readyz").body == "not ready: shutting down\n")
            #expect(try httpGetBlocking(port: port, path: "/healthz").status == 200)
            #expect(d.waitForExit() == 0, "stderr: \(d.stderr)")
        }
    }

    @Test("a listen port already in use exits 1 naming monitoring.listen and the fix")
    func portInUse() async throws {
        try await onTestThread {
            let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(holder) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
            _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(holder, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            listen(holder, 1)
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(holder, $0, &len) } }
            let port = Int(UInt16(bigEndian: addr.sin_port))
            let dir = TempDir()
            let d = try DaemonProcess(arguments: ["--source", "synthetic:100000000", "--plugins", dir.path, "--listen", "127.0.0.1:\(port)"])
            #expect(d.waitForExit() == 1)
            #expect(d.stderr.contains("cannot listen on 127.0.0.1:\(port) (monitoring.listen, from command line --listen 127.0.0.1:\(port)): address already in use. Fix: choose a free port"))
        }
    }

    @Test("bad configuration exits 64 with the problem, before anything starts")
    func badConfigExit() async throws {
        try await onTestThread {
            let d = try DaemonProcess(arguments: ["--source", "udevv", "--listen", "127.0.0.1:0"])
            #expect(d.waitForExit() == 64)
            #expect(d.stderr.contains("command-line --source udevv: source: \"udevv\" is not a known source (did you mean \"udev\"?)"))
        }
    }
}
