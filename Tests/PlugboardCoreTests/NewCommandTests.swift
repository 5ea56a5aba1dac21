import Foundation
import Testing

@Suite("plugboard new (the real binary, the real templates)")
struct NewCommandTests {
    var plugboard: String { "\(TestSupport.productsDir)/plugboard" }

    @Test("a new C plugin builds with make, packs, and runs a replayed session through plugboard run")
    func newPluginBuildsAndRuns() throws {
        let dir = try TestSupport.tempDir("new")
        let made = try TestSupport.run(plugboard, ["new", "hello-usb", "--dir", dir])
        #expect(made.status == 0, "\(made.output)")
        let files = try FileManager.default.contentsOfDirectory(atPath: "\(dir)/hello-usb").sorted()
        #expect(files == ["Makefile", "README.md", "plugin.c", "plugin.toml", "session.expected", "session.jsonl"])
        let source = try String(contentsOfFile: "\(dir)/hello-usb/plugin.c", encoding: .utf8)
        #expect(source.contains("\"hello-usb\"") && !source.contains("{{"))

        let build = try TestSupport.run("/usr/bin/make", ["-C", "\(dir)/hello-usb"])
        #expect(build.status == 0, "\(build.output)")
        #expect(FileManager.default.fileExists(atPath: "\(dir)/hello-usb/hello-usb.pbm"), "make packed the manifest")
        let run = try TestSupport.run("/usr/bin/make", ["-C", "\(dir)/hello-usb", "try"])
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.range(of: #"hello-usb\s+stopped\s+9\s+0\s+0"#, options: .regularExpression) != nil, "\(run.output)")
        #expect(run.output.contains("hello-usb/summary: {\"events\":9}"))
        let test = try TestSupport.run("/usr/bin/make", ["-C", "\(dir)/hello-usb", "test"])
        #expect(test.status == 0, "\(test.output)")
        #expect(test.output.contains("ok: hello-usb against session.jsonl: 1 records, 9 log lines as expected"), "\(test.output)")
    }

    /// `plugboard new --language L`, then the template's own `make test` (build, pack, `plugboard
    /// test` against its session and expected files), as an author outside the repository would.
    static func newThenMakeTest(language: String, name: String) throws -> (dir: String, output: String) {
        let parent = try TestSupport.tempDir("new-\(language)")
        let made = try TestSupport.run("\(TestSupport.productsDir)/plugboard", ["new", name, "--language", language, "--dir", parent])
        guard made.status == 0 else { throw TestFailure("plugboard new --language \(language): \(made.output)") }
        let dir = "\(parent)/\(name)"
        let test = try TestSupport.run("/usr/bin/make", ["-C", dir, "test"])
        guard test.status == 0 else { throw TestFailure("make test (\(language)) failed: \(test.output)") }
        return (dir, test.output)
    }

    @Test("a new C++ plugin passes its own make test out of the box: unmangled entry, same output as the C template")
    func newCxxPluginPassesMakeTest() throws {
        let (dir, output) = try Self.newThenMakeTest(language: "cpp", name: "hello-cpp")
        #expect(output.contains("ok: hello-cpp against session.jsonl: 1 records, 9 log lines as expected"), "\(output)")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(files.contains("plugin.cpp") && !files.contains("plugin.c"))
        let nm = try TestSupport.run("/usr/bin/nm", ["-D", "--defined-only", "\(dir)/libhello-cpp.so"])
        #expect(nm.output.split(separator: "\n").contains { $0.hasSuffix(" T pb_plugin_entry") }, "\(nm.output)")
    }

    @Test("a new Swift plugin (a SwiftPM package on SDK/swift) passes its own make test out of the box")
    func newSwiftPluginPassesMakeTest() throws {
        let (dir, output) = try Self.newThenMakeTest(language: "swift", name: "hello-swift")
        #expect(output.contains("ok: hello-swift against session.jsonl: 1 records, 9 log lines as expected"), "\(output)")
        let manifest = try String(contentsOfFile: "\(dir)/Package.swift", encoding: .utf8)
        #expect(manifest.contains(".package(name: \"PlugboardSDK\", path: \"\(TestSupport.packageRoot)/SDK/swift\")"), "\(manifest)")

        // The same package, now a plugin that writes every field of every event the way the C
        // recorder does, rebuilt outside the tree and run beside the recorder on the demo session:
        // what a Swift plugin sees is byte for byte what a C plugin sees.
        try Self.fieldsWriter.write(toFile: "\(dir)/Sources/Plugin/Plugin.swift", atomically: true, encoding: .utf8)
        let built = try TestSupport.run("/usr/bin/make", ["-C", dir, "libhello-swift.so"])
        #expect(built.status == 0, "\(built.output)")
        try FileManager.default.copyItem(atPath: TestSupport.plugin("pbtest-recorder"), toPath: "\(dir)/librecorder.so")
        let run = try TestSupport.run(TestSupport.productsDir + "/plugboard", [
            "run", "--plugins", dir, "--ignore-manifests", "--source", "replay:\(TestSupport.packageRoot)/demo/session.jsonl",
            "--pace", "fast", "--plugin-config", "hello-swift.output=\(dir)/swift.txt", "--plugin-config", "recorder.output=\(dir)/c.txt"])
        #expect(run.status == 0, "\(run.output)")
        func events(_ f: String) -> [Substring] {
            ((try? String(contentsOfFile: f, encoding: .utf8)) ?? "").split(separator: "\n").filter { $0.first?.isNumber == true }
        }
        let swiftLines = events("\(dir)/swift.txt"), cLines = events("\(dir)/c.txt")
        #expect(cLines.count == 9)
        #expect(swiftLines == cLines, "\(swiftLines) vs \(cLines)")
    }

    /// A Swift plugin printing each event as Tests/TestPlugins/recorder/recorder.c does.
    static let fieldsWriter = #"""
        import Glibc
        import PlugboardSDK

        struct NoOutput: Error {}

        final class Plugin: PlugboardPlugin {
            static let name = "hello-swift"
            static let version = "0.1.0"
            private let out: UnsafeMutablePointer<FILE>

            init(host: PluginHost) throws {
                guard let path = host.config("output"), let f = fopen(path, "w") else { throw NoOutput() }
                out = f
            }

            func hex<T: BinaryInteger>(_ v: T, _ width: Int) -> String {
                let d = String(v, radix: 16)
                return String(repeating: "0", count: max(0, width - d.count)) + d
            }

            func handle(_ events: EventBatch) throws {
                for e in events {
                    let ifs = e.interfaces.map { hex($0.class, 2) + hex($0.subclass, 2) + hex($0.protocol, 2) }.joined(separator: ",")
                    let line = "\(e.sequence) \(String(cString: pb_action_name(e.pointer.pointee.action))) flags=\(e.flags) "
                        + "seqnum=\(e.kernelSeqnum) bus=\(e.busnum) dev=\(e.devnum) id=\(hex(e.vendorID, 4)):\(hex(e.productID, 4)) "
                        + "bcd=\(hex(e.bcdDevice, 4)) class=\(hex(e.deviceClass, 2))/\(hex(e.deviceSubclass, 2))/\(hex(e.deviceProtocol, 2)) "
                        + "speed=\(e.speedKbps) nif=\(e.numInterfaces) ifs=\(ifs) syspath=\(e.syspath) devnode=\(e.devnode) "
                        + "serial=\(e.serial) manufacturer=\(e.manufacturer) product=\(e.product) driver=\(e.driver)\n"
                    fputs(line, out)
                }
                fflush(out)
            }

            func shutdown() { fclose(out) }
        }

        @_cdecl("pb_plugin_entry")
        public func pb_plugin_entry(_ input: UnsafePointer<pb_negotiate_in>?, _ output: UnsafeMutablePointer<pb_negotiate_out>?) -> Int32 {
            PluginExport.negotiate(Plugin.self, input, output)
        }
        """#

    @Test("bad requests are refused with the reason and the fix, and nothing is left behind", arguments: [
        (["Hello World"], "plugin name: \"Hello World\" is not a valid plugin name"),
        (["ok-name", "--language", "cobol"], "no template for language 'cobol' (fix: use one of c, cpp, swift)"),
        (["exists"], "already exists (fix: choose another name or --dir, or remove it)"),
    ])
    func refused(arguments: [String], message: String) throws {
        let dir = try TestSupport.tempDir("new")
        try FileManager.default.createDirectory(atPath: "\(dir)/exists", withIntermediateDirectories: true)
        let r = try TestSupport.run(plugboard, ["new"] + arguments + ["--dir", dir])
        #expect(r.status != 0)
        #expect(r.output.contains(message), "\(r.output)")
        let left = try FileManager.default.contentsOfDirectory(atPath: dir)
        #expect(left == ["exists"], "only the directory the test made: \(left)")
    }
}
