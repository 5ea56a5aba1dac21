import ArgumentParser
import Foundation
import Logging
import PlugboardCore
import PlugboardReplay
import PlugboardDaemon
import PlugboardHost

/// `plugboard test PLUGIN`: runs one plugin against a recorded session on the same host as
/// `plugboard run`, and compares what it published and logged with expected files.
struct TestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Run a plugin against a recorded session and compare what it published and logged with expected files.",
        discussion: """
            PLUGIN is a plugin directory (every plugin with a manifest in it), or one lib<name>.so whose \
            manifest <name>.pbm lies beside it. The session (--session, default session.jsonl in the \
            plugin's directory) is a replay file (docs/replay-format.md), fed as fast as the plugin reads \
            it (delay_ms is ignored). The plugin runs on the host `plugboard run` uses (same loader, \
            workers, manifests and shutdown), without Redis.

            Expected files (--expect DIR; default: the session's name without .jsonl, plus .expected/, \
            e.g. session.expected/ beside session.jsonl):
              published.txt  one line per record: PLUGIN TOPIC PAYLOAD
              log.txt        one line per message the plugin logged: PLUGIN LEVEL MESSAGE
            Lines are grouped by plugin (by name), in the order each plugin wrote them. Published bytes \
            outside printable UTF-8 and backslashes are escaped (\\n, \\t, \\xNN, \\\\); a log message is \
            the record the host logs, escaped the same way for newline, tab and backslash (other control \
            characters as \\u{1B}; docs/abi.md), cut at 4 KiB. --update writes both files from this run \
            (review them, then commit them).

            Exit codes: 0 the output matches (or --update wrote it); 1 it differs (a unified diff is \
            printed); 2 the test could not run (no plugin, a plugin refused or failed to initialise, a bad \
            session, missing expected files).
            """)

    @Argument(help: ArgumentHelp("A plugin directory, or a lib<name>.so with <name>.pbm beside it.", valueName: "PLUGIN"))
    var plugin: String

    @Option(help: ArgumentHelp("The replay session (default: session.jsonl in the plugin's directory).", valueName: "FILE"))
    var session: String?

    @Option(help: ArgumentHelp("The directory of published.txt and log.txt (default: SESSION without .jsonl, plus .expected).", valueName: "DIR"))
    var expect: String?

    @Flag(help: "Write the expected files from this run instead of comparing.")
    var update = false

    @Option(name: .customLong("plugin-config"),
            help: ArgumentHelp("Configuration for one plugin, over its manifest's [config] (repeatable).", valueName: "NAME.KEY=VALUE"))
    var pluginSettings: [PluginSetting] = []

    @Option(help: "Level of the host's own messages on stderr (the plugin's messages are captured, not shown).")
    var logLevel: String = "warning"

    func validate() throws {
        if Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
    }

    /// Exit code 2: the test could not run. Printed as `plugboard test: MESSAGE`.
    struct CannotRun: Error, CustomStringConvertible {
        var description: String
        init(_ message: String) { description = message }
    }

    func run() async throws {
        do {
            try await runTest()
        } catch let e as CannotRun {
            FileHandle.standardError.write(Data("plugboard test: \(e.description)\n".utf8))
            throw ExitCode(2)
        }
    }

    func runTest() async throws {
        let fm = FileManager.default
        let layout = try PluginUnderTest(path: plugin)
        defer { layout.cleanUp() }
        let sessionPath = session ?? layout.sourceDirectory + "/session.jsonl"
        guard fm.fileExists(atPath: sessionPath) else {
            throw CannotRun("\(sessionPath): no such session file (fix: give --session FILE, a replay session as docs/replay-format.md describes)")
        }
        let expectDir = expect ?? Self.defaultExpectDirectory(session: sessionPath)
        let publishedFile = expectDir + "/published.txt", logFile = expectDir + "/log.txt"
        if !update {
            for f in [publishedFile, logFile] where !fm.fileExists(atPath: f) {
                throw CannotRun("\(f): no expected file (fix: run `plugboard test \(plugin) --update` once, review what it wrote, and keep it with the plugin)")
            }
        }
        let fastSession = try Self.unpaced(session: sessionPath)
        defer { try? fm.removeItem(atPath: fastSession) }

        let capture = CapturedOutput()
        let threshold = Logger.Level(rawValue: logLevel) ?? .warning
        let logger = Logger(label: "plugboard") { label in CapturingLogHandler(label: label, capture: capture, threshold: threshold) }
        // The same configuration path as `run`, without the ambient configuration files or
        // PLUGBOARD_* variables: a test's result must not depend on the machine it runs on.
        // Redis stays off (its default): the records are captured by OutputCapture instead.
        let overrides = [
            ConfigOverride(key: "source", value: "replay:\(fastSession)"),
            ConfigOverride(key: "plugins.dirs", value: layout.directory),
            ConfigOverride(key: "plugins.registry_cache", value: "none"),
            // Every message is part of the output compared: no rate limit (it would depend on timing).
            ConfigOverride(key: "plugins.log_rate", value: "0"),
        ]
        var settings: HostSettings
        do {
            let effective = try ConfigLoader(searchPaths: [], environment: [:]).load(overrides: overrides)
            var configuration: [String: PluginConfiguration] = [:]
            for s in pluginSettings { configuration[s.plugin, default: [:]][s.key] = s.value }
            settings = try HostSettings(config: effective, pluginConfiguration: configuration)
            // A test run keeps nothing across runs (and must not touch a daemon's state files).
            settings.stateDirectory = nil
            settings.ringDirectory = nil
        } catch {
            throw CannotRun("\(error)")
        }
        let sink = OutputCapture(capture: capture)
        let host: HostAssembly
        do { host = try HostAssembly(settings: settings, sinks: [sink], logger: logger) } catch { throw CannotRun("\(error)") }
        let report: ShutdownReport
        do {
            report = try await Daemon.run(host: host, options: Daemon.Options(logger: logger, stopWhenSourceEnds: true),
                                          version: PlugboardCoreVersion.string)
        } catch {
            throw CannotRun("\(error)")
        }
        if !report.completed { Daemon.exit(with: report) }
        let failures = host.runtime.failures
        if !failures.isEmpty {
            throw CannotRun("plugins refused or failed:\n" + failures.map { "  \($0.description)" }.joined(separator: "\n"))
        }
        if host.runtime.pluginStats.isEmpty {
            throw CannotRun("\(plugin): no plugin ran (fix: build it and pack its manifest, e.g. `make`, so that <name>.pbm and lib<name>.so are there)")
        }
        if let e = host.runtime.sourceError { throw CannotRun("\(sessionPath): \(e)") }

        let published = capture.publishedLines(), logged = capture.logLines()
        if update {
            do {
                try fm.createDirectory(atPath: expectDir, withIntermediateDirectories: true)
                try Self.text(published).write(toFile: publishedFile, atomically: true, encoding: .utf8)
                try Self.text(logged).write(toFile: logFile, atomically: true, encoding: .utf8)
            } catch {
                throw CannotRun("\(expectDir): cannot write the expected files: \(error.localizedDescription)")
            }
            print("updated \(publishedFile) (\(published.count) lines) and \(logFile) (\(logged.count) lines)")
            return
        }
        var differs = false
        for (file, actual) in [(publishedFile, published), (logFile, logged)] {
            let expected = Self.lines(try String(contentsOfFile: file, encoding: .utf8))
            if expected != actual {
                differs = true
                FileHandle.standardOutput.write(Data(UnifiedDiff.render(expected: expected, actual: actual, expectedName: file,
                                                                        actualName: "\(file) (this run)").utf8))
            }
        }
        let names = host.runtime.pluginStats.map(\.name).joined(separator: ", ")
        if differs {
            FileHandle.standardError.write(Data("plugboard test: FAILED: \(names) against \(sessionPath) differs from \(expectDir) (if the change is intended: rerun with --update)\n".utf8))
            throw ExitCode(1)
        }
        print("ok: \(names) against \(sessionPath): \(published.count) records, \(logged.count) log lines as expected")
    }

    static func defaultExpectDirectory(session: String) -> String {
        (session.hasSuffix(".jsonl") ? String(session.dropLast(".jsonl".count)) : session) + ".expected"
    }

    static func text(_ lines: [String]) -> String { lines.map { $0 + "\n" }.joined() }

    static func lines(_ text: String) -> [String] {
        var l = text.components(separatedBy: "\n")
        if l.last == "" { l.removeLast() }
        return l
    }

    /// A copy of the session without `delay_ms`, so the test runs as fast as the plugin reads. The
    /// original is validated first, so an error names the author's file and line.
    static func unpaced(session path: String) throws -> String {
        do { _ = try ReplaySource(path: path, pace: 0) } catch { throw CannotRun("\(error)") }
        guard let data = FileManager.default.contents(atPath: path) else { throw CannotRun("\(path): cannot read the session") }
        var out: [String] = []
        for line in String(decoding: data, as: UTF8.self).components(separatedBy: "\n") {
            let t = line.trimmingCharacters(in: .whitespaces)
            guard !t.isEmpty, !t.hasPrefix("#"),
                  var object = try? JSONSerialization.jsonObject(with: Data(t.utf8)) as? [String: Any],
                  object["delay_ms"] != nil
            else { out.append(line); continue }
            object.removeValue(forKey: "delay_ms")
            let encoded = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            out.append(String(decoding: encoded, as: UTF8.self))
        }
        let copy = (NSTemporaryDirectory() as NSString).appendingPathComponent("plugboard-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).jsonl")
        try out.joined(separator: "\n").write(toFile: copy, atomically: true, encoding: .utf8)
        return copy
    }
}

/// The plugin directory the host is pointed at: the directory given, or for one `.so` a private
/// directory holding links to it and its manifest (so no other plugin beside it runs).
struct PluginUnderTest {
    /// The directory the host reads plugins from.
    let directory: String
    /// The directory the plugin was given in (the library's own directory for a `.so`).
    let sourceDirectory: String
    private let temporary: String?

    init(path: String) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else {
            throw TestCommand.CannotRun("\(path): no such plugin directory or library (fix: give a plugin directory or its lib<name>.so)")
        }
        if isDir.boolValue {
            directory = path
            sourceDirectory = path
            temporary = nil
            return
        }
        let file = (path as NSString).lastPathComponent
        guard file.hasPrefix("lib"), file.hasSuffix(".so") else {
            throw TestCommand.CannotRun("\(path): not a plugin library (fix: give lib<name>.so, or the plugin's directory)")
        }
        let name = String(file.dropFirst(3).dropLast(3))
        let absolute = (path as NSString).isAbsolutePath ? path : fm.currentDirectoryPath + "/" + path
        let manifest = ((absolute as NSString).deletingLastPathComponent as NSString).appendingPathComponent("\(name).pbm")
        guard fm.fileExists(atPath: manifest) else {
            throw TestCommand.CannotRun("\(path): no manifest \(name).pbm beside it (fix: plugboard pack plugin.toml --library \(file) -o \(name).pbm, or `make`)")
        }
        let dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("plugboard-test-\(getpid())-\(name)")
        try? fm.removeItem(atPath: dir)
        do {
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try fm.createSymbolicLink(atPath: dir + "/" + file, withDestinationPath: absolute)
            try fm.createSymbolicLink(atPath: dir + "/\(name).pbm", withDestinationPath: manifest)
        } catch {
            throw TestCommand.CannotRun("\(dir): cannot prepare the plugin directory: \(error.localizedDescription)")
        }
        directory = dir
        sourceDirectory = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        temporary = dir
    }

    func cleanUp() {
        if let temporary { try? FileManager.default.removeItem(atPath: temporary) }
    }
}
