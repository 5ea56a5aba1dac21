import Foundation
import Testing

/// docs/plugin-guide.md walks an outsider from `plugboard new` to a tested, packed plugin in C,
/// C++ and Swift. Its commands are the test: every ```sh block preceded by `<!-- guide-test -->`
/// runs, in order, in one shell in an empty directory, with the `plugboard` just built on PATH.
@Suite("docs/plugin-guide.md, run as written")
struct PluginGuideTests {
    static let marker = "<!-- guide-test -->"

    /// The marked blocks of `markdown`, in order.
    static func testedBlocks(_ markdown: String) -> [String] {
        var blocks: [String] = []
        var lines = markdown.components(separatedBy: "\n")[...]
        while let line = lines.popFirst() {
            guard line.trimmingCharacters(in: .whitespaces) == marker else { continue }
            guard lines.first?.hasPrefix("```sh") == true else { continue }
            lines.removeFirst()
            var body: [String] = []
            while let l = lines.popFirst(), !l.hasPrefix("```") { body.append(l) }
            blocks.append(body.joined(separator: "\n"))
        }
        return blocks
    }

    @Test("the guide's commands create, build, change, re-record, inspect and test a plugin in each language")
    func guideRunsAsWritten() throws {
        let guide = try String(contentsOfFile: "\(TestSupport.packageRoot)/docs/plugin-guide.md", encoding: .utf8)
        let blocks = Self.testedBlocks(guide)
        #expect(blocks.count == 5, "C (3 blocks), C++ and Swift: \(blocks.count) marked blocks found")
        let dir = try TestSupport.tempDir("guide")
        let script = "set -eu\nexport PATH=\"\(TestSupport.productsDir):$PATH\"\n" + blocks.joined(separator: "\n")
        try script.write(toFile: "\(dir)/guide.sh", atomically: true, encoding: .utf8)
        let r = try TestSupport.run("/bin/bash", ["\(dir)/guide.sh"], cwd: dir)
        #expect(r.status == 0, "\(r.output)")
        // C: passes out of the box; the edit makes it fail with the change as a diff; --update
        // records it; the test passes again; the packed manifest checks out.
        #expect(r.output.contains("ok: my-plugin against session.jsonl: 1 records, 9 log lines as expected"), "\(r.output)")
        #expect(r.output.contains("-my-plugin info 1 action=1 1d6b:0002 /sys/devices/pci0000:00/0000:00:14.0/usb1\n"), "\(r.output)")
        #expect(r.output.contains("+my-plugin info 1 action 1 1d6b:0002 /sys/devices/pci0000:00/0000:00:14.0/usb1\n"), "\(r.output)")
        #expect(r.output.contains("make test failed, as expected: the diff above is the change"), "\(r.output)")
        #expect(r.output.contains("updated ./session.expected/published.txt (1 lines) and ./session.expected/log.txt (9 lines)"), "\(r.output)")
        #expect(r.output.contains("library file: ./libmy-plugin.so: matches"), "\(r.output)")
        #expect(r.output.contains("my-plugin: receives it"), "\(r.output)")
        #expect(TestSupport.lines("\(dir)/my-plugin/session.expected/log.txt").first
            == "my-plugin info 1 action 1 1d6b:0002 /sys/devices/pci0000:00/0000:00:14.0/usb1")
        // C++ and Swift pass their own tests out of the box.
        #expect(r.output.contains("ok: my-cpp-plugin against session.jsonl: 1 records, 9 log lines as expected"), "\(r.output)")
        #expect(r.output.contains("ok: my-swift-plugin against session.jsonl: 1 records, 9 log lines as expected"), "\(r.output)")
    }
}
