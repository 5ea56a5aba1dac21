import Foundation
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
    struct Worker: Encodable { var batch_size: UInt32; var restart: String; var max_restarts: UInt16; var stall_timeout_ms: UInt32 }
    struct Export: Encodable { var symbol: String; var signature: String }

    var name: String
    var version: String
    var library: String
    var description: String
    var abi: String
    var library_sha256: String?
    var after: [String]
    var worker: Worker
    var match: [Rule]
    var config: [String: String]
    var config_order: [String]
    var exports: [Export]

    init(_ m: Manifest) {
        func h(_ v: UInt16?) -> String? { v.map { String(format: "%04x", $0) } }
        func h(_ v: UInt8?) -> String? { v.map { String(format: "%02x", $0) } }
        name = m.name; version = m.version; library = m.library; description = m.summary
        abi = "\(m.abiMajor).\(m.abiMinor)"
        library_sha256 = m.librarySHA256?.hexString
        after = m.after
        worker = Worker(batch_size: m.worker.batchSize, restart: m.worker.restart.name, max_restarts: m.worker.maxRestarts,
                        stall_timeout_ms: m.worker.stallTimeoutMs)
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
    static func json<T: Encodable>(_ value: T) -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? enc.encode(value)) ?? Data("null".utf8), as: UTF8.self)
    }

    static func stderr(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// The manifest for people: what `inspect` prints and `explain` indents.
    static func describe(_ m: Manifest, indent: String = "") -> [String] {
        var out: [String] = []
        out.append("\(indent)name:        \(m.name) \(m.version)" + (m.summary.isEmpty ? "" : " — \(m.summary)"))
        out.append("\(indent)library:     \(m.library)" + (m.librarySHA256.map { " (sha256 \($0.hexString))" } ?? " (no hash: not packed)"))
        out.append("\(indent)abi:         \(m.abiMajor).\(m.abiMinor)")
        out.append("\(indent)worker:      batch_size=\(m.worker.batchSize) restart=\(m.worker.restart.name) max_restarts=\(m.worker.maxRestarts) stall_timeout_ms=\(m.worker.stallTimeoutMs)")
        if !m.after.isEmpty { out.append("\(indent)after:       \(m.after.joined(separator: ", "))") }
        for (i, r) in m.rules.enumerated() { out.append("\(indent)match[\(i + 1)]:    \(r.summary)") }
        for c in m.config { out.append("\(indent)config:      \(c.key) = \"\(c.value)\"") }
        for e in m.exports { out.append("\(indent)export:      \(e.symbol): \(e.signature)") }
        return out
    }
}
