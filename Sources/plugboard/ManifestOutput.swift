import Foundation
import PlugboardCore
import PlugboardManifest

/// JSON shapes shared by `pack`, `inspect` and `explain --json` (documented in docs/manifest.md).
struct ManifestJSON: Encodable {
    struct Rule: Encodable {
        var index: Int
        var subsystem: String
        var vendor: String?
        var product: String?
        var device_class: String?
        var interface_class: String?
        var serial: String?
        var actions: [String]
        var summary: String
    }
    struct Worker: Encodable {
        var batch: UInt32; var deadline_ms: UInt32; var isolation: String
        /// 0 (no window), a number of ms, or "default" (the daemon's performance.debounce_ms).
        var settle_ms: SettleValue; var nice: Int8?; var cpu_affinity: String
    }
    enum SettleValue: Encodable {
        case ms(UInt32), daemonDefault
        init(_ s: WorkerSettings.Settle) {
            switch s {
            case .off: self = .ms(0)
            case .daemonDefault: self = .daemonDefault
            case .milliseconds(let n): self = .ms(n)
            }
        }
        var text: String {
            switch self {
            case .ms(let n): "\(n)"
            case .daemonDefault: "default"
            }
        }
        func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .ms(let n): try c.encode(n)
            case .daemonDefault: try c.encode("default")
            }
        }
    }
    struct Export: Encodable { var symbol: String; var signature: String }

    var name: String
    var version: String
    var library: String
    var description: String
    var authors: [String]
    var license: String
    var abi: String
    var library_sha256: String?
    var after: [String]
    var worker: Worker
    var match: [Rule]
    var config: [String: String]
    var config_order: [String]
    var exports: [Export]
    /// The manifest itself, for the people-readable output (not encoded).
    let source: Manifest
    enum CodingKeys: String, CodingKey {
        case name, version, library, description, authors, license, abi, library_sha256, after, worker, match, config, config_order, exports
    }

    init(_ m: Manifest) {
        source = m
        func h(_ v: ClosedRange<UInt16>?) -> String? {
            v.map { $0.lowerBound == $0.upperBound ? String(format: "%04x", $0.lowerBound) : String(format: "%04x-%04x", $0.lowerBound, $0.upperBound) }
        }
        func h(_ v: UInt8?) -> String? { v.map { String(format: "%02x", $0) } }
        name = m.name; version = m.version; library = m.library; description = m.summary
        authors = m.authors; license = m.license
        abi = "\(m.abiMajor).\(m.abiMinor)"
        library_sha256 = m.librarySHA256?.hexString
        after = m.after
        worker = Worker(batch: m.worker.batch, deadline_ms: m.worker.deadlineMs, isolation: m.worker.isolation.name,
                        settle_ms: SettleValue(m.worker.settle), nice: m.worker.nice, cpu_affinity: m.worker.cpuAffinity)
        match = m.rules.enumerated().map { i, r in
            Rule(index: i + 1, subsystem: r.subsystem, vendor: h(r.vendor), product: h(r.product), device_class: h(r.deviceClass),
                 interface_class: h(r.interfaceClass), serial: r.serial, actions: r.actions.names, summary: r.summary)
        }
        config = Dictionary(m.config.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        config_order = m.config.map(\.key)
        exports = m.exports.map { Export(symbol: $0.symbol, signature: $0.signature) }
    }
}

struct ErrorJSON: Encodable {
    var check: String
    var file: String
    var line: Int?
    var field: String
    var problem: String
    var fix: String
    var message: String
    init(_ e: ManifestError) {
        check = e.check.rawValue; file = e.file; line = e.line; field = e.field; problem = e.problem; fix = e.fix; message = e.description
    }
}

enum Output {
    /// `value` as indented JSON with sorted keys, through the one JSON writer (PlugboardCore's `JSONWriter`).
    static func json<T: Encodable>(_ value: T) -> String {
        (try? JSONValue.encoding(value))?.text(indent: 2, sortedKeys: true) ?? "null"
    }

    static func stderr(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// The manifest for people: what `inspect` prints and `explain` indents.
    static func describe(_ m: Manifest, indent: String = "") -> [String] {
        var out: [String] = []
        out.append("\(indent)name:        \(m.name) \(m.version)" + (m.summary.isEmpty ? "" : " — \(m.summary)"))
        out.append("\(indent)library:     \(m.library)" + (m.librarySHA256.map { " (sha256 \($0.hexString))" } ?? " (no hash: not packed)"))
        if !m.authors.isEmpty { out.append("\(indent)authors:     \(m.authors.joined(separator: ", "))") }
        if !m.license.isEmpty { out.append("\(indent)license:     \(m.license)") }
        out.append("\(indent)abi:         \(m.abiMajor).\(m.abiMinor)")
        var worker = "batch=\(m.worker.batch) deadline_ms=\(m.worker.deadlineMs) isolation=\(m.worker.isolation.name)"
        if m.worker.settle != .off { worker += " settle_ms=\(ManifestJSON.SettleValue(m.worker.settle).text)" }
        if let n = m.worker.nice { worker += " nice=\(n)" }
        if !m.worker.cpuAffinity.isEmpty { worker += " cpu_affinity=\(m.worker.cpuAffinity)" }
        out.append("\(indent)worker:      \(worker)")
        if !m.after.isEmpty { out.append("\(indent)after:       \(m.after.joined(separator: ", "))") }
        for (i, r) in m.rules.enumerated() { out.append("\(indent)match[\(i + 1)]:    \(r.summary)") }
        for c in m.config { out.append("\(indent)config:      \(c.key) = \"\(c.value)\"") }
        for e in m.exports { out.append("\(indent)export:      \(e.symbol): \(e.signature)") }
        return out
    }
}
