import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The HTTP endpoints as an outsider meets them (docs/security.md, "The HTTP endpoints"): a bearer
/// token guards /plugins and /devices (and /metrics when asked), listening beyond loopback is
/// warned about, and a client that sends half a request, or nothing, or a byte at a time, holds
/// no socket past `monitoring.request_timeout`. The real `plugboard serve`, over real sockets.
@Suite("HTTP endpoints: token, exposure warning, request deadline", .serialized)
struct EndpointSecurityTests {
    static let token = "0123456789abcdef0123456789abcdef"

    func tokenFile(in dir: String, mode: mode_t = 0o600) throws -> String {
        let path = dir + "/token"
        try "\(Self.token)\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, mode)
        return path
    }

    @Test("with monitoring.token_file, /plugins and /devices (and /metrics with protect_metrics) answer 401 without the token; probes stay open")
    func bearerToken() throws {
        let dir = TempDir()
        let token = try tokenFile(in: dir.path)
        for protectMetrics in [false, true] {
            let d = try DaemonProcess(arguments: ["--source", "synthetic:10", "--plugins", dir.path, "--listen", "127.0.0.1:0",
                                                  "--set", "monitoring.token_file=\(token)",
                                                  "--set", "monitoring.protect_metrics=\(protectMetrics)"])
            let port = try d.port()
            for path in ["/plugins", "/devices"] + (protectMetrics ? ["/metrics"] : []) {
                let none = try httpGetBlocking(port: port, path: path)
                #expect(none.status == 401, "\(path) without a token: \(none)")
                #expect(none.body.contains("Authorization: Bearer TOKEN"))
                let wrong = try httpGetBlocking(port: port, path: path, headers: ["Authorization: Bearer \(Self.token.dropLast())x"])
                #expect(wrong.status == 401, "\(path) with a wrong token")
                let short = try httpGetBlocking(port: port, path: path, headers: ["Authorization: Bearer \(Self.token.prefix(8))"])
                #expect(short.status == 401, "\(path) with a prefix of the token")
                let good = try httpGetBlocking(port: port, path: path, headers: ["Authorization: Bearer \(Self.token)"])
                #expect(good.status == 200, "\(path) with the token: \(good)")
            }
            for path in ["/healthz", "/readyz"] + (protectMetrics ? [] : ["/metrics"]) {
                #expect(try httpGetBlocking(port: port, path: path).status != 401, "\(path) needs no token")
            }
            d.signal(SIGTERM)
            #expect(d.waitForExit() == 0, "\(d.stderr)")
        }
    }

    @Test("a token file that is missing or too short is refused at start with the fix; one readable by others is warned about")
    func badTokenFile() throws {
        let dir = TempDir()
        let missing = try DaemonProcess(arguments: ["--source", "synthetic:1", "--plugins", dir.path, "--listen", "127.0.0.1:0",
                                                    "--set", "monitoring.token_file=\(dir.path)/none"])
        #expect(missing.waitForExit() != 0)
        #expect(missing.stderr.contains("monitoring.token_file (from command line --set monitoring.token_file=\(dir.path)/none): cannot read \(dir.path)/none"),
                "\(missing.stderr)")
        try "short\n".write(toFile: dir.path + "/short", atomically: true, encoding: .utf8)
        let short = try DaemonProcess(arguments: ["--source", "synthetic:1", "--plugins", dir.path, "--listen", "127.0.0.1:0",
                                                  "--set", "monitoring.token_file=\(dir.path)/short"])
        #expect(short.waitForExit() != 0)
        #expect(short.stderr.contains("at least 16 characters"), "\(short.stderr)")
        let loose = try tokenFile(in: dir.path, mode: 0o644)
        let d = try DaemonProcess(arguments: ["--source", "synthetic:1", "--plugins", dir.path, "--listen", "127.0.0.1:0",
                                              "--set", "monitoring.token_file=\(loose)"])
        _ = try d.port()
        try d.waitFor("the warning") { d.stderr.contains("\(loose) holds the token and is readable by other users (mode 0644) (fix: chmod 600 \(loose))") }
        d.signal(SIGTERM)
        #expect(d.waitForExit() == 0)
    }

    @Test("listening beyond loopback is warned about in the log and in /readyz's body; on loopback it is not")
    func exposureWarning() throws {
        let dir = TempDir()
        let d = try DaemonProcess(arguments: ["--source", "synthetic:1", "--plugins", dir.path, "--listen", "0.0.0.0:0"])
        let port = try d.port()
        let readyz = try httpGetBlocking(port: port, path: "/readyz")
        #expect(readyz.body.contains("warning: monitoring listens beyond loopback on 0.0.0.0:0"), "\(readyz.body)")
        #expect(readyz.body.contains("answer anyone who can reach it (fix: set monitoring.token_file"))
        #expect(d.stderr.contains("monitoring listens beyond loopback"), "\(d.stderr)")
        d.signal(SIGTERM)
        #expect(d.waitForExit() == 0)

        let local = try DaemonProcess(arguments: ["--source", "synthetic:1", "--plugins", dir.path, "--listen", "127.0.0.1:0"])
        let localPort = try local.port()
        #expect(!(try httpGetBlocking(port: localPort, path: "/readyz").body.contains("warning")))
        local.signal(SIGTERM)
        #expect(local.waitForExit() == 0)
        #expect(!local.stderr.contains("beyond loopback"))
        // `run` serves no HTTP: the same configuration gives it nothing to warn about.
        let binary = try #require(productBinary("plugboard"))
        let run = try runProcess(binary, ["run", "--source", "synthetic:1", "--plugins", dir.path, "--ignore-manifests",
                                          "--set", "monitoring.listen=0.0.0.0:0"], env: [:])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(!run.stderr.contains("beyond loopback"), "\(run.stderr)")
    }

    @Test("idle, half-sent and byte-at-a-time connections are closed at monitoring.request_timeout; complete requests still answer")
    func requestDeadline() throws {
        let dir = TempDir()
        let d = try DaemonProcess(arguments: ["--source", "synthetic:1", "--plugins", dir.path, "--listen", "127.0.0.1:0",
                                              "--set", "monitoring.request_timeout=1s"])
        let port = try d.port()
        func connected() throws -> Int32 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
            let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard r == 0 else { throw TestFailure("connect: errno \(errno)") }
            // Far longer than the timeout: a socket still open then was held.
            var tv = timeval(tv_sec: 30, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            return fd
        }
        var idle: [Int32] = [], half: [Int32] = []
        for _ in 0..<100 { idle.append(try connected()) }
        for _ in 0..<100 {
            let fd = try connected()
            _ = "GET /metrics HTTP/1.1\r\nHost: x\r\n".withCString { send(fd, $0, strlen($0), 0) }
            half.append(fd)
        }
        // One byte every 200 ms: never idle, never complete.
        let slow = try connected()
        let request = Array("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: \(String(repeating: "a", count: 200))\r\n\r\n".utf8)
        var sent = 0, closedEarly = false
        let start = ContinuousClock.now
        while sent < request.count, ContinuousClock.now - start < .seconds(20) {
            if send(slow, [request[sent]], 1, Int32(MSG_NOSIGNAL)) != 1 { closedEarly = true; break }
            sent += 1
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(closedEarly, "a byte-at-a-time request was held for \(sent) bytes")
        close(slow)
        for (name, fds) in [("idle", idle), ("half-sent", half)] {
            var held = 0
            for fd in fds {
                var byte: UInt8 = 0
                // 0: the server closed it. -1 (EAGAIN after 30 s): it was held.
                if recv(fd, &byte, 1, 0) != 0 { held += 1 }
                close(fd)
            }
            #expect(held == 0, "\(held) \(name) connections were held open")
        }
        #expect(try httpGetBlocking(port: port, path: "/healthz").status == 200)
        d.signal(SIGTERM)
        #expect(d.waitForExit() == 0, "\(d.stderr)")
    }
}
