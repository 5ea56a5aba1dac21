import Synchronization
import Foundation
import Dispatch
import PlugboardCore
import PlugboardRedis
import Testing
import PlugboardTestSupport

@Suite("plugboard tail's reader against a real redis-server", .serialized)
struct TailTests {
    /// Publishes test events 1...n to `host` and stops the publisher.
    func publish(_ n: Int, to server: RedisServer, host: String = "tail-host") throws {
        let publisher = RedisPublisher(configuration: testConfiguration(server.url, host: host))
        try publisher.start(events: GeneratedEventSource(total: n, gate: SourceGate(released: n)))
        #expect(publisher.flush(timeout: .seconds(30)))
        publisher.stop()
    }

    @Test("--from 0 --count N reads the first N events in order and stops")
    func readsFromTheStartAndStopsAtCount() throws {
        let server = try RedisServer()
        defer { server.stop() }
        try publish(250, to: server)
        var options = StreamTail.Options(url: server.url, host: "tail-host")
        options.from = "0"
        options.count = 230
        options.blockMs = 100
        var seen: [StreamEntry] = []
        let n = try StreamTail(options: options).run { seen.append($0) }
        #expect(n == 230)
        #expect(seen.compactMap { UInt64($0["sequence"] ?? "") } == Array(1...230))
        let line = StreamTail.format(seen[0])
        #expect(line.hasPrefix("PLUGBOARD[\(seen[0].id)] remove   "))
        #expect(line.contains("/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1"))
        #expect(line.contains("0001:beef bus 002 dev 002"))
        #expect(line.contains("serial=SN-1"))
    }

    @Test("tail survives a redis-server restart: reconnects, resumes after the last entry, skips and repeats nothing")
    func reconnectsAfterRestart() throws {
        let server = try RedisServer()
        defer { server.stop() }
        try publish(5, to: server)
        var options = StreamTail.Options(url: server.url, host: "tail-host")
        options.from = "0"
        options.count = 10
        options.blockMs = 100
        final class Seen: Sendable {
            let ids = Mutex<[String]>([])
            let losses = Mutex(0)
            let done = DispatchSemaphore(value: 0)
        }
        let seen = Seen()
        let readerOptions = options
        let reader = Thread {
            // Created on the reader thread that uses it (StreamTail owns one connection).
            _ = try? StreamTail(options: readerOptions).run(onConnectionLoss: { _ in seen.losses.withLock { $0 += 1 } }) { e in
                seen.ids.withLock { $0.append(e.id) }
            }
            seen.done.signal()
        }
        reader.start()
        let deadline = ContinuousClock.now + .seconds(20)
        while seen.ids.withLock({ $0.count }) < 5 && ContinuousClock.now < deadline { usleep(10_000) }
        try server.restart()  // SIGKILL, then the same port and AOF directory
        try publish(5, to: server)
        #expect(seen.done.wait(timeout: .now() + 30) == .success, "tail did not finish after the restart")
        let ids = seen.ids.withLock { $0 }
        #expect(ids.count == 10)
        #expect(zip(ids, ids.dropFirst()).allSatisfy { StreamID($0.0)! < StreamID($0.1)! }, "\(ids)")
        #expect(seen.losses.withLock { $0 } >= 1, "the loss was reported")
    }

    @Test("default $: only events published after tail started")
    func dollarReadsOnlyNewEvents() throws {
        let server = try RedisServer()
        defer { server.stop() }
        try publish(10, to: server)
        var options = StreamTail.Options(url: server.url, host: "tail-host")
        options.count = 1
        options.blockMs = 50
        let tail = try StreamTail(options: options)
        var polls = 0
        // Nothing new yet: the blocking read times out and tail keeps waiting until told to stop.
        let n = try tail.run(shouldStop: { polls += 1; return polls >= 2 }) { _ in }
        #expect(n == 0 && polls == 2)
    }

    @Test("--group/--consumer: two consumers share the stream, each entry once, all acknowledged")
    func consumerGroupSplitsAndAcks() throws {
        let server = try RedisServer()
        defer { server.stop() }
        try publish(300, to: server)
        var seqs: [UInt64] = []
        for consumer in ["a", "b"] {
            var options = StreamTail.Options(url: server.url, host: "tail-host")
            options.from = "0"
            options.group = "workers"
            options.consumer = consumer
            options.count = 150
            options.blockMs = 100
            try StreamTail(options: options).run { seqs.append(UInt64($0["sequence"] ?? "") ?? 0) }
        }
        #expect(seqs.sorted() == Array(1...300))
        let pending = try server.client().command(["XPENDING", "plugboard:{tail-host}:events", "workers"])
        guard case .array(let summary) = pending else { Issue.record("XPENDING: \(pending.shape)"); return }
        #expect(summary.first == .integer(0), "every delivered entry was XACKed")
    }

    /// Entries pending (read, not acknowledged) in group "workers", per consumer.
    func pending(_ server: RedisServer) throws -> [String: Int64] {
        let reply = try server.client().command(["XPENDING", "plugboard:{tail-host}:events", "workers"])
        guard case .array(let summary) = reply, summary.count == 4, case .array(let consumers) = summary[3] else { return [:] }
        var out: [String: Int64] = [:]
        for c in consumers {
            if case .array(let pair) = c, pair.count == 2, let name = pair[0].text, let n = pair[1].text.flatMap({ Int64($0) }) { out[name] = n }
        }
        return out
    }

    @Test("at least once: an entry is acknowledged only after delivery; a consumer re-reads what it read but did not acknowledge")
    func acknowledgedAfterDelivery() throws {
        let server = try RedisServer()
        defer { server.stop() }
        try publish(10, to: server)
        var options = StreamTail.Options(url: server.url, host: "tail-host")
        options.from = "0"
        options.group = "workers"
        options.consumer = "a"
        options.count = 10
        options.blockMs = 100
        // The consumer's output fails at the 4th entry (a closed pipe, a crash): nothing it read is
        // lost, and the three it delivered are acknowledged.
        struct Broken: Error {}
        var first: [UInt64] = []
        #expect(throws: Broken.self) {
            try StreamTail(options: options).run { e in
                if first.count == 3 { throw Broken() }
                first.append(UInt64(e["sequence"] ?? "") ?? 0)
            }
        }
        #expect(first == [1, 2, 3])
        #expect(try pending(server) == ["a": 7], "read but not delivered stays pending, for a")
        // The same consumer, started again: its pending entries first, then nothing new; none lost.
        options.count = 7
        var again: [UInt64] = []
        try StreamTail(options: options).run { again.append(UInt64($0["sequence"] ?? "") ?? 0) }
        #expect(again == Array(4...10))
        #expect(try pending(server).isEmpty)
    }

    @Test("--claim-idle: a live consumer takes over what a dead one left pending; every entry delivered once and acknowledged")
    func claimsADeadConsumersEntries() throws {
        let server = try RedisServer()
        defer { server.stop() }
        try publish(20, to: server)
        let key = "plugboard:{tail-host}:events"
        let client = try server.client()
        _ = try client.command(["XGROUP", "CREATE", key, "workers", "0"])
        // "dead" reads 5 entries and dies without acknowledging them.
        _ = try client.command(["XREADGROUP", "GROUP", "workers", "dead", "COUNT", "5", "STREAMS", key, ">"])
        #expect(try pending(server) == ["dead": 5])
        usleep(150_000)
        var options = StreamTail.Options(url: server.url, host: "tail-host")
        options.group = "workers"
        options.consumer = "alive"
        options.claimIdleMs = 100
        options.count = 20
        options.blockMs = 100
        var seqs: [UInt64] = []
        try StreamTail(options: options).run { seqs.append(UInt64($0["sequence"] ?? "") ?? 0) }
        #expect(seqs.sorted() == Array(1...20), "the dead consumer's 5 and the 15 never read: \(seqs)")
        #expect(Array(seqs.prefix(5)).sorted() == Array(1...5), "claimed first")
        #expect(try pending(server).isEmpty)
    }

    @Test("plugboard tail whose output is closed exits non-zero and acknowledges nothing it could not print")
    func closedOutputLeavesPending() throws {
        let server = try RedisServer()
        defer { server.stop() }
        try publish(10, to: server)
        // Its stdout is a pipe whose reading end is already closed: every write fails (EPIPE).
        let out = Pipe(), err = Pipe()
        try out.fileHandleForReading.close()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: PackagePaths.product("plugboard"))
        p.arguments = ["tail", "--redis", server.url.redacted, "--host", "tail-host", "--from", "0",
                       "--group", "workers", "--consumer", "c", "--count", "10"]
        p.standardOutput = out
        p.standardError = err
        try p.run()
        try out.fileHandleForWriting.close()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus != 0, "\(stderr)")
        #expect(stderr.contains("cannot write to standard output"), "\(stderr)")
        #expect(try pending(server) == ["c": 10], "nothing was printed, so nothing was acknowledged")
    }

    /// `plugboard tail` with `arguments` on `server`; its stdout lines and stderr.
    func tail(_ server: RedisServer, _ arguments: [String]) throws -> (status: Int32, lines: [Substring], stderr: String) {
        try Self.tail(url: server.url.redacted, arguments)
    }

    static func tail(url: String, _ arguments: [String]) throws -> (status: Int32, lines: [Substring], stderr: String) {
        let out = Pipe(), err = Pipe()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: PackagePaths.product("plugboard"))
        p.arguments = ["tail", "--redis", url] + arguments
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, stdout.split(separator: "\n"), stderr)
    }

    /// The sequences of the lines naming `host` (`PLUGBOARD[host ID] ...`), in order.
    func sequences(_ lines: [Substring], host: String) -> [UInt64] {
        lines.filter { $0.hasPrefix("PLUGBOARD[\(host) ") }.compactMap { line in
            line.split(separator: " ")[1].split(separator: "-").last.flatMap { UInt64($0.dropLast()) }
        }
    }

    @Test("--host twice: every event of both hosts once, in each host's order, each line naming its host")
    func readsSeveralHosts() throws {
        let server = try RedisServer()
        defer { server.stop() }
        try publish(30, to: server, host: "rack-a")
        try publish(20, to: server, host: "rack-b")
        let r = try tail(server, ["--host", "rack-a", "--host", "rack-b", "--from", "0", "--count", "50"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.lines.count == 50, "\(r.lines.prefix(3))")
        #expect(sequences(r.lines, host: "rack-a") == Array(1...30))
        #expect(sequences(r.lines, host: "rack-b") == Array(1...20))
        #expect(r.stderr.contains("reading plugboard:{rack-a}:events, plugboard:{rack-b}:events"), "\(r.stderr)")
    }

    @Test("--host-pattern: the matching hosts' streams found with SCAN, one that starts publishing later too, others not; --json names the host")
    func findsHostsByPattern() throws {
        let server = try RedisServer()
        defer { server.stop() }
        try publish(10, to: server, host: "web-1")
        try publish(10, to: server, host: "web-2")
        try publish(10, to: server, host: "db-1")
        // A key of another type that matches the pattern is not a stream: SCAN ... TYPE stream skips it.
        _ = try server.client().command(["SET", "plugboard:{web-x}:events", "not a stream"])
        final class Result: @unchecked Sendable { var value: (status: Int32, lines: [Substring], stderr: String)? }
        let result = Result(), done = DispatchSemaphore(value: 0)
        let url = server.url.redacted
        let reader = Thread {
            result.value = try? Self.tail(url: url, ["--host-pattern", "web-*", "--from", "0", "--count", "30", "--json"])
            done.signal()
        }
        reader.start()
        // web-3 starts publishing after the tail started: the next scan (every 5 s) finds it.
        usleep(500_000)
        try publish(10, to: server, host: "web-3")
        #expect(done.wait(timeout: .now() + 60) == .success, "tail did not get 30 events")
        let r = try #require(result.value)
        #expect(r.status == 0, "\(r.stderr)")
        let objects = r.lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(objects.count == 30)
        var byHost: [String: [Int]] = [:]
        for o in objects { byHost[o["host"] as? String ?? "?", default: []].append(o["sequence"] as? Int ?? 0) }
        #expect(byHost == ["web-1": Array(1...10), "web-2": Array(1...10), "web-3": Array(1...10)], "\(byHost)")
        #expect(objects.allSatisfy { Array($0.keys).contains("id") && $0["vendor_id"] != nil })
        #expect(r.stderr.contains("new stream(s) found: plugboard:{web-3}:events"), "\(r.stderr)")
    }

    @Test("--group over two hosts' streams: each entry once, and nothing left pending in either stream's group")
    func groupOverSeveralHosts() throws {
        let server = try RedisServer()
        defer { server.stop() }
        try publish(40, to: server, host: "g-a")
        try publish(40, to: server, host: "g-b")
        let r = try tail(server, ["--host", "g-a", "--host", "g-b", "--from", "0", "--group", "workers", "--consumer", "c",
                                  "--count", "80"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(sequences(r.lines, host: "g-a") == Array(1...40) && sequences(r.lines, host: "g-b") == Array(1...40))
        for h in ["g-a", "g-b"] {
            guard case .array(let summary) = try server.client().command(["XPENDING", "plugboard:{\(h)}:events", "workers"]) else {
                Issue.record("XPENDING"); continue
            }
            #expect(summary.first == .integer(0), "\(h): every printed entry acknowledged")
        }
    }

    @Test("JSON output escapes quotes, backslashes and control characters, and not slashes")
    func jsonOutputEscapes() throws {
        let e = StreamEntry(id: "1-1", fields: [("manufacturer", "Acme \"Q\" \\ Co"), ("product", "x\ny"), ("devnode", "/dev/bus/usb/001/002")])
        let text = try StreamTail.json(e)
        #expect(text.hasPrefix(#"{"id":"1-1","sequence":0,"#))
        #expect(text.contains(#""manufacturer":"Acme \"Q\" \\ Co","product":"x\ny""#))
        #expect(text.contains(#""devnode":"/dev/bus/usb/001/002""#))
        let object = try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(object["manufacturer"] as? String == "Acme \"Q\" \\ Co")
    }

    @Test("tail reads an entry an older daemon wrote (vid, kseq, ifaces cc:ss:pp, flags as bits) under today's names")
    func readsOldFieldNames() throws {
        let old = StreamEntry(id: "5-9", fields: [
            ("seq", "9"), ("action", "add"), ("flags", "12"), ("ts_ns", "1234"), ("kseq", "1001"), ("bus", "1"), ("dev", "4"),
            ("vid", "0781"), ("pid", "5581"), ("bcd", "0100"), ("class", "00"), ("subclass", "00"), ("protocol", "00"),
            ("num_ifaces", "1"), ("ifaces", "08:06:50"), ("speed_kbps", "480000"), ("syspath", "/sys/devices/usb1/1-1"),
            ("devnode", "/dev/bus/usb/001/004"), ("serial", ""), ("manufacturer", "SanDisk"), ("product", "Ultra"), ("driver", "usb"),
        ])
        let object = try #require(JSONSerialization.jsonObject(with: Data(try StreamTail.json(old).utf8)) as? [String: Any])
        #expect(object["id"] as? String == "5-9")
        #expect(object["sequence"] as? Int == 9 && object["timestamp_ns"] as? Int == 1234 && object["seqnum"] as? Int == 1001)
        #expect(object["busnum"] as? Int == 1 && object["devnum"] as? Int == 4)
        #expect(object["vendor_id"] as? String == "0781" && object["product_id"] as? String == "5581")
        #expect(object["flags"] as? [String] == ["coldplug", "from_table"])
        #expect(object["interfaces"] as? [String] == ["080650"])
        #expect(object["num_interfaces"] as? Int == 1)
        #expect(object["vid"] == nil && object["kseq"] == nil)
        let line = StreamTail.format(old)
        #expect(line.contains("0781:5581 bus 001 dev 004") && line.contains("flags=coldplug,from_table"))
    }

    @Test("an entry with a value that is not the schema's is reported with its ID and field")
    func badValueIsReported() {
        let bad = StreamEntry(id: "1-2", fields: [("action", "add"), ("vendor_id", "xyz1")])
        #expect { try StreamTail.json(bad) } throws: { "\($0)".contains("entry 1-2") && "\($0)".contains("vendor_id") }
    }
}
