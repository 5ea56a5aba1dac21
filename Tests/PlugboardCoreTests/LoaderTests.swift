import CPlugboard
import Foundation
import PlugboardCore
import PlugboardReplay
import Testing

@Suite("Plugin loader errors")
struct LoaderTests {
    /// Runs a replay through a directory holding the recorder and `bad`, and returns
    /// the runtime and the recorder's output lines.
    func runWithBadPlugin(_ bad: String, named name: String, config: [String: PluginConfiguration] = [:])
        throws -> (Runtime, [String])
    {
        let dir = try TestSupport.pluginDir([(TestSupport.plugin("pbtest-recorder"), "librecorder.so")])
        if FileManager.default.fileExists(atPath: bad) {
            try FileManager.default.copyItem(atPath: bad, toPath: "\(dir)/\(name)")
        }
        let out = "\(dir)/recorder.out"
        var cfg = config
        cfg["recorder"] = ["output": out]
        let replay = try TestSupport.replayFile((1...20).map {
            #"{"action":"add","vendor_id":"abcd","product_id":"\#(String(format: "%04x", $0))","syspath":"/sys/devices/t/\#($0)"}"#
        })
        let runtime = try TestSupport.runToEnd(pluginDirs: [dir], source: ReplaySource(path: replay, pace: 0), config: cfg)
        return (runtime, TestSupport.lines(out).filter { !$0.hasPrefix("SHUTDOWN") })
    }

    func expectOthersServed(_ runtime: Runtime, _ lines: [String]) {
        #expect(lines.count == 20, "the recorder still receives every event")
        #expect(runtime.pluginStats.map(\.name) == ["recorder"])
    }

    @Test("a file that is not ELF is rejected by name and the others still run")
    func notELF() throws {
        let junk = try TestSupport.tempDir() + "/libjunk.so"
        try "#!/bin/sh\necho not a library\n".write(toFile: junk, atomically: true, encoding: .utf8)
        let (runtime, lines) = try runWithBadPlugin(junk, named: "libjunk.so")
        let f = try #require(runtime.failures.first)
        #expect(f.error.code == "not-elf")
        #expect(f.description.contains("libjunk.so") && f.description.contains("not an ELF shared object"))
        expectOthersServed(runtime, lines)
    }

    @Test("a library built for another architecture is rejected naming both machines")
    func wrongArchitecture() throws {
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: TestSupport.plugin("pbtest-recorder"))))
        bytes[18] = 183  // e_machine = EM_AARCH64
        bytes[19] = 0
        let path = try TestSupport.tempDir() + "/libarm.so"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let (runtime, lines) = try runWithBadPlugin(path, named: "libarm.so")
        let f = try #require(runtime.failures.first)
        #expect(f.error.code == "wrong-architecture")
        #expect(f.description.contains("libarm.so") && f.description.contains("AArch64") && f.description.contains("x86-64"))
        expectOthersServed(runtime, lines)
    }

    @Test("a library without pb_plugin_entry is rejected naming the missing symbol")
    func noEntryPoint() throws {
        let (runtime, lines) = try runWithBadPlugin(TestSupport.plugin("pbtest-no-entry"), named: "libnoentry.so")
        let f = try #require(runtime.failures.first)
        #expect(f.error.code == "no-entry-point")
        #expect(f.description.contains("libnoentry.so") && f.description.contains("pb_plugin_entry"))
        expectOthersServed(runtime, lines)
    }

    @Test("a plugin speaking another ABI major is rejected with both versions")
    func abiMismatch() throws {
        let (runtime, lines) = try runWithBadPlugin(TestSupport.plugin("pbtest-wrong-abi"), named: "libwrongabi.so")
        let f = try #require(runtime.failures.first)
        #expect(f.error.code == "abi-mismatch")
        #expect(f.description.contains("libwrongabi.so") && f.description.contains("ABI 2.0")
                && f.description.contains("ABI \(PB_ABI_MAJOR).\(PB_ABI_MINOR)"))
        expectOthersServed(runtime, lines)
    }

    @Test("an unresolved symbol is reported with its name and dlerror's text")
    func unresolvedSymbol() throws {
        let (runtime, lines) = try runWithBadPlugin(TestSupport.plugin("pbtest-unresolved"), named: "libunresolved.so")
        let f = try #require(runtime.failures.first)
        #expect(f.error.code == "unresolved-symbol")
        #expect(f.description.contains("libunresolved.so"))
        #expect(f.description.contains("'pb_test_symbol_nobody_defines'"))
        #expect(f.description.contains("dlerror: "))
        expectOthersServed(runtime, lines)
    }

    @Test("init failure reports the plugin's status and its last message")
    func initFails() throws {
        let (runtime, lines) = try runWithBadPlugin(TestSupport.plugin("pbtest-init-fails"), named: "libinitfails.so")
        let f = try #require(runtime.failures.first)
        #expect(f.error.code == "init-failed")
        #expect(f.description.contains("libinitfails.so") && f.description.contains("PB_ERR_CONFIG")
                && f.description.contains("missing required config key 'endpoint'"))
        expectOthersServed(runtime, lines)
    }

    @Test("a missing plugin directory is an error naming it")
    func missingDirectory() throws {
        #expect {
            try PluginLoader.discover(in: ["/nonexistent/plugboard-plugins"])
        } throws: { e in
            "\(e)".contains("/nonexistent/plugboard-plugins") && "\(e)".contains("cannot read plugin directory")
                && !"\(e)".contains("--plugins")
        }
    }

    @Test("two plugins with the same name: the second is skipped with the reason")
    func duplicateName() throws {
        let dir = try TestSupport.pluginDir([
            (TestSupport.plugin("usb-logger"), "liba.so"), (TestSupport.plugin("usb-logger"), "libb.so"),
        ])
        let runtime = try TestSupport.runToEnd(pluginDirs: [dir], source: SyntheticSource(count: 10),
                                               config: ["usb-logger": ["output": "/dev/null"]])
        #expect(runtime.pluginStats.count == 1)
        #expect(runtime.failures.first?.description.contains("another plugin named 'usb-logger'") == true)
    }
}
