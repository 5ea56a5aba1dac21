import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import PlugboardRedis
import PlugboardTestSupport
import Testing

/// Secrets kept secret (docs/security.md): the Redis password never appears in any output, and it
/// can live in a file of its own or a systemd credential instead of the URL.
@Suite("Secrets: the Redis password in no output; password_file and systemd credentials", .serialized)
struct SecretsTests {
    var plugboard: String { PackagePaths.product("plugboard") }

    func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pb-secret-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    func run(_ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, output: String) {
        try TestProcess.run(plugboard, arguments, environment: environment)
    }

    /// Runs `serve` on `config` until it listens, reads every endpoint, stops it; returns all it
    /// printed and served.
    func serveAndScrape(config: String, dir: String) throws -> String {
        let log = "\(dir)/serve.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: plugboard)
        p.arguments = ["serve", "--config", config, "--log-level", "trace", "--listen", "127.0.0.1:0"]
        p.standardOutput = out
        p.standardError = out
        try p.run()
        defer { if p.isRunning { p.terminate(); p.waitUntilExit() } }
        let deadline = ContinuousClock.now + .seconds(30)
        var address: String?
        while ContinuousClock.now < deadline, address == nil {
            address = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
                .first { $0.contains("listening on http://") }.map { String($0.split(separator: "/").last ?? "") }
            if address == nil { Thread.sleep(forTimeInterval: 0.05) }
        }
        let host = try #require(address, "serve did not listen: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        var served = ""
        for path in ["/metrics", "/plugins", "/devices", "/readyz", "/healthz"] {
            served += String(decoding: (try? Data(contentsOf: URL(string: "http://\(host)\(path)")!)) ?? Data(), as: UTF8.self)
        }
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        return served + ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    @Test("the password is in no output: config check (text, JSON, errors), run at trace level, a wrong password, serve's endpoints and log, tail")
    func passwordInNoOutput() throws {
        let password = "pw-\(UUID().uuidString)"
        let server = try RedisServer(extraArgs: ["--requirepass", password], password: password)
        defer { server.stop() }
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let url = "redis://:\(password)@127.0.0.1:\(server.port)/0"
        var outputs: [(String, String)] = []

        let config = "\(dir)/plugboard.toml"
        try """
            source = "synthetic:20"
            [plugins]
            dirs = ["\(dir)"]
            [redis]
            url = "\(url)"
            host = "secret-host"
            """.write(toFile: config, atomically: true, encoding: .utf8)
        chmod(config, 0o644)
        let text = try run(["config", "check", config])
        #expect(text.status == 0, "\(text.output)")
        #expect(text.output.contains("redis://:***@127.0.0.1:\(server.port)/0"))
        // A password in a file every user may read is worth a warning.
        #expect(text.output.contains("holds the Redis password (redis.url) and is readable by other users (mode 0644)"), "\(text.output)")
        outputs.append(("config check", text.output))
        let json = try run(["config", "check", config, "--json"])
        #expect(json.status == 0)
        #expect(json.output.contains("\"warnings\":[\"the configuration file"), "\(json.output)")
        outputs.append(("config check --json", json.output))
        chmod(config, 0o600)
        let quiet = try run(["config", "check", config])
        #expect(!quiet.output.contains("readable by other users"), "\(quiet.output)")

        let badPort = try run(["config", "check", "--set", "redis.url=redis://:\(password)@127.0.0.1:99999"])
        #expect(badPort.status != 0)
        outputs.append(("config check, bad URL", badPort.output))
        let badFlag = try run(["run", "--source", "synthetic:1", "--redis", "redis://:\(password)@127.0.0.1:99999"])
        #expect(badFlag.status != 0)
        outputs.append(("run --redis bad URL", badFlag.output))

        let good = try run(["run", "--config", config, "--log-level", "trace"])
        #expect(good.status == 0, "\(good.output)")
        #expect(try server.client().command(["XLEN", "plugboard:{secret-host}:events"]) == .integer(20))
        outputs.append(("run --log-level trace", good.output))

        let wrong = "wrong-\(UUID().uuidString)"
        let refused = try run(["run", "--source", "synthetic:5", "--plugins", dir, "--shutdown-deadline", "1s", "--log-level", "trace",
                               "--redis", "redis://:\(wrong)@127.0.0.1:\(server.port)/0"])
        #expect(refused.status != 0)
        #expect(!refused.output.contains(wrong), "\(refused.output)")

        let unreachable = try run(["run", "--source", "synthetic:5", "--plugins", dir, "--shutdown-deadline", "1s", "--log-level", "trace",
                                   "--redis", "redis://:\(password)@127.0.0.1:\(try LoopbackPort.free())/0"])
        outputs.append(("run, Redis unreachable", unreachable.output))

        outputs.append(("serve", try serveAndScrape(config: config, dir: dir)))

        let tail = try run(["tail", "--redis", url, "--host", "secret-host", "--from", "0", "--count", "3", "--json"])
        #expect(tail.status == 0, "\(tail.output)")
        outputs.append(("tail", tail.output))
        let tailRefused = try run(["tail", "--redis", "redis://:\(wrong)@127.0.0.1:\(server.port)/0", "--host", "secret-host", "--count", "1"])
        #expect(tailRefused.status != 0)
        #expect(!tailRefused.output.contains(wrong), "\(tailRefused.output)")

        for (name, output) in outputs {
            #expect(!output.contains(password), "\(name) printed the password: \(output)")
        }
    }

    @Test("redis.password_file and the systemd credential log in without a password in the URL; misuse is refused with the fix")
    func passwordFile() throws {
        let password = "pw-\(UUID().uuidString)"
        let server = try RedisServer(extraArgs: ["--requirepass", password], password: password)
        defer { server.stop() }
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let url = "redis://127.0.0.1:\(server.port)/0"
        let file = "\(dir)/redis-password"
        try "\(password)\n".write(toFile: file, atomically: true, encoding: .utf8)
        chmod(file, 0o600)

        let r = try run(["run", "--source", "synthetic:7", "--plugins", dir, "--redis", url, "--redis-host", "file-host",
                         "--set", "redis.password_file=\(file)"])
        #expect(r.status == 0, "\(r.output)")
        #expect(!r.output.contains("readable by other users"))
        #expect(try server.client().command(["XLEN", "plugboard:{file-host}:events"]) == .integer(7))

        chmod(file, 0o644)
        let loose = try run(["config", "check", "--set", "redis.url=\(url)", "--set", "redis.password_file=\(file)"])
        #expect(loose.output.contains("\(file) holds the Redis password and is readable by other users (mode 0644) (fix: chmod 600 \(file))"),
                "\(loose.output)")
        chmod(file, 0o600)

        // systemd's LoadCredential=redis-password:... puts the file in $CREDENTIALS_DIRECTORY.
        let credentials = "\(dir)/credentials"
        try FileManager.default.createDirectory(atPath: credentials, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: file, toPath: "\(credentials)/redis-password")
        var environment = ProcessInfo.processInfo.environment
        environment["CREDENTIALS_DIRECTORY"] = credentials
        let viaCredential = try run(["run", "--source", "synthetic:4", "--plugins", dir, "--redis", url, "--redis-host", "cred-host"],
                                    environment: environment)
        #expect(viaCredential.status == 0, "\(viaCredential.output)")
        #expect(try server.client().command(["XLEN", "plugboard:{cred-host}:events"]) == .integer(4))

        let twice = try run(["config", "check", "--set", "redis.url=redis://:\(password)@127.0.0.1:\(server.port)",
                             "--set", "redis.password_file=\(file)"])
        #expect(twice.status != 0)
        #expect(twice.output.contains("the password is given twice (fix: remove the password from redis.url, or drop redis.password_file)"),
                "\(twice.output)")
        #expect(!twice.output.contains(password))

        let missing = try run(["config", "check", "--set", "redis.url=\(url)", "--set", "redis.password_file=\(dir)/nope"])
        #expect(missing.status != 0)
        #expect(missing.output.contains("cannot read \(dir)/nope"), "\(missing.output)")
        try "".write(toFile: "\(dir)/empty", atomically: true, encoding: .utf8)
        let empty = try run(["config", "check", "--set", "redis.url=\(url)", "--set", "redis.password_file=\(dir)/empty"])
        #expect(empty.status != 0)
        #expect(empty.output.contains("\(dir)/empty is empty (fix: write the Redis password alone on the first line)"), "\(empty.output)")
    }
}
