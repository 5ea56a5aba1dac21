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
        for name in ["usb-logger", "device-counter", "swift-counter"] {
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
        version = "1.0"
        library = "a/b.so"

        [[match]]
        vendor = "zz"
        """
        let (m, problems) = ManifestTOML.check(text, file: "multi.toml")
        #expect(m == nil)
        #expect(problems.map(\.field) == ["plugin.name", "plugin.version", "plugin.library", "match[1].vendor"])
        #expect(problems.map(\.line) == [2, 3, 4, 7])
    }

    static let everyField = """
        [plugin]
        name = "p"
        version = "1.2.3-rc.1"
        library = "libp.so"
        description = "All the fields"
        authors = ["Ada <ada@example.org>", "Grace"]
        license = "MIT"
        abi = "1.0"

        [dependencies]
        after = ["a", "b"]

        [worker]
        batch = 8
        deadline_ms = 250
        isolation = "thread"

        [[match]]
        vendor = "0x046D"
        product = 0xc52b
        actions = ["add"]

        [[match]]
        vendor = "1d6b"
        product = "*"
        interface_class = "09"
        serial = "AB*"

        [[match]]
        vendor = "046d"
        product = "c520-c52f"

        [[match]]
        vendor = "0x1000-0x10ff"
        device_class = 3

        [[match]]
        subsystem = "usb"
        actions = ["remove", "resync"]

        [config]
        zeta = "last-alphabetically-first-in-file"
        alpha = 1
        flag = false

        [exports]
        pb_plugin_entry = "pb_status (const pb_negotiate_in *, pb_negotiate_out *)"
        helper = "int (void)"
        """

    static let everyFieldExpected = Manifest(
        name: "p", version: "1.2.3-rc.1", library: "libp.so", summary: "All the fields",
        authors: ["Ada <ada@example.org>", "Grace"], license: "MIT", abiMajor: 1, abiMinor: 0,
        worker: WorkerSettings(batch: 8, deadlineMs: 250, isolation: .thread),
        rules: [MatchRule(vendor: 0x046d, product: 0xc52b, actions: .add),
                MatchRule(vendor: 0x1d6b, interfaceClass: 9, serial: "AB*"),
                MatchRule(vendors: 0x046d...0x046d, products: 0xc520...0xc52f),
                MatchRule(vendors: 0x1000...0x10ff, deviceClass: 3),
                MatchRule(actions: [.remove, .resync])],
        config: [ConfigEntry(key: "zeta", value: "last-alphabetically-first-in-file"),
                 ConfigEntry(key: "alpha", value: "1"), ConfigEntry(key: "flag", value: "false")],
        exports: [Export(symbol: "pb_plugin_entry", signature: "pb_status (const pb_negotiate_in *, pb_negotiate_out *)"),
                  Export(symbol: "helper", signature: "int (void)")],
        after: ["a", "b"])

    @Test("every field is read as documented: hex strings, integers, ranges, wildcards, config and exports in file order")
    func valuesParsed() throws {
        let m = try ManifestTOML.parse(Self.everyField, file: "p.toml")
        #expect(m == Self.everyFieldExpected)
    }

    @Test("round trip toml -> pbm -> read keeps every field, with the library hash pack recorded")
    func tomlToPbmRoundTrip() throws {
        let dir = TestSupport.makeTempDir("roundtrip")
        defer { TestSupport.cleanup(dir) }
        TestSupport.write(Self.everyField, to: dir + "/plugin.toml")
        try TestSupport.copy(try TestSupport.builtLibrary("usb-logger"), to: dir + "/libp.so")
        let packed = try Packer.pack(tomlPath: dir + "/plugin.toml")
        #expect(packed.output == dir + "/p.pbm")
        let read = try PBMReader.decode(contentsOf: packed.output)
        var expected = Self.everyFieldExpected
        expected.librarySHA256 = try SHA256.hash(fileAt: dir + "/libp.so")
        #expect(read == expected)
        // Field by field, so a failure names the field.
        #expect(read.name == "p" && read.version == "1.2.3-rc.1" && read.library == "libp.so")
        #expect(read.summary == "All the fields" && read.license == "MIT" && read.authors.count == 2)
        #expect(read.abiMajor == 1 && read.abiMinor == 0)
        #expect(read.worker == WorkerSettings(batch: 8, deadlineMs: 250, isolation: .thread))
        #expect(read.rules == expected.rules)
        #expect(read.config == expected.config)
        #expect(read.exports == expected.exports)
        #expect(read.after == ["a", "b"])
        #expect(read.librarySHA256?.count == 32)
    }
}
