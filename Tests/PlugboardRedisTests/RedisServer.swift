import Foundation
import PlugboardRedis
import PlugboardTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A real `redis-server` for one test: a free loopback port, a private temp dir, AOF with
/// `appendfsync always`. It can be SIGKILLed and restarted on the same port and dir, and is
/// always killed and its dir removed when the test drops it (deinit) or calls `stop()`.
final class RedisServer {
    let port: Int
    let dir: String
    let extraArgs: [String]
    /// The password tests use to reach this server (when it was started with one).
    let password: String?
    let user: String?
    private var process: Process?

    /// Also listens on `\(dir)/redis.sock`.
    let unixSocket: Bool
    var socketPath: String { "\(dir)/redis.sock" }

    init(extraArgs: [String] = [], user: String? = nil, password: String? = nil, unixSocket: Bool = false,
         start: Bool = true) throws {
        self.unixSocket = unixSocket
        port = try RedisServer.freePort(clusterBus: extraArgs.contains("--cluster-enabled"))
        var template = Array("/tmp/plugboard-redis-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestFailure("mkdtemp failed: errno \(errno)") }
        dir = String(cString: made)
        self.extraArgs = extraArgs
        self.user = user
        self.password = password
        if start { try self.start() }
    }

    deinit { stop() }

    /// The server's URL with the right credentials.
    var url: RedisURL {
        RedisURL(endpoint: .tcp(host: "127.0.0.1", port: port), user: user, password: password)
    }

    var isRunning: Bool { process?.isRunning ?? false }

    /// Starts redis-server and waits until it answers (up to 10 s).
    func start() throws {
        let p = RedisServer.tool("/usr/bin/redis-server", [
            "--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
            "--appendfsync", "always", "--dir", dir, "--daemonize", "no", "--logfile", "\(dir)/redis.log",
        ] + extraArgs + (unixSocket ? ["--unixsocket", socketPath, "--unixsocketperm", "700"] : []))
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            do {
                _ = try RedisConnection(url: url, options: RedisConnectOptions(connectTimeout: .milliseconds(200)))
                return
            } catch let e as RedisError where e.code == .connect || e.code == .unavailable {
                guard p.isRunning else { break }
                usleep(20_000)
            }
        }
        let log = (try? String(contentsOfFile: "\(dir)/redis.log", encoding: .utf8)) ?? ""
        throw TestFailure("redis-server on port \(port) did not come up; log:\n\(log.suffix(2000))")
    }

    /// SIGKILL: no shutdown, no final AOF rewrite; what was fsynced stays.
    func kill() {
        guard let p = process, p.isRunning else { return }
        Glibc.kill(p.processIdentifier, SIGCONT)
        Glibc.kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        process = nil
    }

    /// Sends `sig` (SIGSTOP/SIGCONT to freeze and thaw it).
    func signal(_ sig: Int32) {
        if let p = process, p.isRunning { Glibc.kill(p.processIdentifier, sig) }
    }

    func restart() throws {
        kill()
        try start()
    }

    /// Kills the server (if running) and removes its directory.
    func stop() {
        kill()
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// A Redis tool (`redis-server`, `redis-cli`) to run, without the umockdev preload.
    static func tool(_ path: String, _ arguments: [String]) -> Process {
        TestProcesses.withoutPreload(path, arguments)
    }

    /// A fresh client connection with the right credentials.
    func client() throws -> RedisConnection {
        try RedisConnection(url: url)
    }

    static func freePort(clusterBus: Bool = false) throws -> Int { try LoopbackPort.free(clusterBus: clusterBus) }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
