import Foundation
import PlugboardManifest
import Testing

/// `plugboard pack`, `inspect`, `explain` and `run` as a person runs them: the real binary, real
/// plugin `.so` files, manifests packed by the binary itself.
@Suite("CLI with manifests (the real binary)")
struct RunWithManifestsTests {
    var plugboard: String { TestSupport.buildDir + "/plugboard" }

    func run(_ args: [String]) throws -> (status: Int32, output: String) { try TestSupport.runPlugboard(args) }

    /// A plugin dir with usb-logger (only Logitech devices, output file from [config]), device-counter
    /// (after usb-logger), and the recorder test plugin without a manifest.
    func pluginDir() throws -> (dir: String, log: String) {
        let dir = TestSupport.makeTempDir("run")
        let log = dir + "/logger.out"
        for name in ["usb-logger", "device-counter", "pbtest-recorder"] {
            try TestSupport.copy(try TestSupport.builtLibrary(name), to: "\(dir)/lib\(name).so")
        }
        TestSupport.write("""
            [plugin]
            name = "usb-logger"
            version = "1.0.0"
            library = "libusb-logger.so"

            [[match]]
            vendor = "046d"

            [config]
            output = "\(log)"
            """, to: dir + "/logger.toml")
        TestSupport.write("""
            [plugin]
            name = "device-counter"
            version = "1.0.0"
            library = "libdevice-counter.so"

            [dependencies]
            after = ["usb-logger"]

            [[match]]
            subsystem = "usb"
            """, to: dir + "/counter.toml")
        for (toml, name) in [("logger.toml", "usb-logger"), ("counter.toml", "device-counter")] {
            let r = try run(["pack", "\(dir)/\(toml)", "--library", "\(dir)/lib\(name).so", "-o", "\(dir)/\(name).pbm"])
            #expect(r.status == 0, "\(r.output)")
        }
        return (dir, log)
    }

    @Test("run: filter from [[match]], config from [config], dependency order, a .so without manifest skipped")
    func runUsesManifests() throws {
        let (dir, log) = try pluginDir()
        defer { TestSupport.cleanup(dir) }
        let r = try run(["run", "--plugins", dir, "--source", "replay:\(TestSupport.packageRoot)/demo/session.jsonl",
                         "--registry-cache", "\(dir)/registry.pbr"])
        #expect(r.status == 0, "\(r.output)")
        // The demo session has 9 events, 3 of them for the Logitech keyboard 046d:c31c.
        #expect(r.output.range(of: #"usb-logger\s+stopped\s+3\s+6\s"#, options: .regularExpression) != nil, "\(r.output)")
        #expect(r.output.range(of: #"device-counter\s+stopped\s+9\s+0\s"#, options: .regularExpression) != nil, "\(r.output)")
        let lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
        #expect(lines.count == 3 && lines.allSatisfy { $0.contains("046d:c31c") }, "config output= came from the manifest: \(lines)")
        #expect(r.output.contains("\(dir)/libpbtest-recorder.so: skipped: manifest: no manifest in \(dir) names libpbtest-recorder.so"), "\(r.output)")
        // usb-logger (level 1) is opened and started before device-counter (level 2), although
        // device-counter comes first by name.
        let logger = r.output.range(of: "plugin=usb-logger version=1.0.0 [PlugboardCore] plugin found")
        let counter = r.output.range(of: "plugin=device-counter version=1.0.0 [PlugboardCore] plugin found")
        #expect(logger != nil && counter != nil && logger!.lowerBound < counter!.lowerBound, "\(r.output)")
        #expect(FileKey.of(path: "\(dir)/registry.pbr") != nil, "the registry cache was written")
    }

    @Test("run: [worker] batch caps the events per callback and deadline_ms counts overruns")
    func workerSettingsApplied() throws {
        let dir = TestSupport.makeTempDir("worker")
        defer { TestSupport.cleanup(dir) }
        try TestSupport.copy(try TestSupport.builtLibrary("pbtest-slow"), to: "\(dir)/libpbtest-slow.so")
        TestSupport.write("""
            [plugin]
            name = "slow"
            version = "1.0.0"
            library = "libpbtest-slow.so"

            [[match]]
            subsystem = "usb"

            [worker]
            batch = 2
            deadline_ms = 1
            isolation = "thread"   # counts overruns; a worker process past its deadline is killed (IsolationTests)

            [config]
            output = "\(dir)/slow.out"
            delay_us = "3000"
            """, to: dir + "/slow.toml")
        let packed = try run(["pack", "\(dir)/slow.toml", "--library", "\(dir)/libpbtest-slow.so", "-o", "\(dir)/slow.pbm"])
        #expect(packed.status == 0, "\(packed.output)")
        let r = try run(["run", "--plugins", dir, "--source", "synthetic:20", "--registry-cache", "none"])
        #expect(r.status == 0, "\(r.output)")
        // The first callback sleeps 3 ms while all 20 events are published; after it, polls are capped
        // at 2 events: 10 to 11 callbacks in all (2 or 3 without the cap), each overrunning 1 ms.
        let count = r.output.firstMatch(of: /slow: (\d+) callbacks ran past its deadline_ms/).flatMap { Int($0.1) }
        #expect(count.map { (10...12).contains($0) } == true, "\(r.output)")
        #expect(r.output.contains("callback overran its deadline"), "\(r.output)")
    }

    /// The recorder, packed with a `[config]` whose keys are not in alphabetical order; it
    /// writes the pb_config entries init received ("CONFIG key=value") before the events.
    func configOrderRun(_ extra: [String]) throws -> [String] {
        let dir = TestSupport.makeTempDir("config-order")
        defer { TestSupport.cleanup(dir) }
        try TestSupport.copy(try TestSupport.builtLibrary("pbtest-recorder"), to: "\(dir)/librecorder.so")
        TestSupport.write("""
            [plugin]
            name = "recorder"
            version = "1.0.0"
            library = "librecorder.so"

            [[match]]
            subsystem = "usb"

            [config]
            zeta = "z"
            output = "\(dir)/recorder.out"
            alpha = "a"
            dump_config = "1"
            mid = "m"
            """, to: dir + "/recorder.toml")
        let packed = try run(["pack", "\(dir)/recorder.toml", "--library", "\(dir)/librecorder.so", "-o", "\(dir)/recorder.pbm"])
        #expect(packed.status == 0, "\(packed.output)")
        let inspect = try run(["inspect", "--json", "\(dir)/recorder.pbm"])
        #expect(inspect.output.contains(#""config_order":["zeta","output","alpha","dump_config","mid"]"#)
                || inspect.output.replacingOccurrences(of: " ", with: "").replacingOccurrences(of: "\n", with: "")
                    .contains(#""config_order":["zeta","output","alpha","dump_config","mid"]"#), "\(inspect.output)")
        let r = try run(["run", "--plugins", dir, "--source", "synthetic:2", "--registry-cache", "none"] + extra)
        #expect(r.status == 0, "\(r.output)")
        let text = (try? String(contentsOfFile: "\(dir)/recorder.out", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { $0.hasPrefix("CONFIG ") }.map { String($0.dropFirst(7)) }
    }

    @Test("run: [config] reaches init in file order, not sorted by key")
    func configReachesInitInFileOrder() throws {
        let got = try configOrderRun([])
        #expect(got.map { $0.split(separator: "=")[0] } == ["zeta", "output", "alpha", "dump_config", "mid"], "\(got)")
        #expect(got.first == "zeta=z" && got.last == "mid=m")
    }

    @Test("run: --plugin-config replaces a [config] key in place and appends new keys in the order given")
    func configOverridesKeepOrder() throws {
        let got = try configOrderRun(["--plugin-config", "recorder.mid=M2", "--plugin-config", "recorder.new=n",
                                      "--plugin-config", "recorder.beta=b", "--plugin-config", "recorder.zeta=Z2"])
        #expect(got.map { $0.split(separator: "=")[0] } == ["zeta", "output", "alpha", "dump_config", "mid", "new", "beta"], "\(got)")
        #expect(got.contains("zeta=Z2") && got.contains("mid=M2") && got.contains("new=n") && got.contains("beta=b"), "\(got)")
    }

    @Test("run: a .so replaced after packing is not loaded; the reason says to pack again")
    func replacedLibraryRefused() throws {
        let (dir, _) = try pluginDir()
        defer { TestSupport.cleanup(dir) }
        try TestSupport.copy(try TestSupport.builtLibrary("pbtest-recorder"), to: dir + "/libusb-logger.so")
        let r = try run(["run", "--plugins", dir, "--source", "synthetic:5"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("\(dir)/usb-logger.pbm: skipped: library-hash: stale manifest: \(dir)/libusb-logger.so is not the library that was packed"), "\(r.output)")
        #expect(r.output.contains("device-counter.pbm: skipped: plugin.after: plugin \"device-counter\" needs \"usb-logger\", which was rejected (library-hash:"),
                "device-counter names the dependency it lost and why: \(r.output)")
    }

    @Test("pack reports every problem with file:line and exits 1")
    func packErrors() throws {
        let dir = TestSupport.makeTempDir("pack")
        defer { TestSupport.cleanup(dir) }
        TestSupport.write("[plugin]\nname = \"Bad\"\nversion = \"1\"\nlibrary = \"lib.so\"\n\n[[match]]\nvendor = \"xyz\"\n", to: dir + "/plugin.toml")
        let r = try run(["pack", dir])
        #expect(r.status == 1)
        #expect(r.output.contains("error: \(dir)/plugin.toml:2: plugin.name: \"Bad\" is not a valid plugin name"), "\(r.output)")
        #expect(r.output.contains("error: \(dir)/plugin.toml:7: match[1].vendor: \"xyz\" is not a USB vendor id"), "\(r.output)")
    }

    @Test("inspect shows a .pbm for people and as JSON; a corrupt one is rejected with exit 1")
    func inspect() throws {
        let (dir, _) = try pluginDir()
        defer { TestSupport.cleanup(dir) }
        let people = try run(["inspect", "\(dir)/usb-logger.pbm"])
        #expect(people.status == 0)
        #expect(people.output.contains("match[1]:    046d:*"), "\(people.output)")
        #expect(people.output.contains("library file: \(dir)/libusb-logger.so: matches"))
        let json = try run(["inspect", "--json", "\(dir)/device-counter.pbm"])
        let obj = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
        #expect(obj?["valid"] as? Bool == true)
        #expect((obj?["manifest"] as? [String: Any])?["after"] as? [String] == ["usb-logger"])
        let all = try run(["inspect", "--json", dir])
        let list = try JSONSerialization.jsonObject(with: Data(all.output.utf8)) as? [[String: Any]]
        #expect(all.status == 0 && list?.compactMap { $0["file"] as? String } == ["\(dir)/device-counter.pbm", "\(dir)/usb-logger.pbm"], "\(all.output)")
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: "\(dir)/usb-logger.pbm")))
        bytes[40] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: "\(dir)/usb-logger.pbm"))
        let bad = try run(["inspect", "\(dir)/usb-logger.pbm"])
        #expect(bad.status == 1)
        #expect(bad.output.contains("header.checksum: CRC-32C mismatch"), "\(bad.output)")
        let dirWithBad = try run(["inspect", dir])
        #expect(dirWithBad.status == 1 && dirWithBad.output.contains("device-counter.pbm: valid manifest"), "\(dirWithBad.output)")
    }

    @Test("explain lists what loads and why not, and --device names the matching rule")
    func explain() throws {
        let (dir, _) = try pluginDir()
        defer { TestSupport.cleanup(dir) }
        let all = try run(["explain", dir])
        #expect(all.status == 0)
        #expect(all.output.contains("load  usb-logger"))
        #expect(all.output.contains("skip  pbtest-recorder"))
        #expect(all.output.contains("level 1: usb-logger") && all.output.contains("level 2: device-counter"), "\(all.output)")
        let dev = try run(["explain", dir, "--device", "1d6b:0002:09"])
        #expect(dev.output.contains("device-counter: receives it (match[1] *:*)"), "\(dev.output)")
        #expect(dev.output.contains("usb-logger: does not receive it"))
        #expect(dev.output.contains("vendor is 046d, the device's is 1d6b"))
        let json = try run(["explain", "--json", dir, "--device", "046d:c52b"])
        let obj = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
        let rows = (obj?["plugins"] as? [[String: Any]]) ?? []
        #expect(rows.first { $0["plugin"] as? String == "usb-logger" }?["rule"] as? Int == 1, "\(json.output)")
        let badDevice = try run(["explain", dir, "--device", "nonsense"])
        #expect(badDevice.status != 0 && badDevice.output.contains("is not VID:PID[:CLASS]"), "\(badDevice.output)")
    }
}
