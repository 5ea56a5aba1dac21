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
        #expect(files == ["Makefile", "README.md", "plugin.c", "plugin.toml", "session.jsonl"])
        let source = try String(contentsOfFile: "\(dir)/hello-usb/plugin.c", encoding: .utf8)
        #expect(source.contains("\"hello-usb\"") && !source.contains("{{"))

        let build = try TestSupport.run("/usr/bin/make", ["-C", "\(dir)/hello-usb"])
        #expect(build.status == 0, "\(build.output)")
        #expect(FileManager.default.fileExists(atPath: "\(dir)/hello-usb/hello-usb.pbm"), "make packed the manifest")
        let run = try TestSupport.run("/usr/bin/make", ["-C", "\(dir)/hello-usb", "try"])
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.range(of: #"hello-usb\s+stopped\s+9\s+0\s+0"#, options: .regularExpression) != nil, "\(run.output)")
        #expect(run.output.contains("hello-usb/summary: {\"events\":9}"))
    }

    @Test("bad requests are refused with the reason and the fix, and nothing is left behind", arguments: [
        (["Hello World"], "plugin name: \"Hello World\" is not a valid plugin name"),
        (["ok-name", "--language", "cobol"], "no template for language 'cobol' (fix: use one of c)"),
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
