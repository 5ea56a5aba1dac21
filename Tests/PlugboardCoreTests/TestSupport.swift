import Foundation
import Logging
import Synchronization
import PlugboardCore
import Testing
import PlugboardTestSupport

/// Paths and helpers shared by the core tests.
enum TestSupport {
    /// The package root (`PackagePaths.root`).
    static var packageRoot: String { PackagePaths.root }

    /// The build products directory: where the test binary and the plugin `.so` files are.
    static var productsDir: String { PackagePaths.products }

    /// Path of a plugin product, e.g. `plugin("usb-logger")` → …/libusb-logger.so.
    static func plugin(_ name: String) -> String { PackagePaths.plugin(name) }

    /// A fresh temporary directory.
    static func tempDir(_ tag: String = "pb") throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(tag)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A plugin directory holding copies of the given files, renamed as given.
    static func pluginDir(_ files: [(source: String, name: String)]) throws -> String {
        let dir = try tempDir("plugins")
        for f in files { try FileManager.default.copyItem(atPath: f.source, toPath: "\(dir)/\(f.name)") }
        return dir
    }

    /// A logger that takes every level and prints nothing: tests read state, not logs, but
    /// every log statement still runs (a statement reading freed plugin memory once hid behind
    /// a logger that dropped its level).
    static var logger: Logger {
        Logger(label: "test") { _ in TraceHandler() }
    }

    /// Takes every level; renders each line ("level message key=value...") and hands it to
    /// `sink`, if any.
    struct TraceHandler: LogHandler {
        var sink: (@Sendable (String) -> Void)? = nil
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let m = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            let line = "\(event.level) \(event.message) \(m)"
            sink?(line)
        }
    }

    /// Runs `command` with `arguments`; returns exit status and combined output.
    @discardableResult
    static func run(_ command: String, _ arguments: [String], cwd: String? = nil) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: command)
        p.arguments = arguments
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Lines of a text file.
    static func lines(_ path: String) -> [String] {
        guard let s = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return s.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    }

    /// Runs a finite source through a runtime over `pluginDirs` and waits until drained.
    static func runToEnd(pluginDirs: [String], source: some EventSource, options: RuntimeOptions = RuntimeOptions(),
                         config: [String: PluginConfiguration] = [:]) throws -> Runtime {
        var o = options
        o.pluginConfiguration = config
        let runtime = try Runtime(options: o, logger: logger)
        try runtime.addLibraries(in: pluginDirs)
        runtime.startWorkers()
        runtime.start(source: source)
        runtime.waitUntilDrained()
        return runtime
    }

    /// Writes `lines` as a replay file and returns its path.
    static func replayFile(_ lines: [String]) throws -> String {
        let path = try tempDir("replay") + "/session.jsonl"
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}

/// A live source that publishes events when asked to (one per `pace` µs), until stopped.
final class FeedSource: EventSource {
    let wanted = Atomic<Int>(0)
    let pace = Atomic<UInt32>(0)
    var name: String { "feed" }
    var isFinite: Bool { false }
    func run(_ context: SourceContext) throws {
        var sent = 0
        while !context.shouldStop {
            let target = wanted.load(ordering: .acquiring)
            if sent < target {
                context.producer.publish { w in
                    w.action = .change
                    w.setString(.syspath, "/sys/devices/feed")
                }
                sent += 1
                let p = pace.load(ordering: .relaxed)
                if p > 0 { usleep(p) }
            } else {
                usleep(200)
            }
        }
    }
}

/// A test's own failure, with what went wrong.
struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
