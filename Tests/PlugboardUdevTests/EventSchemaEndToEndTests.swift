import Foundation
import PlugboardTestbed
import PlugboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A real `redis-server` on a free loopback port, for the one udev test that goes through Redis.
/// A minimal sibling of PlugboardRedisTests' RedisServer (which this target does not link); both
/// start their tools and find their port through PlugboardTestSupport. It runs without the
/// umockdev preload and is killed and its directory removed on `stop()` or when dropped.
final class LoopbackRedis {
    let port: Int
    let dir: String
    private let process: Process

    init() throws {
        port = try LoopbackRedis.freePort()
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("pb-schema-redis-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        process = LoopbackRedis.tool("/usr/bin/redis-server", [
            "--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
            "--daemonize", "no", "--logfile", "\(dir)/redis.log",
        ])
        try process.run()
        try waitUntil("redis-server answers PING on port \(port)", timeout: 10) { (try? cli(["PING"])) == "PONG\n" }
    }

    deinit { stop() }

    var url: String { "redis://127.0.0.1:\(port)/0" }

    func stop() {
        if process.isRunning {
            // SIGKILL and a bounded wait: nothing of this server needs to survive it.
            kill(process.processIdentifier, SIGKILL)
            let end = Date().addingTimeInterval(5)
            while process.isRunning && Date() < end { usleep(10_000) }
        }
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Runs `redis-cli` against this server; its standard output.
    func cli(_ arguments: [String]) throws -> String {
        let p = LoopbackRedis.tool("/usr/bin/redis-cli", ["-p", "\(port)"] + arguments)
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    static func tool(_ path: String, _ arguments: [String]) -> Process { TestProcesses.withoutPreload(path, arguments) }

    static func freePort() throws -> Int { try LoopbackPort.free() }
}

/// Runs the `plugboard` binary without the umockdev preload (replay and Redis need no mocked
/// devices); its exit status and standard output + error.
func runPlugboard(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let p = LoopbackRedis.tool(TestPaths.buildDirectory + "/plugboard", arguments)
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

/// A JSON value as the stream entry writes it: numbers in decimal, lists joined by ",".
private func streamText(_ v: Any) -> String {
    if let list = v as? [String] { return list.joined(separator: ",") }
    if let s = v as? String { return s }
    return "\(v)"
}

/// Two JSON values equal as `JSONSerialization` returns them (numbers, strings, string lists).
private func same(_ a: Any?, _ b: Any?) -> Bool {
    switch (a, b) {
    case (let x as String, let y as String): x == y
    case (let x as [String], let y as [String]): x == y
    case (let x as Int, let y as Int): x == y
    default: false
    }
}

extension UdevSourceTests {
    /// One event, from a simulated device through `monitor --json`, replayed into Redis by
    /// `plugboard run`, read back as the raw stream entry (XRANGE) and with `plugboard tail --json`:
    /// the same field names, in the same order, with the same values (`sequence` and `timestamp_ns`
    /// are the replaying host's own, as docs/replay-format.md says). The PUBLISH payload is checked
    /// against `tail --json` text for text in PlugboardRedisTests ("mode both").
    @Test func oneEventHasTheSameNamesAndValuesInMonitorReplayStreamPublishAndTail() throws {
        // 1. monitor --json on a simulated flash drive.
        let bed = try Testbed()
        let hub = try bed.addRootHub()
        let monitor = try ChildProcess(["monitor", "--json", "--udev-mode", "udev"])
        defer { _ = monitor.process.isRunning ? monitor.terminate() : 0 }
        try waitUntil("the monitor listens") { !bed.listeners.isEmpty }
        _ = try monitor.lines(1)  // the root hub's coldplug
        _ = try bed.add(flashDrive(), parent: hub)
        let line = try monitor.lines(2)[1]
        #expect(monitor.terminate() == 0)
        let monitored = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(monitored["vendor_id"] as? String == "0781" && monitored["serial"] as? String == "4C530001230915117213")
        let names = line.split(separator: ",").compactMap { part -> String? in
            // The key order as printed: each `"name":` at the top level (no value holds `":`).
            guard let r = part.range(of: "\":") else { return nil }
            return String(part[..<r.lowerBound].drop { $0 == "{" || $0 == "\"" })
        }
        #expect(names.count == monitored.count, "\(names)")

        // 2. Replayed into Redis.
        let redis = try LoopbackRedis()
        defer { redis.stop() }
        let host = "schema-host"
        let key = "plugboard:{\(host)}:events"
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pb-schema-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try (line + "\n").write(toFile: "\(dir)/session.jsonl", atomically: true, encoding: .utf8)
        let run = try runPlugboard(["run", "--plugins", dir, "--source", "replay:\(dir)/session.jsonl", "--redis", redis.url,
                                    "--redis-host", host, "--redis-mode", "both", "--registry-cache", "none"])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")

        // 3. The raw stream entry: the same names, in order, each value the text form of monitor's.
        let xrange = try redis.cli(["XRANGE", key, "-", "+"]).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let pairs = Array(xrange.dropFirst().dropLast())  // the ID line, then name/value lines; a trailing newline
        #expect(pairs.count == 2 * names.count, "\(xrange)")
        let fieldNames = stride(from: 0, to: pairs.count, by: 2).map { pairs[$0] }
        #expect(fieldNames == names)
        for i in stride(from: 0, to: pairs.count - 1, by: 2) where !["sequence", "timestamp_ns"].contains(pairs[i]) {
            #expect(pairs[i + 1] == streamText(monitored[pairs[i]] ?? ""), "\(pairs[i])")
        }

        // 4. tail --json: monitor's line, with the entry ID first.
        let tail = try runPlugboard(["tail", "--redis", redis.url, "--host", host, "--from", "0", "--count", "1", "--json"])
        #expect(tail.status == 0, "\(tail.stderr)")
        let tailLine = try #require(tail.stdout.split(separator: "\n").first.map(String.init))
        let tailed = try #require(try JSONSerialization.jsonObject(with: Data(tailLine.utf8)) as? [String: Any])
        #expect(Set(tailed.keys) == Set(names + ["id"]))
        #expect((tailed["id"] as? String)?.hasSuffix("-1") == true && tailed["sequence"] as? Int == 1)
        for name in names where !["sequence", "timestamp_ns"].contains(name) {
            #expect(same(tailed[name], monitored[name]), "\(name): \(tailed[name] ?? "nil") vs \(monitored[name] ?? "nil")")
        }
        #expect(tailed["timestamp_ns"] as? Int == Int(pairs[3]))
    }
}
