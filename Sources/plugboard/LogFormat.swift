import Foundation
import Logging
import PlugboardCore

/// How the daemon's log lines are written (`--log-format`, or `PLUGBOARD_LOG_FORMAT`):
/// - `text`: swift-log's stream format, for people (`2026-12-06T23:16:35+0000 info plugboard: ...`);
/// - `journal`: the same without the timestamp, each line prefixed with its syslog priority (`<4>`),
///   as sd-daemon(3) asks of services whose stderr is the journal: `journalctl -p warning` then works;
/// - `json`: one JSON object per line (`time`, `level`, `label`, `source`, `message`, and the
///   metadata as members), for log shippers;
/// - `auto` (the default): `journal` when stderr is the journal (systemd's `JOURNAL_STREAM` names it),
///   else `text`.
enum LogFormat: String, CaseIterable {
    case auto, text, journal, json

    /// `auto` resolved: journal when standard error is the stream systemd's `JOURNAL_STREAM`
    /// ("DEVICE:INODE") names, text otherwise.
    func resolved(environment: [String: String] = ProcessInfo.processInfo.environment) -> LogFormat {
        guard self == .auto else { return self }
        guard let stream = environment["JOURNAL_STREAM"] else { return .text }
        let parts = stream.split(separator: ":")
        var st = stat()
        guard parts.count == 2, let dev = UInt64(parts[0]), let ino = UInt64(parts[1]), fstat(2, &st) == 0,
              UInt64(st.st_dev) == dev, UInt64(st.st_ino) == ino else { return .text }
        return .journal
    }
}

/// The `journal` and `json` formats (`text` is swift-log's `StreamLogHandler`). Each record is one
/// `write(2)` to stderr, so lines from several threads never interleave.
struct StructuredLogHandler: LogHandler {
    let label: String
    let json: Bool
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// syslog priorities (sd-daemon(3)): debug 7 ... critical 2.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let line: String
        if json {
            var members = [
                ("time", Self.timestamp()), ("level", event.level.rawValue), ("label", label),
                ("source", event.source), ("message", "\(event.message)"),
            ]
            for (k, v) in all.sorted(by: { $0.key < $1.key }) where !["time", "level", "label", "source", "message"].contains(k) {
                members.append((k, "\(v)"))
            }
            line = "{" + members.map { "\(Text.jsonQuoted($0.0)):\(Text.jsonQuoted($0.1))" }.joined(separator: ",") + "}\n"
        } else {
            let meta = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            line = "<\(Self.priority(event.level))>\(event.level) \(label): " + (meta.isEmpty ? "" : meta + " ")
                + "[\(event.source)] \(event.message)\n"
        }
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { b in
            var off = 0
            while off < b.count {
                let n = write(2, b.baseAddress! + off, b.count - off)
                if n <= 0 { break }
                off += n
            }
        }
    }

    static func timestamp() -> String {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        var tm = tm()
        var secs = t.tv_sec
        gmtime_r(&secs, &tm)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                      tm.tm_hour, tm.tm_min, tm.tm_sec, Int(t.tv_nsec / 1000))
    }
}
