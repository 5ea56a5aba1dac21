import Foundation
import PlugboardManifest
import PlugboardManifestTools
import PlugboardTestSupport

/// Shared helpers: temporary directories, the package's real plugin `.so` files, sample manifests.
enum TestSupport {
    /// A fresh directory under /tmp, removed by the caller with `cleanup`.
    /// Runs the built `plugboard` with `args`; its exit status and its output (stdout and stderr).
    static func runPlugboard(_ args: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: buildDir + "/plugboard")
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, out)
    }

    static func makeTempDir(_ label: String = "pbm") -> String {
        var template = Array("/tmp/plugboard-\(label)-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        return String(cString: p!)
    }

    static func cleanup(_ dir: String) { try? FileManager.default.removeItem(atPath: dir) }

    /// The directory SwiftPM built this test binary (and the plugin `.so` products) into.
    static var buildDir: String { PackagePaths.products }

    /// A real plugin library built by the package (`libusb-logger.so`...).
    static func builtLibrary(_ name: String) throws -> String {
        let path = PackagePaths.plugin(name)
        guard FileManager.default.fileExists(atPath: path) else {
            throw ManifestError(.library, file: path, field: "test setup", problem: "the plugin was not built",
                                fix: "run `swift build` (or `make build`) before `swift test`")
        }
        return path
    }

    static var packageRoot: String { PackagePaths.root }

    static var fixtures: String { Bundle.module.resourceURL!.appendingPathComponent("Fixtures").path }

    static func write(_ text: String, to path: String) {
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
    }

    static func copy(_ from: String, to: String) throws {
        try? FileManager.default.removeItem(atPath: to)
        try FileManager.default.copyItem(atPath: from, toPath: to)
    }

    /// A plugin.toml for `name` with one rule and optional extras.
    static func toml(name: String, library: String? = nil, rules: String = "[[match]]\nsubsystem = \"usb\"\n",
                     after: [String] = [], config: String = "", version: String = "1.0.0") -> String {
        """
        [plugin]
        name = "\(name)"
        version = "\(version)"
        library = "\(library ?? "lib\(name).so")"

        [dependencies]
        after = [\(after.map { "\"\($0)\"" }.joined(separator: ", "))]

        \(rules)
        \(config.isEmpty ? "" : "[config]\n" + config)
        """
    }

    /// Installs plugin `name` into `dir`: a copy of a real built `.so` named `lib<name>.so`, and its packed
    /// manifest `<name>.pbm`. Returns the manifest path.
    @discardableResult
    static func install(_ name: String, into dir: String, from built: String = "usb-logger", after: [String] = [],
                        rules: String = "[[match]]\nsubsystem = \"usb\"\n", config: String = "", version: String = "1.0.0") throws -> String {
        let lib = dir + "/lib\(name).so"
        if !FileManager.default.fileExists(atPath: lib) { try copy(try builtLibrary(built), to: lib) }
        let src = dir + "/src-\(name)"
        try? FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        write(toml(name: name, rules: rules, after: after, config: config, version: version), to: src + "/plugin.toml")
        let r = try Packer.pack(tomlPath: src + "/plugin.toml", libraryPath: lib, output: dir + "/\(name).pbm")
        try FileManager.default.removeItem(atPath: src)
        return r.output
    }

    /// A manifest with every section filled.
    static var richManifest: Manifest {
        Manifest(name: "rich", version: "2.1.0-beta+7", library: "librich.so", summary: "Every section",
                 authors: ["Ada <ada@example.org>", "Grace"], license: "MIT",
                 librarySHA256: Array(0..<32),
                 worker: WorkerSettings(batch: 128, deadlineMs: 250, isolation: .thread),
                 rules: [MatchRule(vendor: 0x046d, product: 0xc52b, actions: [.add, .remove]),
                         MatchRule(vendor: 0x1d6b, interfaceClass: 9),
                         MatchRule(deviceClass: 3, serial: "AB?-*"),
                         MatchRule(vendors: 0x046d...0x046d, products: 0xc520...0xc52f),
                         MatchRule(vendors: 0x1000...0x10ff)],
                 config: [ConfigEntry(key: "output", value: "/tmp/x"), ConfigEntry(key: "count", value: "3")],
                 exports: [Export(symbol: "pb_plugin_entry", signature: "pb_status (const pb_negotiate_in *, pb_negotiate_out *)")],
                 after: ["usb-logger", "device-counter"])
    }

    /// Sets mtime to now + `seconds` (a `touch` that is sure to change the nanosecond timestamp).
    static func touch(_ path: String, plusSeconds seconds: Int = 7) {
        var times = [timespec(tv_sec: time(nil) + seconds, tv_nsec: 123_456_789), timespec(tv_sec: time(nil) + seconds, tv_nsec: 123_456_789)]
        _ = utimensat(AT_FDCWD, path, &times, 0)
    }
}
