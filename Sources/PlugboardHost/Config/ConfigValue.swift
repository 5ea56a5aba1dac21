import Foundation
import PlugboardCore
import PlugboardSystem

/// Where events come from: the live udev monitor, a recorded session, or a generator.
public enum SourceSpec: Sendable, Equatable, CustomStringConvertible {
    /// The libudev monitor plus an initial enumeration.
    case udev
    /// A recorded session, JSON Lines, one event a line.
    case replay(path: String)
    /// `count` generated events (benchmarks and load tests).
    case synthetic(count: Int)

    public var description: String {
        switch self {
        case .udev: "udev"
        case .replay(let path): "replay:\(path)"
        case .synthetic(let count): "synthetic:\(count)"
        }
    }

    /// Parses `udev`, `replay:FILE` or `synthetic:N`; nil with the reason otherwise.
    public static func parse(_ text: String) -> Result<SourceSpec, ConfigProblemDetail> {
        let fix = "use \"udev\", \"replay:/path/to/session.jsonl\" or \"synthetic:N\" (N events, N >= 1)"
        if text == "udev" { return .success(.udev) }
        if text.hasPrefix("replay:") {
            let path = String(text.dropFirst("replay:".count))
            if path.isEmpty { return .failure(.init("\"replay:\" needs a file name", fix: fix)) }
            return .success(.replay(path: path))
        }
        if text.hasPrefix("synthetic:") {
            let rest = text.dropFirst("synthetic:".count)
            guard let n = Int(rest), n >= 1 else {
                return .failure(.init("\"\(rest)\" is not a positive event count", fix: fix))
            }
            return .success(.synthetic(count: n))
        }
        let guess = closestMatch(to: text.split(separator: ":").first.map(String.init) ?? text,
                                 in: ["udev", "replay", "synthetic"])
        return .failure(.init("\"\(text)\" is not a known source" + (guess.map { " (did you mean \"\($0)\"?)" } ?? ""),
                              fix: fix))
    }
}

/// What the Redis streams keep (`redis.retention`): entries younger than an age (XADD `MINID ~`),
/// or about a number of entries (XADD `MAXLEN ~`).
public enum StreamRetention: Sendable, Equatable, CustomStringConvertible {
    /// Entries whose ID is younger than this (whole seconds).
    case age(Duration)
    /// About this many entries.
    case count(Int)

    /// The shortest age accepted: IDs carry the time of their first send to the millisecond, and
    /// a window of seconds would trim entries a moment after they are stored.
    public static let minimumAge: Duration = .seconds(60)
    /// The longest: ten years, far beyond any disk.
    public static let maximumAge: Duration = .seconds(3650 * 86400)
    static let maximumCount = 1_000_000_000

    public var description: String {
        switch self {
        case .count(let n): return "\(n)"
        case .age(let d):
            let s = d.components.seconds
            for (unit, size) in [("d", Int64(86400)), ("h", 3600), ("m", 60)] where s % size == 0 { return "\(s / size)\(unit)" }
            return "\(s)s"
        }
    }

    static let expected = "a time like \"7d\", \"12h\", \"30m\" or \"90s\" (from 1m to 3650d), or an entry count like \"1000000\" (\"\" leaves it to redis.maxlen)"

    /// Parses `7d`, `12h`, `30m`, `90s` (an age) or `1000000` (a count); nil for "" (not set).
    public static func parse(_ text: String) -> Result<StreamRetention?, ConfigProblemDetail> {
        let t = text.trimmingCharacters(in: .whitespaces)
        if t.isEmpty { return .success(nil) }
        let fix = "write redis.retention as \(expected)"
        if let n = Int(t) {
            guard (1...maximumCount).contains(n) else {
                return .failure(.init("\(n) entries is out of range (1 to \(maximumCount))",
                                      fix: n == 0 ? "to keep every entry, set redis.retention = \"\" and redis.maxlen = 0" : fix))
            }
            return .success(.count(n))
        }
        let units: [(Character, Int64)] = [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)]
        guard let last = t.last, let unit = units.first(where: { $0.0 == last }), let n = Int64(t.dropLast()), n >= 0 else {
            return .failure(.init("\"\(text)\" is neither a time nor an entry count", fix: fix))
        }
        let (seconds, overflow) = n.multipliedReportingOverflow(by: unit.1)
        let age = Duration.seconds(overflow ? Int64.max : seconds)
        guard !overflow && age >= minimumAge && age <= maximumAge else {
            return .failure(.init("\"\(text)\" is out of range", fix: fix))
        }
        return .success(.age(age))
    }
}

/// A TCP listen address, `HOST:PORT` (IPv6 as `[::1]:PORT`).
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// True for 127.0.0.0/8, ::1 and "localhost": reachable only from this machine.
    public var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    static func parse(_ text: String) -> Result<ListenAddress, ConfigProblemDetail> {
        let fix = "write HOST:PORT, e.g. \"127.0.0.1:8080\" (or \"[::1]:8080\"; \"0.0.0.0:8080\" exposes it to the network)"
        var host: Substring
        var portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                return .failure(.init("\"\(text)\" is not HOST:PORT", fix: fix))
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                return .failure(.init("\"\(text)\" has no port", fix: fix))
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty else { return .failure(.init("\"\(text)\" has no host", fix: fix)) }
        guard let port = Int(portText), (0...65535).contains(port) else {
            return .failure(.init("port \"\(portText)\" is not a number from 0 to 65535", fix: fix))
        }
        return .success(ListenAddress(host: String(host), port: port))
    }
}

/// One configuration value, as typed by its key's kind.
public enum ConfigValue: Sendable, Equatable, CustomStringConvertible {
    case string(String)
    case integer(Int)
    case bool(Bool)
    case stringList([String])
    case duration(Duration)
    case source(SourceSpec)
    case listen(ListenAddress)

    public var description: String {
        switch self {
        case .string(let s): quoted(s)
        case .integer(let i): String(i)
        case .bool(let b): String(b)
        case .stringList(let l): "[" + l.map(quoted).joined(separator: ", ") + "]"
        case .duration(let d): quoted(formatDuration(d))
        case .source(let s): quoted(s.description)
        case .listen(let l): quoted(l.description)
        }
    }

    /// Writes the value as JSON (for `config check --json`).
    func writeJSON<S: JSONSink>(into w: inout JSONWriter<S>) {
        switch self {
        case .integer(let i): w.number(i)
        case .bool(let b): w.bool(b)
        case .stringList(let l):
            w.beginArray()
            for s in l { w.string(s) }
            w.endArray()
        case .string(let s): w.string(s)
        case .duration(let d): w.string(formatDuration(d))
        case .source(let s): w.string(s.description)
        case .listen(let l): w.string(l.description)
        }
    }
}

/// What is wrong with a value and how to fix it (the key and origin are added by the loader).
public struct ConfigProblemDetail: Sendable, Equatable, Error {
    public var problem: String
    public var fix: String
    init(_ problem: String, fix: String) {
        self.problem = problem
        self.fix = fix
    }
}

private func quoted(_ s: String) -> String { "\"" + s + "\"" }

/// "5s", "250ms", "1.5s", "2m": the forms `parseDuration` accepts and `formatDuration` writes.
func formatDuration(_ d: Duration) -> String { d.shortText }

func parseDuration(_ text: String) -> Duration? {
    let t = text.trimmingCharacters(in: .whitespaces)
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60)]
    for (suffix, scale) in units where t.hasSuffix(suffix) {
        let number = t.dropLast(suffix.count)
        // "ms" also ends in "s": only accept a suffix when what is left is a plain number.
        guard let v = Double(number), v.isFinite, v >= 0 else { continue }
        return .milliseconds(Int64((v * scale * 1000).rounded()))
    }
    return nil
}

/// Parses "134217728", "128MiB", "512KiB", "1GiB" into bytes.
func parseByteSize(_ text: String) -> Int? {
    let t = text.trimmingCharacters(in: .whitespaces)
    for (suffix, scale) in [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("B", 1)] where t.hasSuffix(suffix) {
        guard let v = Int(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)) else { return nil }
        return v.multipliedReportingOverflow(by: scale).overflow ? nil : v * scale
    }
    return Int(t)
}

/// The candidate nearest to `word`, if it is a plausible typo (see `Text.closestMatch`).
func closestMatch(to word: String, in candidates: [String]) -> String? { Text.closestMatch(to: word, in: candidates) }
