import Foundation
import PlugboardCore
import Testing

@Suite("plugboard run (the real binary)")
struct RunCommandTests {
    var plugboard: String { "\(TestSupport.productsDir)/plugboard" }

    @Test("--pace: fast skips a replay's delays, Nx divides them, and a bad pace is refused naming replay.pace and the fix",
          .timeLimit(.minutes(2)))
    func replayPace() throws {
        let dir = try TestSupport.tempDir("pace")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Three events 60 s apart: at the recorded pace this run would take two minutes.
        let session = "\(dir)/slow.jsonl"
        try (0..<3).map { "{\"action\":\"add\",\"syspath\":\"/sys/devices/p/\($0)\",\"delay_ms\":60000}" }
            .joined(separator: "\n").write(toFile: session, atomically: true, encoding: .utf8)
        let fast = try TestSupport.run(plugboard, ["run", "--plugins", dir, "--source", "replay:\(session)", "--pace", "fast"])
        #expect(fast.status == 0, "\(fast.output)")
        #expect(fast.output.contains("3 events"), "\(fast.output)")
        #expect(fast.output.contains("replay_pace=fast"), "the host settings line shows the pace: \(fast.output)")
        let check = try TestSupport.run(plugboard, ["config", "check", "--set", "source=replay:\(session)", "--set", "replay.pace=10x"])
        #expect(check.output.contains("replay_pace=10.0x"), "\(check.output)")
        for bad in ["slow", "0x", "-2x"] {
            let r = try TestSupport.run(plugboard, ["run", "--plugins", dir, "--source", "replay:\(session)", "--pace=\(bad)"])
            #expect(r.status != 0)
            #expect(r.output.contains("replay.pace") && r.output.contains("write recorded, fast, or a speed-up such as 10x"), "\(r.output)")
        }
    }

    @Test("run prints a per-plugin summary and the rejected plugins, and exits 0")
    func summary() throws {
        let dir = try TestSupport.pluginDir([
            (TestSupport.plugin("usb-logger"), "libusb-logger.so"), (TestSupport.plugin("device-counter"), "libdevice-counter.so"),
            (TestSupport.plugin("pbtest-no-entry"), "libbroken.so"),
        ])
        // --ignore-manifests: this test is about the loader's own errors (manifests: PlugboardManifestTests).
        let r = try TestSupport.run(plugboard, ["run", "--ignore-manifests", "--plugins", dir, "--source",
                                                "replay:\(TestSupport.packageRoot)/demo/session.jsonl",
                                                "--plugin-config", "usb-logger.output=\(dir)/log"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("9 events"))
        #expect(r.output.range(of: #"device-counter\s+stopped\s+9\s"#, options: .regularExpression) != nil, "\(r.output)")
        #expect(r.output.range(of: #"usb-logger\s+stopped\s+9\s"#, options: .regularExpression) != nil)
        #expect(r.output.contains("libbroken.so: no entry point 'pb_plugin_entry'"))
        #expect(r.output.contains("device-counter/summary: {\"events\":9"))
        #expect(TestSupport.lines("\(dir)/log").count == 9)
    }

    @Test("--strict turns refused and failed plugins into exit 2 after the run; without it they only show in the summary")
    func strictExitStatus() throws {
        let dir = try TestSupport.pluginDir([
            (TestSupport.plugin("device-counter"), "libdevice-counter.so"),
            (TestSupport.plugin("pbtest-no-entry"), "libbroken.so"),       // refused by the loader
            (TestSupport.plugin("pbtest-init-fails"), "libinit-fails.so"), // init returns an error
        ])
        let args = ["run", "--ignore-manifests", "--plugins", dir, "--source", "replay:\(TestSupport.packageRoot)/demo/session.jsonl"]
        let lenient = try TestSupport.run(plugboard, args)
        #expect(lenient.status == 0, "\(lenient.output)")
        #expect(lenient.output.contains("rejected plugins (2):"), "\(lenient.output)")

        let strict = try TestSupport.run(plugboard, args + ["--strict"])
        #expect(strict.status == 2, "\(strict.output)")
        #expect(strict.output.range(of: #"device-counter\s+stopped\s+9\s"#, options: .regularExpression) != nil,
                "the plugins that loaded still ran the whole session: \(strict.output)")
        #expect(strict.output.contains("plugboard: --strict: 2 plugin(s) refused or failed to initialise"), "\(strict.output)")

        // Nothing refused: --strict exits 0.
        let clean = try TestSupport.pluginDir([(TestSupport.plugin("device-counter"), "libdevice-counter.so")])
        let ok = try TestSupport.run(plugboard, ["run", "--ignore-manifests", "--plugins", clean, "--strict", "--source",
                                                 "replay:\(TestSupport.packageRoot)/demo/session.jsonl"])
        #expect(ok.status == 0, "\(ok.output)")
    }

    @Test("usage errors are clear and exit non-zero", arguments: [
        (["run", "--plugins", "/nonexistent/plugins", "--source", "synthetic:10"], "/nonexistent/plugins"),
        (["run", "--plugins", "/tmp", "--source", "bogus"], "--source"),
        (["run", "--plugins", "/tmp", "--source", "synthetic:10", "--batch-size", "0"], "--batch-size"),
        (["run", "--plugins", "/tmp", "--source", "synthetic:10", "--cpu-affinity", "2-x"], "--cpu-affinity 2-x: performance.cpu_affinity: \"2-x\" is not a CPU number"),
        (["run", "--plugins", "/tmp", "--source", "synthetic:10", "--cpu-affinity", "1000"],
         "CPU 1000 is not one this process may run on (allowed: \(CPUAffinity.allowed)) (fix: list CPUs from \(CPUAffinity.allowed) (for example \"\(CPUAffinity.allowed.cpus.last ?? 0)\"), or \"\" not to pin; the setting is performance.cpu_affinity, from command line --cpu-affinity 1000)"),
    ])
    func usageErrors(arguments: [String], mentions: String) throws {
        let r = try TestSupport.run(plugboard, arguments)
        #expect(r.status != 0)
        #expect(r.output.contains(mentions), "\(r.output)")
    }

    @Test("--cpu-affinity pins the run and every event still reaches the plugins")
    func pinnedRun() throws {
        let dir = try TestSupport.pluginDir([(TestSupport.plugin("device-counter"), "libdevice-counter.so")])
        let cpu = try #require(CPUAffinity.allowed.cpus.last)
        let r = try TestSupport.run(plugboard, ["run", "--ignore-manifests", "--plugins", dir, "--source", "synthetic:5000",
                                                "--cpu-affinity", "\(cpu)", "--log-level", "info"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("cpu_affinity=\(cpu)"), "the log says where it runs: \(r.output)")
        #expect(r.output.range(of: #"device-counter\s+stopped\s+5000\s"#, options: .regularExpression) != nil, "\(r.output)")
    }

    @Test("a bad replay file stops the run with its line and field")
    func badReplay() throws {
        let replay = try TestSupport.replayFile([#"{"action":"add","syspath":"/a","vendor_id":"xyz1"}"#])
        let r = try TestSupport.run(plugboard, ["run", "--plugins", try TestSupport.tempDir(), "--source", "replay:\(replay)"])
        #expect(r.status != 0)
        #expect(r.output.contains("\(replay):1: vendor_id:"), "\(r.output)")
    }

    @Test("--version names the host and ABI versions")
    func version() throws {
        let r = try TestSupport.run(plugboard, ["--version"])
        #expect(r.status == 0 && r.output.contains("plugin ABI 1.1"))
    }
}
