import Foundation
import Testing

@testable import PlugboardDaemon
@testable import PlugboardHost

/// `run`, `serve` and `monitor` are one host: from one configuration they start the same plugins
/// with the same settings, and `config check` prints those settings.
@Suite("One host for run, serve and monitor", .serialized)
struct OneHostTests {
    /// The text after `host settings: ` on the first line that has it.
    static func settingsLine(_ text: String) -> String? {
        text.split(separator: "\n").lazy.compactMap { line -> String? in
            guard let r = line.range(of: "host settings: ") else { return nil }
            return String(line[r.upperBound...])
        }.first
    }

    static func pluginsLine(_ text: String) -> String? {
        text.split(separator: "\n").lazy.compactMap { line -> String? in
            guard let r = line.range(of: "plugins running: ") else { return nil }
            return String(line[r.upperBound...])
        }.first
    }

    @Test("run, serve and monitor start the same plugins with the same settings from one file; config check prints them")
    func sameHostFromOneConfig() async throws {
        try await onTestThread {
            let dir = TempDir()
            try buildRecorderPlugin(named: "rec-a", into: dir.path)
            try buildRecorderPlugin(named: "rec-b", into: dir.path)
            let session = packageRoot + "/demo/session.jsonl"
            // Values that differ from every default, so a command that ignored the file would show.
            let file = dir.write("plugboard.toml", """
                source = "replay:\(session)"
                [plugins]
                dirs = ["\(dir.path)"]
                manifests = false
                [performance]
                event_buffer_size = 300
                batch_size = 7
                [udev]
                mode = "kernel"
                [shutdown]
                deadline = "3s"
                [monitoring]
                listen = "127.0.0.1:0"
                """)
            guard let binary = productBinary("plugboard") else { throw TestFailure("plugboard was not built") }
            func outputs(_ tag: String) -> [String] {
                ["--plugin-config", "rec-a.output=\(dir.path)/\(tag)-a.txt", "--plugin-config", "rec-b.output=\(dir.path)/\(tag)-b.txt"]
            }

            let check = try runProcess(binary, ["config", "check", file], env: [:])
            #expect(check.status == 0, "\(check.stderr)")
            let expected = try #require(Self.settingsLine(check.stdout), "config check prints the host settings")
            #expect(expected.contains("ring_slots=512") && expected.contains("batch_size=7") && expected.contains("udev_mode=kernel")
                    && expected.contains("shutdown_deadline=3s") && expected.contains("manifests=off"), "\(expected)")

            let run = try runProcess(binary, ["run", "--config", file] + outputs("run"), env: [:])
            #expect(run.status == 0, "\(run.stderr)")
            #expect(Self.settingsLine(run.stderr) == expected)
            #expect(Self.pluginsLine(run.stderr) == "rec-a,rec-b")

            let monitor = try runProcess(binary, ["monitor", "--config", file, "--json"] + outputs("monitor"), env: [:])
            #expect(monitor.status == 0, "\(monitor.stderr)")
            #expect(Self.settingsLine(monitor.stderr) == expected)
            #expect(Self.pluginsLine(monitor.stderr) == "rec-a,rec-b")
            #expect(monitor.stdout.split(separator: "\n").count == 9, "monitor printed the 9 events of the session")

            let serve = try DaemonProcess(arguments: ["--config", file] + outputs("serve"))
            try serve.waitFor("the session delivered to both plugins") {
                recordedSequences("\(dir.path)/serve-a.txt").count == 9 && recordedSequences("\(dir.path)/serve-b.txt").count == 9
            }
            serve.signal(SIGTERM)
            #expect(serve.waitForExit() == 0, "\(serve.stderr)")
            #expect(Self.settingsLine(serve.stderr) == expected)
            #expect(Self.pluginsLine(serve.stderr) == "rec-a,rec-b")

            // Every command's plugins saw the whole session, in order, and were shut down.
            for tag in ["run", "monitor", "serve"] {
                for p in ["a", "b"] {
                    let path = "\(dir.path)/\(tag)-\(p).txt"
                    #expect(recordedSequences(path) == Array(1...9), "\(path)")
                    #expect(((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").hasSuffix("SHUTDOWN\n"), "\(path)")
                }
            }
        }
    }

    @Test("run's flags set the same keys as --set: --ring-slots is performance.event_buffer_size, --redis-maxlen 0 is accepted by both")
    func runFlagsAreConfigKeys() async throws {
        try await onTestThread {
            let dir = TempDir()
            guard let binary = productBinary("plugboard") else { throw TestFailure("plugboard was not built") }
            let check = try runProcess(binary, ["config", "check", "--set", "performance.event_buffer_size=100", "--set", "plugins.dirs=\(dir.path)",
                                                "--set", "source=synthetic:3", "--set", "redis.maxlen=0"], env: [:])
            #expect(check.status == 0, "\(check.stderr)")
            let expected = try #require(Self.settingsLine(check.stdout))
            // Redis is not configured, so maxlen does not show; the run must accept 0 all the same.
            let run = try runProcess(binary, ["run", "--ring-slots", "100", "--plugins", dir.path, "--source", "synthetic:3",
                                              "--redis-maxlen", "0"], env: [:])
            #expect(run.status == 0, "\(run.stderr)")
            #expect(Self.settingsLine(run.stderr) == expected)
            #expect(expected.contains("ring_slots=128"))
            // A flag out of range is refused like the key, naming the flag and the key.
            let bad = try runProcess(binary, ["run", "--ring-slots", "1", "--plugins", dir.path, "--source", "synthetic:3"], env: [:])
            #expect(bad.status == 64)
            #expect(bad.stderr.contains("--ring-slots 1") && bad.stderr.contains("performance.event_buffer_size"), "\(bad.stderr)")
        }
    }

    @Test("a core error reaches the operator with the setting that fixes it and where that setting came from", arguments: [
        (["run", "--plugins", "/nonexistent/plugins", "--source", "synthetic:3"],
         ["/nonexistent/plugins: ", "the setting is plugins.dirs, from command line --plugins /nonexistent/plugins"]),
        (["run", "--plugins", "/tmp", "--ignore-manifests", "--source", "replay:/nonexistent/session.jsonl"],
         ["/nonexistent/session.jsonl", "the setting is source, from command line --source replay:/nonexistent/session.jsonl"]),
        (["monitor", "--config", "CONFIG", "--source", "synthetic:3"],
         ["/nonexistent/from-file", "the setting is plugins.dirs, from CONFIG:2"]),
    ])
    func coreErrorsNameTheSetting(arguments: [String], mentions: [String]) async throws {
        try await onTestThread {
            let dir = TempDir()
            let file = dir.write("plugboard.toml", "[plugins]\ndirs = [\"/nonexistent/from-file\"]\n")
            guard let binary = productBinary("plugboard") else { throw TestFailure("plugboard was not built") }
            let r = try runProcess(binary, arguments.map { $0 == "CONFIG" ? file : $0 }, env: [:])
            #expect(r.status != 0)
            for m in mentions.map({ $0.replacingOccurrences(of: "CONFIG", with: file) }) {
                #expect(r.stderr.contains(m), "\(r.stderr)")
            }
            // The core's own words name no flag and no key.
            #expect(!r.stderr.contains("given with --plugins"))
        }
    }

    @Test("monitor never publishes: with redis.url set to a port where nothing listens it still runs, and says redis=off")
    func monitorNeverPublishes() async throws {
        try await onTestThread {
            let dir = TempDir()
            guard let binary = productBinary("plugboard") else { throw TestFailure("plugboard was not built") }
            let args = ["--plugins", dir.path, "--source", "synthetic:3", "--set", "redis.url=redis://127.0.0.1:1"]
            let m = try runProcess(binary, ["monitor"] + args, env: [:])
            #expect(m.status == 0, "\(m.stderr)")
            #expect(Self.settingsLine(m.stderr)?.contains("redis=off") == true, "\(m.stderr)")
            #expect(m.stdout.split(separator: "\n").count == 3)
            // The same configuration makes run publish, so it fails to start: monitor really skipped Redis.
            let r = try runProcess(binary, ["run"] + args, env: [:])
            #expect(r.status != 0)
            #expect(r.stderr.contains("127.0.0.1:1"), "\(r.stderr)")
        }
    }

    @Test("run with a finite source and a plugin hanging in shutdown exits 70 at the deadline, naming it")
    func runEndsDespiteAHangingShutdown() async throws {
        try await onTestThread {
            let dir = TempDir()
            try buildRecorderPlugin(named: "hangs", into: dir.path)
            try buildRecorderPlugin(named: "fine", into: dir.path)
            guard let binary = productBinary("plugboard") else { throw TestFailure("plugboard was not built") }
            let start = ContinuousClock.now
            let r = try runProcess(binary, ["run", "--plugins", dir.path, "--ignore-manifests", "--source", "synthetic:5",
                                            "--shutdown-deadline", "0.5",
                                            "--plugin-config", "hangs.output=\(dir.path)/hangs.txt",
                                            "--plugin-config", "hangs.shutdown_delay_us=60000000",
                                            "--plugin-config", "fine.output=\(dir.path)/fine.txt"], env: [:])
            #expect(r.status == 70, "\(r.stderr)")
            #expect(ContinuousClock.now - start < .seconds(30), "the 60 s shutdown did not hold run")
            #expect(r.stderr.contains("during plugin shutdown: stuck: plugin hangs (in shutdown)"), "\(r.stderr)")
            #expect(recordedSequences("\(dir.path)/fine.txt") == Array(1...5))
            #expect(((try? String(contentsOfFile: "\(dir.path)/fine.txt", encoding: .utf8)) ?? "").hasSuffix("SHUTDOWN\n"))
        }
    }
}
