import Foundation
import Logging
import PlugboardCore
import PlugboardSystem

/// Shared helpers of the subcommands: logging set-up, failures, the run summary.
enum CLI {
    /// A failure with a message for people; `plugboard` prints it and exits 1.
    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ message: String) { description = message }
    }

    /// A stderr logger at `level`, in `format` (`LogFormat`; nil: `PLUGBOARD_LOG_FORMAT`, else auto).
    static func makeLogger(level: String, format: String? = nil) -> Logger {
        let wanted = format ?? ProcessInfo.processInfo.environment["PLUGBOARD_LOG_FORMAT"] ?? "auto"
        let resolved = (LogFormat(rawValue: wanted) ?? .auto).resolved()
        let threshold = Logger.Level(rawValue: level) ?? .info
        LoggingSystem.bootstrap { label in
            switch resolved {
            case .journal, .json:
                var h = StructuredLogHandler(label: label, json: resolved == .json)
                h.logLevel = threshold
                return h
            case .text, .auto:
                var h = StreamLogHandler.standardError(label: label)
                h.logLevel = threshold
                return h
            }
        }
        return Logger(label: "plugboard")
    }

    /// Prints the per-plugin table and rejected plugins, as `plugboard run` does at exit.
    static func printSummary(runtime: Runtime, sourceName: String, elapsed: Duration) {
        let seconds = elapsed.inSeconds
        let published = runtime.sourceContext?.published.load(ordering: .relaxed) ?? 0
        var out = "\nplugboard: \(sourceName): \(published) events in \(String(format: "%.3f", seconds)) s\n"
        let header = ["PLUGIN", "STATE", "EVENTS", "FILTERED", "ERRORS", "LAPS", "MISSED", "RESYNCS", "PUBLISHED",
                      "CRASHES", "RESTARTS", "SKIPPED", "ISOLATION"]
        var rows = [header]
        for s in runtime.pluginStats {
            rows.append([s.name, s.state.description, "\(s.events)", "\(s.filtered)", "\(s.errors)", "\(s.laps)",
                         "\(s.missed)", "\(s.resyncs)", "\(s.published)", "\(s.crashes.values.reduce(0, +))", "\(s.restarts)",
                         "\(s.skipped)", s.isolation.rawValue])
        }
        let widths = header.indices.map { i in rows.map { $0[i].count }.max() ?? 0 }
        for r in rows {
            out += r.enumerated().map { i, c in i == 0 ? c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                : String(repeating: " ", count: widths[i] - c.count) + c }.joined(separator: "  ") + "\n"
        }
        for s in runtime.pluginStats { if let e = s.lastError { out += "  \(s.name): last error: \(e)\n" } }
        for s in runtime.pluginStats where !s.crashes.isEmpty {
            let reasons = s.crashes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            out += "  \(s.name): crashes: \(reasons); last: \(s.lastCrash ?? "?")\n"
        }
        for s in runtime.pluginStats { if let q = s.quarantineReason { out += "  \(s.name): quarantined: \(q)\n" } }
        for s in runtime.pluginStats where s.logDropped > 0 {
            out += "  \(s.name): \(s.logDropped) log messages dropped by the rate limit (plugins.log_rate)\n"
        }
        for s in runtime.pluginStats where s.publishRefused > 0 {
            out += "  \(s.name): \(s.publishRefused) publish calls refused (output queue full, or larger than plugins.max_record_bytes)\n"
        }
        for s in runtime.pluginStats where s.overruns > 0 {
            out += "  \(s.name): \(s.overruns) callbacks ran past its deadline_ms\n"
        }
        let failures = runtime.failures
        if !failures.isEmpty {
            out += "rejected plugins (\(failures.count)):\n"
            for f in failures { out += "  \(f.description)\n" }
        }
        let pending = runtime.outputQueue.drain()
        if !pending.isEmpty {
            out += "plugin output (not published: Redis is not configured):\n"
            for r in pending {
                out += "  \(r.plugin)/\(r.topic): \(String(decoding: r.payload, as: UTF8.self))\n"
            }
        }
        FileHandle.standardOutput.write(Data(out.utf8))
    }
}
