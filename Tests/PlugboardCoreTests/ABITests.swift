import CPlugboard
import Foundation
import PlugboardCore
import Testing

@Suite("C ABI header")
struct ABITests {
    static let header = "\(TestSupport.packageRoot)/SDK/include"

    @Test("plugboard.h compiles warning-free as pedantic C99 and as C++")
    func headerCompilesStrictly() throws {
        let dir = try TestSupport.tempDir("abi")
        let src = """
            #include <plugboard.h>
            int use(const pb_event *e);
            int use(const pb_event *e) { return (int)pb_event_string(e, e->serial)[0] + (int)sizeof(pb_host_api); }
            """
        try src.write(toFile: "\(dir)/t.c", atomically: true, encoding: .utf8)
        try src.write(toFile: "\(dir)/t.cpp", atomically: true, encoding: .utf8)
        let c = try TestSupport.run("/usr/bin/cc", ["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror",
                                                     "-I", Self.header, "-c", "\(dir)/t.c", "-o", "\(dir)/t.o"])
        #expect(c.status == 0, "cc -std=c99 -pedantic failed:\n\(c.output)")
        let cxx = try TestSupport.run("/usr/bin/c++", ["-Wall", "-Wextra", "-Werror", "-I", Self.header,
                                                        "-c", "\(dir)/t.cpp", "-o", "\(dir)/t2.o"])
        #expect(cxx.status == 0, "c++ failed:\n\(cxx.output)")
    }

    @Test("Swift sees the same layout the header pins")
    func layoutMatchesHeader() {
        #expect(MemoryLayout<pb_event>.size == 176)
        #expect(MemoryLayout<pb_event>.offset(of: \pb_event.speed_kbps) == 52)
        #expect(MemoryLayout<pb_event>.offset(of: \pb_event.interfaces) == 80)
        #expect(MemoryLayout<pb_negotiate_in>.size == 16)
        #expect(Int(PB_EVENT_MAX_SIZE) == EventLayout.maxSize)
    }

    @Test("a plugin compiled with the system C compiler from the header alone loads and receives events")
    func thirdPartyPluginBuiltWithCC() throws {
        let dir = try TestSupport.tempDir("cc-plugin")
        let so = "\(dir)/libminimal.so"
        let build = try TestSupport.run("/usr/bin/cc", [
            "-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-fvisibility=hidden",
            "-I", Self.header, "\(TestSupport.packageRoot)/SDK/examples/minimal_plugin.c", "-o", so,
        ])
        try #require(build.status == 0, "cc failed:\n\(build.output)")
        // The only symbol it exports is the entry point.
        let nm = try TestSupport.run("/usr/bin/nm", ["-D", "--defined-only", so])
        #expect(nm.output.contains("pb_plugin_entry"))

        let runtime = try TestSupport.runToEnd(pluginDirs: [dir], source: SyntheticSource(count: 5000))
        #expect(runtime.failures.isEmpty, "\(runtime.failures)")
        let stats = try #require(runtime.pluginStats.first)
        #expect(stats.name == "minimal")
        #expect(stats.events == 5000)
        let out = runtime.outputQueue.drain()
        #expect(out == [OutputRecord(plugin: "minimal", topic: "count", payload: Array("5000".utf8))])
    }

    @Test("a pure C image may be unloaded; a SwiftPM-linked one is never dlclosed")
    func unloadPolicy() throws {
        let dir = try TestSupport.tempDir("cc-unload")
        let so = "\(dir)/libminimal.so"
        let build = try TestSupport.run("/usr/bin/cc", ["-std=c99", "-shared", "-fPIC", "-I", Self.header,
                                                         "\(TestSupport.packageRoot)/SDK/examples/minimal_plugin.c", "-o", so])
        try #require(build.status == 0, "\(build.output)")
        let c = try PluginLoader.open(so)
        #expect(c.image.containsSwift == false)
        #expect(c.unload() == true)

        let swiftLinked = try PluginLoader.open(TestSupport.plugin("usb-logger"))
        #expect(swiftLinked.image.containsSwift == true)
        #expect(swiftLinked.unload() == false)
    }
}
