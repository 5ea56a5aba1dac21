import Foundation
import PlugboardRedis
import PlugboardTestSupport
import Testing

/// A plugin's output is data, not control (issue "Trust", docs/security.md): what a hostile plugin
/// logs cannot forge a host log line nor flood the log, and what it publishes is refused at the
/// call when larger than what the publisher carries, never accepted and then dropped.
/// Each test runs the real daemon (`plugboard run`) with the misbehave plugin, in both isolation modes.
@Suite("Plugin output is data, not control")
struct PluginOutputTests {
    static let modes = ["thread", "process"]

    @Test("a plugin's log message cannot forge a host log line, write control bytes, or run on without end", arguments: modes)
    func forgedLog(isolation: String) throws {
        let bed = try IsolationBed(misbehave: ["mode": "forge-log", "where": "init"],
                                   misbehaveWorker: "isolation = \"\(isolation)\"")
        defer { bed.remove() }
        let r = try TestProcess.run(bed.plugboard, ["run", "--plugins", bed.dir, "--registry-cache", "none",
                                                     "--source", "synthetic:10"])
        #expect(r.status == 0, "\(r.output)")
        let lines = r.output.split(separator: "\n", omittingEmptySubsequences: false)
        // The newline in the message did not start a line of its own that reads like the host's.
        #expect(!lines.contains { $0.hasPrefix("critical plugboard:") }, "\(r.output)")
        let forged = lines.filter { $0.contains("forged line") }
        #expect(forged.count == 1)
        #expect(forged.first?.contains("innocent\\ncritical plugboard: [PlugboardCore] forged line\\u{1B}[2J") == true, "\(forged)")
        #expect(forged.first?.contains("plugin=misbehave") == true, "the record is labelled with the plugin: \(forged)")
        // No raw ESC and no right-to-left override reach the log; a typed backslash stays
        // distinguishable from an escaped newline.
        #expect(!r.output.unicodeScalars.contains("\u{1B}"))
        #expect(!r.output.unicodeScalars.contains("\u{202E}"))
        #expect(r.output.contains("rtl \\u{202E} gnp.exe"))
        #expect(r.output.contains("typed \\\\n backslash"))
        // The 10,000-byte message is cut to 4 KiB, saying so.
        let long = lines.first { $0.contains("AAAA") }
        #expect(long?.contains("AAAA...[\(10_000 - 4096) bytes cut]") == true)
        #expect((long?.utf8.count ?? .max) < 4096 + 200)
    }

    @Test("in a worker process, plugin code's own stderr is logged as its messages and its stdout passed on a line at a time, both escaped, never raw")
    func forgedStandardError() throws {
        let bed = try IsolationBed(misbehave: ["mode": "forge-stderr", "where": "init"], misbehaveWorker: "isolation = \"process\"")
        defer { bed.remove() }
        let r = try TestProcess.run(bed.plugboard, ["run", "--plugins", bed.dir, "--registry-cache", "none", "--source", "synthetic:10"])
        #expect(r.status == 0, "\(r.output)")
        let lines = r.output.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(!lines.contains { $0.hasPrefix("critical plugboard:") }, "\(r.output)")
        #expect(!r.output.unicodeScalars.contains("\u{1B}"))
        let forged = lines.filter { $0.contains("forged by stderr") }
        #expect(forged.count == 1 && forged[0].contains("plugin=misbehave") && forged[0].contains("(stderr) critical plugboard:")
                && forged[0].contains("\\u{1B}[2J"), "\(forged)")
        #expect(lines.contains { $0.contains("plugin=misbehave") && $0.contains("(stderr) innocent") })
        // Standard output stays the plugin's own output channel (usb-logger's output = "-"); its
        // last line, without a newline, is passed on when the process ends.
        #expect(lines.contains("stdout without a newline"), "\(r.output)")
    }

    @Test("in a worker process, a plugin flooding its stdout is held to its log budget, and the drops are counted")
    func stdoutFlood() throws {
        let bed = try IsolationBed(misbehave: ["mode": "stdout-flood", "where": "init", "log_count": "5000"],
                                   misbehaveWorker: "isolation = \"process\"")
        defer { bed.remove() }
        let r = try TestProcess.run(bed.plugboard, ["run", "--plugins", bed.dir, "--registry-cache", "none",
                                                     "--source", "synthetic:10", "--set", "plugins.log_rate=100"])
        #expect(r.status == 0, "\(r.output.suffix(2000))")
        let passed = r.output.split(separator: "\n").filter { $0.hasPrefix("out ") }.count
        #expect(passed >= 200 && passed < 400, "passed \(passed)")
        let summary = try #require(r.output.split(separator: "\n").first { $0.contains("log messages dropped by the rate limit") })
        let dropped = Int(summary.split(separator: " ").dropFirst().first ?? "") ?? -1
        #expect(passed + dropped == 5000, "\(passed) passed + \(dropped) dropped")
    }

    @Test("a plugin flooding the log is rate-limited, and every dropped message is counted", arguments: modes)
    func logFlood(isolation: String) throws {
        let bed = try IsolationBed(misbehave: ["mode": "log-flood", "where": "init", "log_count": "5000"],
                                   misbehaveWorker: "isolation = \"\(isolation)\"")
        defer { bed.remove() }
        let r = try TestProcess.run(bed.plugboard, ["run", "--plugins", bed.dir, "--registry-cache", "none",
                                                     "--source", "synthetic:10", "--set", "plugins.log_rate=100"])
        #expect(r.status == 0, "\(r.output)")
        let logged = r.output.split(separator: "\n").filter { $0.contains("flood ") }.count
        // A burst of twice the rate passes (a little more may refill while the loop runs).
        #expect(logged >= 200 && logged < 400, "logged \(logged)")
        let summary = try #require(r.output.split(separator: "\n").first { $0.contains("log messages dropped by the rate limit") },
                                   "\(r.output.suffix(2000))")
        let dropped = Int(summary.split(separator: " ").dropFirst().first ?? "") ?? -1
        #expect(logged + dropped == 5000, "\(logged) logged + \(dropped) dropped")
        // The recorder beside it saw every event.
        #expect(bed.recorded().count == 10)
    }

    @Test("publish accepts up to plugins.max_record_bytes and refuses more at the call; what it accepts reaches Redis whole",
          arguments: modes)
    func publishLimit(isolation: String) throws {
        let server = try RedisServer()
        defer { server.stop() }
        for (limit, sizes) in [(65536, [65536, 65537, 300_000]), (1000, [1000, 1001])] {
            let bed = try IsolationBed(misbehave: ["mode": "publish-sizes", "where": "init",
                                                   "publish_sizes": sizes.map(String.init).joined(separator: ",")],
                                       misbehaveWorker: "isolation = \"\(isolation)\"")
            defer { bed.remove() }
            let host = "limit-\(isolation)-\(limit)"
            var arguments = ["run", "--plugins", bed.dir, "--registry-cache", "none", "--source", "synthetic:10",
                             "--redis", "redis://127.0.0.1:\(server.port)/0", "--set", "redis.host=\(host)"]
            if limit != 65536 { arguments += ["--set", "plugins.max_record_bytes=\(limit)"] }
            let r = try TestProcess.run(bed.plugboard, arguments)
            #expect(r.status == 0, "\(r.output)")
            for size in sizes {
                let expected = size <= limit ? 0 : -5  // PB_OK, PB_ERR_INVALID
                #expect(r.output.contains("publish \(size) bytes: \(expected)"), "size \(size): \(r.output)")
            }
            #expect(!r.output.contains("larger than the Redis publisher accepts"))
            let entries = try readAll(try server.client(), "plugboard:{\(host)}:plugin:misbehave")
            #expect(entries.count == 1, "only the record within the limit is published")
            #expect(entries.first?["data"]?.utf8.count == limit)
            #expect(r.output.contains("misbehave: \(sizes.count - 1) publish calls refused"), "\(r.output.suffix(1500))")
        }
    }

    @Test("a topic longer than 256 bytes is refused at the call", arguments: modes)
    func longTopic(isolation: String) throws {
        let bed = try IsolationBed(misbehave: ["mode": "publish-sizes", "where": "init", "publish_sizes": "10",
                                               "topic_bytes": "257"],
                                   misbehaveWorker: "isolation = \"\(isolation)\"")
        defer { bed.remove() }
        let r = try TestProcess.run(bed.plugboard, ["run", "--plugins", bed.dir, "--registry-cache", "none", "--source", "synthetic:10"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("publish 10 bytes: -5"), "\(r.output)")
    }
}
