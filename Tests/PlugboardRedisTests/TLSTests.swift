import Foundation
import PlugboardRedis
import PlugboardTestSupport
import Testing

/// A CA, certificates and keys made with `openssl` in a private temp dir for one test:
/// the server's (CN localhost, SAN DNS:localhost and IP:127.0.0.1), an expired one for the same
/// names, a client's signed by the same CA, and a second CA that signed none of them.
/// RSA: redis-server resets connections made with an Ed25519 certificate.
final class TLSFiles {
    let dir: String
    var ca: String { "\(dir)/ca.crt" }
    var otherCA: String { "\(dir)/other-ca.crt" }
    var serverCert: String { "\(dir)/server.crt" }
    var serverKey: String { "\(dir)/server.key" }
    var expiredCert: String { "\(dir)/expired.crt" }
    var clientCert: String { "\(dir)/client.crt" }
    var clientKey: String { "\(dir)/client.key" }
    /// A client certificate from `otherCA`, which the server does not trust.
    var strangerCert: String { "\(dir)/stranger.crt" }
    var strangerKey: String { "\(dir)/stranger.key" }

    init() throws {
        var template = Array("/tmp/plugboard-tls-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestFailure("mkdtemp failed: errno \(errno)") }
        dir = String(cString: made)
        try "subjectAltName=DNS:localhost,IP:127.0.0.1\n".write(toFile: "\(dir)/server.ext", atomically: true, encoding: .utf8)
        try openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(dir)/ca.key", "-out", ca,
                     "-days", "2", "-subj", "/CN=Plugboard Test CA"])
        try openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(dir)/other-ca.key", "-out", otherCA,
                     "-days", "2", "-subj", "/CN=Some Other CA"])
        try issue("server", subject: "/CN=localhost", by: "ca", days: "2", extensions: "\(dir)/server.ext")
        try openssl(["x509", "-req", "-in", "\(dir)/server.csr", "-CA", ca, "-CAkey", "\(dir)/ca.key", "-CAcreateserial",
                     "-out", expiredCert, "-days", "-1", "-extfile", "\(dir)/server.ext"])
        try issue("client", subject: "/CN=plugboard-client", by: "ca", days: "2")
        try issue("stranger", subject: "/CN=stranger", by: "other-ca", days: "2")
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    private func issue(_ name: String, subject: String, by issuer: String, days: String, extensions: String? = nil) throws {
        try openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(dir)/\(name).key", "-out", "\(dir)/\(name).csr",
                     "-subj", subject])
        try openssl(["x509", "-req", "-in", "\(dir)/\(name).csr", "-CA", "\(dir)/\(issuer).crt", "-CAkey", "\(dir)/\(issuer).key",
                     "-CAcreateserial", "-out", "\(dir)/\(name).crt", "-days", days] + (extensions.map { ["-extfile", $0] } ?? []))
    }

    private func openssl(_ arguments: [String]) throws {
        let r = try TestProcess.run("/usr/bin/openssl", arguments)
        guard r.status == 0 else { throw TestFailure("openssl \(arguments.joined(separator: " ")): \(r.output)") }
    }

    /// redis-server's TLS arguments: a TLS port beside the plain one (the plain one is how the
    /// test reads back what arrived, independently of the code under test).
    func serverArgs(tlsPort: Int, cert: String? = nil, authClients: String = "no") -> [String] {
        ["--tls-port", "\(tlsPort)", "--tls-cert-file", cert ?? serverCert, "--tls-key-file", serverKey,
         "--tls-ca-cert-file", ca, "--tls-auth-clients", authClients]
    }
}

/// `rediss://` against a real `redis-server --tls-port` with certificates the test makes.
@Suite("TLS to Redis: rediss:// through the OpenSSL bridge", .serialized)
struct TLSTests {
    var plugboard: String { PackagePaths.product("plugboard") }

    /// A TLS redis-server (and its TLS port) for these files.
    func tlsServer(_ files: TLSFiles, cert: String? = nil, authClients: String = "no") throws -> (RedisServer, Int) {
        let tlsPort = try LoopbackPort.free()
        return (try RedisServer(extraArgs: files.serverArgs(tlsPort: tlsPort, cert: cert, authClients: authClients)), tlsPort)
    }

    func emptyPluginDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pbr-tls-plugins-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        return dir
    }

    func tlsURL(port: Int, host: String = "127.0.0.1", tls: RedisTLS) -> RedisURL {
        RedisURL(endpoint: .tcp(host: host, port: port), tls: tls)
    }

    @Test("the publisher over rediss:// stores 20,000 events once each, in order, every field intact")
    func publisherOverTLSStoresEveryEvent() throws {
        let files = try TLSFiles()
        let (server, tlsPort) = try tlsServer(files)
        defer { server.stop() }
        let publisher = RedisPublisher(configuration: testConfiguration(tlsURL(port: tlsPort, tls: RedisTLS(caFile: files.ca))))
        try publisher.start(events: GeneratedEventSource(total: 20_000, gate: SourceGate(released: 20_000)))
        #expect(publisher.flush(timeout: .seconds(120)))
        let stats = publisher.stop()
        #expect(stats.published == 20_000 && stats.dropped == 0 && stats.rejected == 0)
        // Read back over the plain port: what the server holds, not what the bridge says.
        expectExactlyOnce(try readAll(server.client(), publisher.streamKey), count: 20_000, fieldStride: 7)
    }

    @Test("plugboard run --redis rediss:// publishes every event; plugboard tail over rediss:// prints them")
    func runAndTailOverTLS() throws {
        let files = try TLSFiles()
        let (server, tlsPort) = try tlsServer(files)
        defer { server.stop() }
        let plugins = try emptyPluginDir()
        defer { try? FileManager.default.removeItem(atPath: plugins) }
        let url = "rediss://127.0.0.1:\(tlsPort)/0"
        let r = try TestProcess.run(plugboard, ["run", "--plugins", plugins, "--source", "synthetic:300", "--redis", url,
                                                "--redis-host", "tls-host", "--set", "redis.tls_ca_file=\(files.ca)"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("redis=rediss://127.0.0.1:\(tlsPort)/0"), "the start line names the TLS URL")
        #expect(r.output.contains("redis_tls_ca_file=\(files.ca)"), "the start line shows the CA file")

        let entries = try readAll(server.client(), "plugboard:{tls-host}:events")
        #expect(entries.count == 300)
        #expect(entries.map { $0["sequence"] ?? "" } == (1...300).map { "\($0)" })
        #expect(entries.first?["syspath"] == "/sys/devices/synthetic/usb1/1-1", "\(entries.first?.fields ?? [])")

        let t = try TestProcess.run(plugboard, ["tail", "--redis", url, "--tls-ca-file", files.ca, "--host", "tls-host",
                                                "--from", "0", "--count", "300"])
        #expect(t.status == 0, "\(t.output)")
        let lines = t.output.split(separator: "\n").filter { $0.hasPrefix("PLUGBOARD[") }
        #expect(lines.count == 300)
        #expect(lines.first?.contains("/sys/devices/synthetic/usb1/1-1 ") == true, "\(lines.first ?? "")")
    }

    @Test("a server certificate from a CA we do not trust: run and tail exit 1 naming the URL, the CA file and the fix")
    func wrongCAIsRefused() throws {
        let files = try TLSFiles()
        let (server, tlsPort) = try tlsServer(files)
        defer { server.stop() }
        let plugins = try emptyPluginDir()
        defer { try? FileManager.default.removeItem(atPath: plugins) }
        let url = "rediss://:sekrit@127.0.0.1:\(tlsPort)/0"
        let r = try TestProcess.run(plugboard, ["run", "--plugins", plugins, "--source", "synthetic:5", "--redis", url,
                                                "--set", "redis.tls_ca_file=\(files.otherCA)"])
        #expect(r.status == 1, "\(r.output)")
        #expect(r.output.contains("rediss://:***@127.0.0.1:\(tlsPort)/0"), "names the URL, password redacted: \(r.output)")
        #expect(!r.output.contains("sekrit"))
        #expect(r.output.contains("certificate was not accepted"), "\(r.output)")
        #expect(r.output.contains("the CA file \(files.otherCA)"), "\(r.output)")
        #expect(r.output.contains("Fix: set redis.tls_ca_file"), "\(r.output)")
        #expect(try server.client().command(["EXISTS", "plugboard:{\(StreamKeys.localHost)}:events"]) == .integer(0))

        let t = try TestProcess.run(plugboard, ["tail", "--redis", url, "--tls-ca-file", files.otherCA, "--count", "1"])
        #expect(t.status == 1, "\(t.output)")
        #expect(t.output.contains("the CA file \(files.otherCA)") && t.output.contains("--tls-ca-file"), "\(t.output)")
    }

    @Test("the server name is checked: the URL's host by default, redis.tls_server_name instead when set")
    func serverNameIsChecked() throws {
        let files = try TLSFiles()
        let (server, tlsPort) = try tlsServer(files)
        defer { server.stop() }
        let tls = RedisTLS(caFile: files.ca)
        // The certificate names localhost and 127.0.0.1: both pass, by IP SAN and by DNS SAN.
        _ = try RedisConnection(url: tlsURL(port: tlsPort, tls: tls))
        var named = tls
        named.serverName = "localhost"
        _ = try RedisConnection(url: tlsURL(port: tlsPort, tls: named))
        // A name the certificate does not carry is refused, whatever address the server is at.
        named.serverName = "redis.example.com"
        let error = #expect(throws: RedisError.self) { try RedisConnection(url: tlsURL(port: tlsPort, tls: named)) }
        #expect(error?.code == .tls)
        #expect(error?.description.contains("hostname mismatch") == true, "\(error.map { "\($0)" } ?? "")")
        #expect(error?.description.contains("the server name redis.example.com") == true)
        #expect(error?.fix?.contains("redis.tls_server_name") == true)

        let plugins = try emptyPluginDir()
        defer { try? FileManager.default.removeItem(atPath: plugins) }
        let r = try TestProcess.run(plugboard, ["run", "--plugins", plugins, "--source", "synthetic:5",
                                                "--redis", "rediss://127.0.0.1:\(tlsPort)/0",
                                                "--set", "redis.tls_ca_file=\(files.ca)", "--set", "redis.tls_server_name=wrong.example"])
        #expect(r.status == 1, "\(r.output)")
        #expect(r.output.contains("hostname mismatch") && r.output.contains("wrong.example"), "\(r.output)")
    }

    @Test("an expired server certificate is refused as expired")
    func expiredCertificateIsRefused() throws {
        let files = try TLSFiles()
        let (server, tlsPort) = try tlsServer(files, cert: files.expiredCert)
        defer { server.stop() }
        let error = #expect(throws: RedisError.self) {
            try RedisConnection(url: tlsURL(port: tlsPort, tls: RedisTLS(caFile: files.ca)))
        }
        #expect(error?.code == .tls)
        #expect(error?.description.contains("certificate has expired") == true, "\(error.map { "\($0)" } ?? "")")
    }

    @Test("a server that requires client certificates: refused without one (saying so), served with ours, refused with a stranger's")
    func clientCertificates() throws {
        let files = try TLSFiles()
        let (server, tlsPort) = try tlsServer(files, authClients: "yes")
        defer { server.stop() }
        let without = #expect(throws: RedisError.self) {
            try RedisConnection(url: tlsURL(port: tlsPort, tls: RedisTLS(caFile: files.ca)))
        }
        #expect(without?.code == .tls)
        #expect(without?.description.contains("certificate required") == true, "\(without.map { "\($0)" } ?? "")")
        #expect(without?.fix?.contains("redis.tls_cert_file") == true)

        let stranger = #expect(throws: RedisError.self) {
            try RedisConnection(url: tlsURL(port: tlsPort, tls: RedisTLS(caFile: files.ca, certFile: files.strangerCert,
                                                                         keyFile: files.strangerKey)))
        }
        #expect(stranger?.code == .tls)
        #expect(stranger?.fix?.contains(files.strangerCert) == true, "\(stranger.map { "\($0)" } ?? "")")

        let plugins = try emptyPluginDir()
        defer { try? FileManager.default.removeItem(atPath: plugins) }
        let r = try TestProcess.run(plugboard, ["run", "--plugins", plugins, "--source", "synthetic:50",
                                                "--redis", "rediss://127.0.0.1:\(tlsPort)/0", "--redis-host", "mtls",
                                                "--set", "redis.tls_ca_file=\(files.ca)",
                                                "--set", "redis.tls_cert_file=\(files.clientCert)",
                                                "--set", "redis.tls_key_file=\(files.clientKey)"])
        #expect(r.status == 0, "\(r.output)")
        #expect(try server.client().command(["XLEN", "plugboard:{mtls}:events"]) == .integer(50))
    }

    @Test("the TLS redis-server SIGKILLed and restarted mid-run: every event stored exactly once")
    func tlsServerRestartLosesNothing() throws {
        let files = try TLSFiles()
        let (server, tlsPort) = try tlsServer(files)
        defer { server.stop() }
        let publisher = RedisPublisher(configuration: testConfiguration(tlsURL(port: tlsPort, tls: RedisTLS(caFile: files.ca))))
        try publisher.start(events: GeneratedEventSource(total: 50_000, gate: SourceGate(released: 50_000)))
        #expect(eventually { publisher.stats.published >= 10_000 })
        server.kill()
        let killedAt = publisher.stats.published
        #expect(eventually { !publisher.stats.connected && publisher.stats.spilled > 0 })
        try server.restart()
        #expect(publisher.flush(timeout: .seconds(300)))
        let stats = publisher.stop()
        #expect(killedAt < 50_000, "the kill happened mid-run")
        #expect(stats.reconnects >= 1)
        #expect(stats.published == 50_000 && stats.dropped == 0 && stats.rejected == 0)
        expectExactlyOnce(try readAll(server.client(), publisher.streamKey), count: 50_000, fieldStride: 97)
    }

    @Test("the server closing a TLS connection is an I/O error saying so (no hang); reconnect makes a working one")
    func serverClosingIsAnIOErrorAndReconnectWorks() throws {
        let files = try TLSFiles()
        let (server, tlsPort) = try tlsServer(files)
        defer { server.stop() }
        let connection = try RedisConnection(url: tlsURL(port: tlsPort, tls: RedisTLS(caFile: files.ca)))
        #expect(try connection.command(["SET", "k", "before"]) == .status("OK"))
        // The server drops every normal client (this one), from the plain port.
        let killed = try server.client().command(["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        #expect(killed != .integer(0), "\(killed)")
        let error = #expect(throws: RedisError.self) { try connection.command(["GET", "k"]) }
        #expect(error?.code == .io)
        #expect(error?.description.contains("rediss://127.0.0.1:\(tlsPort)/0") == true)
        #expect(error?.description.contains("(TLS: ") == true, "says what the bridge saw: \(error.map { "\($0)" } ?? "")")
        try connection.reconnect()
        #expect(try connection.command(["GET", "k"]) == .string(Array("before".utf8)))
    }

    @Test("rediss:// to a port that does not speak TLS fails within the connect timeout, saying to use the tls-port")
    func plainPortIsNotTLS() throws {
        let files = try TLSFiles()
        let (server, _) = try tlsServer(files)
        defer { server.stop() }
        var options = RedisConnectOptions()
        options.connectTimeout = .milliseconds(300)
        let error = #expect(throws: RedisError.self) {
            try RedisConnection(url: tlsURL(port: server.port, tls: RedisTLS(caFile: files.ca)), options: options)
        }
        #expect(error?.code == .connect)
        #expect(error?.description.contains("tls-port") == true, "\(error.map { "\($0)" } ?? "")")
    }

    @Test("rediss:// parses to TLS with no files of its own; query parameters are refused pointing at the settings")
    func urlParsing() throws {
        let url = try RedisURL(parsing: "rediss://:pw@cache.example.com:6380/2")
        #expect(url.tls == RedisTLS())
        #expect(url.redacted == "rediss://:***@cache.example.com:6380/2")
        #expect(try RedisURL(parsing: "redis://cache.example.com").tls == nil, "redis:// stays plain")
        let error = #expect(throws: RedisError.self) { try RedisURL(parsing: "rediss://h:6380/0?ca=/etc/ca.pem") }
        #expect(error?.message.contains("redis.tls_") == true)
    }

    @Test("config check shows the TLS settings; a TLS setting with redis://, a missing CA file, or a cert without its key are refused by name")
    func configCheck() throws {
        let files = try TLSFiles()
        let ok = try TestProcess.run(plugboard, ["config", "check", "--set", "redis.url=rediss://127.0.0.1:6380/0",
                                                 "--set", "redis.tls_ca_file=\(files.ca)", "--set", "redis.tls_server_name=localhost"])
        #expect(ok.status == 0, "\(ok.output)")
        #expect(ok.output.contains("redis_tls_ca_file=\(files.ca)") && ok.output.contains("redis_tls_server_name=localhost"),
                "\(ok.output)")

        let plain = try TestProcess.run(plugboard, ["config", "check", "--set", "redis.url=redis://127.0.0.1:6379/0",
                                                    "--set", "redis.tls_ca_file=\(files.ca)"])
        #expect(plain.status == 1)
        #expect(plain.output.contains("redis.tls_ca_file") && plain.output.contains("rediss://"), "\(plain.output)")

        let missing = try TestProcess.run(plugboard, ["config", "check", "--set", "redis.url=rediss://127.0.0.1:6380/0",
                                                      "--set", "redis.tls_ca_file=\(files.dir)/nope.pem"])
        #expect(missing.status == 1)
        #expect(missing.output.contains("redis.tls_ca_file") && missing.output.contains("\(files.dir)/nope.pem"), "\(missing.output)")

        let half = try TestProcess.run(plugboard, ["config", "check", "--set", "redis.url=rediss://127.0.0.1:6380/0",
                                                   "--set", "redis.tls_cert_file=\(files.clientCert)"])
        #expect(half.status == 1)
        #expect(half.output.contains("without redis.tls_key_file"), "\(half.output)")
    }
}
