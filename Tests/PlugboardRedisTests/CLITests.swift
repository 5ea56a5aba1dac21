import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import PlugboardRedis
import Testing
import PlugboardTestSupport

/// `plugboard run --redis` and `plugboard tail`: the real binary against a real redis-server.
@Suite("plugboard run --redis and plugboard tail (the real binary)", .serialized)
struct CLITests {
    var plugboard: String { PackagePaths.product("plugboard") }
    var session: String { "\(PackagePaths.root)/demo/session.jsonl" }

    func pluginDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pbr-plugins-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for name in ["usb-logger", "device-counter"] {
            try FileManager.default.copyItem(atPath: PackagePaths.plugin(name), toPath: "\(dir)/lib\(name).so")
            // `run` loads a .so only with its manifest (docs/manifest.md), packed as `make plugins` does.
            try run(["pack", "\(PackagePaths.root)/SamplePlugins/\(name)/plugin.toml", "--library", "\(dir)/lib\(name).so",
                     "-o", "\(dir)/\(name).pbm"])
        }
        return dir
    }

    @discardableResult
    func run(_ arguments: [String]) throws -> (status: Int32, output: String) { try TestProcess.run(plugboard, arguments) }

    @Test("run --redis publishes every event and the plugins' shutdown output; tail --count prints them")
    func runPublishesAndTailPrints() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let url = "redis://127.0.0.1:\(server.port)/0"
        let dir = try pluginDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try run(["run", "--plugins", dir, "--source", "replay:\(session)", "--redis", url, "--redis-host", "cli-host"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("published=9"), "\(r.output)")
        #expect(!r.output.contains("not published"), "\(r.output)")

        let client = try server.client()
        #expect(try client.command(["XLEN", "plugboard:{cli-host}:events"]) == .integer(9))
        // device-counter publishes a summary while it shuts down, after the ring drained.
        let summary = try readAll(client, "plugboard:{cli-host}:plugin:device-counter")
        #expect(summary.count == 1)
        #expect(summary.first?["topic"] == "summary")
        #expect(summary.first?["data"]?.contains("\"events\":9") == true)

        let t = try run(["tail", "--redis", url, "--host", "cli-host", "--from", "0", "--count", "9"])
        #expect(t.status == 0, "\(t.output)")
        let lines = t.output.split(separator: "\n").filter { $0.hasPrefix("PLUGBOARD[") }
        #expect(lines.count == 9)
        #expect(lines.first?.contains("add      /sys/devices/pci0000:00/0000:00:14.0/usb1 1d6b:0002") == true, "\(lines.first ?? "")")
    }

    @Test("serve from a config file: manifests filter the plugins, events and plugin output reach Redis, SIGTERM exits 0")
    func serveWiresManifestsAndRedis() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let dir = try pluginDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A library without a manifest is skipped with the reason; the others run.
        try FileManager.default.copyItem(atPath: PackagePaths.plugin("pbtest-recorder"), toPath: "\(dir)/libnomanifest.so")
        let config = "\(dir)/plugboard.toml"
        try """
            source = "replay:\(session)"
            [plugins]
            dirs = ["\(dir)"]
            registry_cache = "\(dir)/registry.pbr"
            [redis]
            url = "redis://127.0.0.1:\(server.port)/0"
            host = "serve-host"
            [monitoring]
            listen = "127.0.0.1:0"
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let log = "\(dir)/serve.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: plugboard)
        p.arguments = ["serve", "--config", config, "--log-level", "info",
                       "--plugin-config", "usb-logger.output=\(dir)/usb-logger.out"]
        p.standardOutput = out
        p.standardError = out
        try p.run()
        defer { if p.isRunning { p.terminate() } }
        let client = try server.client()
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline, (try? client.command(["XLEN", "plugboard:{serve-host}:events"])) != .integer(9) {
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(try client.command(["XLEN", "plugboard:{serve-host}:events"]) == .integer(9))
        // The service's /metrics shows the wired parts: Redis round trips, events by action, the manifest cache.
        let listening = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
            .first { $0.contains("listening on http://") }
        let address = try #require(listening.map { String($0.split(separator: "/").last ?? "") })
        let metrics = String(decoding: try Data(contentsOf: URL(string: "http://\(address)/metrics")!), as: UTF8.self)
        let rtt = metrics.split(separator: "\n").first { $0.hasPrefix("plugboard_redis_publish_duration_seconds_count") }
        #expect(rtt.flatMap { Double($0.split(separator: " ").last ?? "") }.map { $0 >= 1 } == true, "\(metrics)")
        #expect(metrics.contains("plugboard_events_total{action=\"add\"} 5"))
        #expect(metrics.contains("plugboard_events_total{action=\"remove\"} 2"))
        #expect(metrics.contains("plugboard_redis_up 1"))
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(p.terminationStatus == 0, "\(output)")
        // device-counter's summary is published during shutdown and flushed before exit.
        let summary = try readAll(client, "plugboard:{serve-host}:plugin:device-counter")
        #expect(summary.first?["data"]?.contains("\"events\":9") == true, "\(output)")
        #expect(output.contains("libnomanifest.so") && output.contains("skipped"), "\(output)")
        #expect(FileManager.default.fileExists(atPath: "\(dir)/registry.pbr"), "the registry cache is written where configured")
        #expect((try? String(contentsOfFile: "\(dir)/usb-logger.out", encoding: .utf8))?.split(separator: "\n").count == 9)
    }

    @Test("run without --redis says events are not published")
    func runWithoutRedisSaysSo() throws {
        let dir = try pluginDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try run(["run", "--plugins", dir, "--source", "synthetic:5"])
        #expect(r.status == 0)
        #expect(r.output.contains("Redis is not configured (--redis URL, or redis.url in the configuration): events are not published"))
    }

    @Test("run --redis with a wrong password exits 1 naming the server without the password, and the fix")
    func runWithWrongPasswordFails() throws {
        let server = try RedisServer(extraArgs: ["--requirepass", "good"], password: "good")
        defer { server.stop() }
        let dir = try pluginDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try run(["run", "--plugins", dir, "--source", "synthetic:5",
                         "--redis", "redis://:bad-secret@127.0.0.1:\(server.port)/0"])
        #expect(r.status == 1)
        #expect(r.output.contains("cannot publish to Redis: redis redis://:***@127.0.0.1:\(server.port)/0"), "\(r.output)")
        #expect(r.output.contains("Fix: put the server's requirepass in the URL"))
        #expect(!r.output.contains("bad-secret"))
    }

    @Test("usage errors of run --redis and tail are clear and exit 64", arguments: [
        (["run", "--plugins", "/tmp", "--source", "synthetic:1", "--redis", "redis://h:99999"], "--redis redis://h:99999: redis.url: port \"99999\""),
        (["run", "--plugins", "/tmp", "--source", "synthetic:1", "--redis", "redis://h", "--redis-mode", "fast"], "--redis-mode"),
        (["tail", "--group", "g"], "--group and --consumer go together"),
        (["tail", "--from", "yesterday"], "--from 'yesterday' is not a stream ID"),
        (["tail", "--redis", "http://x"], "must start with redis://"),
        (["tail", "--host", "a", "--host", "a"], "--host a is given twice"),
        (["tail", "--host-pattern", "web-{1}"], "--host-pattern 'web-{1}': give a glob of host names"),
    ])
    func usageErrors(arguments: [String], mentions: String) throws {
        let r = try run(arguments)
        #expect(r.status == 64, "\(r.output)")
        #expect(r.output.contains(mentions), "\(r.output)")
    }

    @Test("tail against a server that is not there exits 1 with the connect error and the fix")
    func tailWithoutServerFails() throws {
        let port = try RedisServer.freePort()
        let r = try run(["tail", "--redis", "redis://127.0.0.1:\(port)/0", "--count", "1"])
        #expect(r.status == 1)
        #expect(r.output.contains("could not connect"), "\(r.output)")
        #expect(r.output.contains("check that redis-server is running and listening on 127.0.0.1:\(port)"))
    }
}
