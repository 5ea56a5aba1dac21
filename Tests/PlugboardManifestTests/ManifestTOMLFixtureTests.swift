import Foundation
import PlugboardManifest
import PlugboardManifestTools
import Testing

/// Every malformed plugin.toml in Fixtures/bad-toml is rejected with a message that names the file,
/// the line, the field and the fix. Each fixture states what it expects in its first lines:
/// `# expect: <fragment of the problem>`, `# field: <field>`, `# line: <n>` (when locatable).
@Suite("plugin.toml fixtures")
struct ManifestTOMLFixtureTests {
    struct Fixture: CustomTestStringConvertible, Sendable {
        var name: String
        var path: String
        var expect: String
        var field: String
        var line: Int?
        var testDescription: String { name }
    }

    static let fixtures: [Fixture] = {
        let dir = TestSupport.fixtures + "/bad-toml"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".toml") }.sorted()
        return names.map { name in
            let path = dir + "/" + name
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            func header(_ key: String) -> String? {
                text.split(separator: "\n").first { $0.hasPrefix("# \(key): ") }.map { String($0.dropFirst(key.count + 4)) }
            }
            return Fixture(name: name, path: path, expect: header("expect") ?? "<missing # expect>",
                           field: header("field") ?? "<missing # field>", line: header("line").flatMap { Int($0) })
        }
    }()

    @Test("at least 20 malformed fixtures are present")
    func fixtureCount() {
        #expect(Self.fixtures.count >= 20)
    }

    @Test("malformed plugin.toml is rejected naming file, line, field and fix", arguments: fixtures)
    func rejected(_ f: Fixture) throws {
        let error = try #require(throws: ManifestError.self) { try ManifestTOML.parse(contentsOf: f.path) }
        let message = error.description
        #expect(message.contains(f.expect), "message: \(message)")
        #expect(error.field == f.field, "message: \(message)")
        #expect(message.hasPrefix(f.path), "the message starts with the file: \(message)")
        #expect(message.contains("Fix: ") && !error.fix.isEmpty, "message: \(message)")
        if let line = f.line {
            #expect(error.line == line, "message: \(message)")
            #expect(message.hasPrefix("\(f.path):\(line): "))
        }
    }

    @Test("sample plugin manifests in SamplePlugins/ are valid")
    func samplesAreValid() throws {
        for name in ["usb-logger", "device-counter"] {
            let m = try ManifestTOML.parse(contentsOf: TestSupport.packageRoot + "/SamplePlugins/\(name)/plugin.toml")
            #expect(m.name == name)
            #expect(m.library == "lib\(name).so")
            #expect(!m.rules.isEmpty)
        }
    }

    @Test("check reports every problem of a file, in line order")
    func reportsAllProblems() {
        let text = """
        [plugin]
        name = "Bad Name"
        version = "x"
        library = "a/b.so"

        [[match]]
        vendor = "zz"
        """
        let (m, problems) = ManifestTOML.check(text, file: "multi.toml")
        #expect(m == nil)
        #expect(problems.map(\.field) == ["plugin.name", "plugin.version", "plugin.library", "match[1].vendor"])
        #expect(problems.map(\.line) == [2, 3, 4, 7])
    }

    @Test("values are read as documented: hex strings, integers, wildcards, config in file order")
    func valuesParsed() throws {
        let text = """
        [plugin]
        name = "p"
        version = "1.2"
        library = "libp.so"
        after = ["a", "b"]

        [worker]
        batch_size = 8
        restart = "never"

        [[match]]
        vendor = "0x046D"
        product = 0xc52b
        actions = ["add"]

        [[match]]
        vendor = "1d6b"
        product = "*"
        interface_class = "09"
        serial = "AB*"

        [config]
        zeta = "last-alphabetically-first-in-file"
        alpha = 1
        flag = false
        """
        let m = try ManifestTOML.parse(text, file: "p.toml")
        #expect(m.rules[0] == MatchRule(vendor: 0x046d, product: 0xc52b, actions: .add))
        #expect(m.rules[1] == MatchRule(vendor: 0x1d6b, interfaceClass: 9, serial: "AB*"))
        #expect(m.worker == WorkerSettings(batchSize: 8, restart: .never))
        #expect(m.config.map(\.key) == ["zeta", "alpha", "flag"])
        #expect(m.config.map(\.value) == ["last-alphabetically-first-in-file", "1", "false"])
        #expect(m.after == ["a", "b"])
    }
}
