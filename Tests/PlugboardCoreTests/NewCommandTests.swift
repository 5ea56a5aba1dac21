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
    }

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
