import PlugboardRedis
import Testing

@Suite("Redis URLs")
struct RedisURLTests {
    @Test("redis:// with user, password, port and db parses; the password never shows")
    func fullTCPFormParses() throws {
        let u = try RedisURL(parsing: "redis://alice:s%40cret@127.0.0.1:6380/3")
        #expect(u.endpoint == .tcp(host: "127.0.0.1", port: 6380))
        #expect(u.user == "alice" && u.password == "s@cret" && u.database == 3)
        #expect(u.redacted == "redis://alice:***@127.0.0.1:6380/3")
    }

    @Test("defaults: port 6379, db 0, no credentials; :password@ means the default user")
    func defaultsApply() throws {
        #expect(try RedisURL(parsing: "redis://localhost") == RedisURL(endpoint: .tcp(host: "localhost", port: 6379)))
        let u = try RedisURL(parsing: "redis://:pw@[::1]:7000")
        #expect(u.user == nil && u.password == "pw" && u.endpoint == .tcp(host: "::1", port: 7000))
        #expect(u.redacted == "redis://:***@[::1]:7000/0")
    }

    @Test("unix:// socket paths with ?db=N")
    func unixSocketParses() throws {
        let u = try RedisURL(parsing: "unix:///run/redis/redis.sock?db=2")
        #expect(u.endpoint == .unix(path: "/run/redis/redis.sock") && u.database == 2)
    }

    @Test("bad URLs are errors naming the part that is wrong and the accepted forms, without the password",
          arguments: [
            ("http://localhost", "must start with redis://"),
            ("redis://host:99999/0", "port '99999'"),
            ("redis://host:6379/x", "database 'x'"),
            ("redis://:secret@host:port", "port 'port'"),
            ("unix://relative.sock", "absolute socket path"),
            ("unix:///s.sock?dbx=1", "unknown query parameter"),
            ("redis://", "host is missing"),
          ])
    func badURLsAreClearErrors(text: String, mentions: String) {
        let error = #expect(throws: RedisError.self) { try RedisURL(parsing: text) }
        #expect(error?.code == .invalidURL)
        #expect(error?.message.contains(mentions) == true, "\(error?.description ?? "")")
        #expect(error?.fix?.contains("redis://[user:password@]host:port/db") == true)
        #expect(error?.description.contains("secret") == false)
    }
}

@Suite("RedisConnection against a real redis-server", .serialized)
struct ConnectionTests {
    @Test("wrong password (requirepass): a clear error naming the URL without the password, and the fix")
    func wrongRequirepassIsAClearError() throws {
        let server = try RedisServer(extraArgs: ["--requirepass", "right-pw"], password: "right-pw")
        defer { server.stop() }
        var url = server.url
        url.password = "wrong-pw"
        let error = #expect(throws: RedisError.self) { try RedisConnection(url: url) }
        #expect(error?.code == .authentication)
        let text = error?.description ?? ""
        #expect(text.contains("redis://:***@127.0.0.1:\(server.port)/0"), "\(text)")
        #expect(!text.contains("wrong-pw") && !text.contains("right-pw"))
        #expect(text.contains("requirepass"))
        // And the publisher refuses to start with it, rather than spilling forever.
        let publisher = RedisPublisher(configuration: testConfiguration(url))
        #expect(throws: RedisError.self) {
            try publisher.start(events: GeneratedEventSource(total: 1, gate: SourceGate(released: 1)))
        }
        // The right password works.
        #expect(try server.client().command(["PING"]) == .status("PONG"))
    }

    @Test("wrong password of an ACL user: the error names the user and says where to check")
    func wrongACLUserPasswordIsAClearError() throws {
        let server = try RedisServer(extraArgs: ["--user", "alice", "on", ">alice-pw", "~*", "&*", "+@all"],
                                     user: "alice", password: "alice-pw")
        defer { server.stop() }
        #expect(try server.client().command(["ACL", "WHOAMI"]) == .string(Array("alice".utf8)))
        var url = server.url
        url.password = "nope"
        let error = #expect(throws: RedisError.self) { try RedisConnection(url: url) }
        #expect(error?.code == .authentication)
        #expect(error?.description.contains("ACL user 'alice'") == true)
        #expect(error?.description.contains("redis://alice:***@") == true)
        #expect(error?.fix?.contains("ACL LIST") == true)
    }

    @Test("no password for a server that requires one: the error says to add it to the URL")
    func missingPasswordIsAClearError() throws {
        let server = try RedisServer(extraArgs: ["--requirepass", "pw"], password: "pw")
        defer { server.stop() }
        var url = server.url
        url.password = nil
        let error = #expect(throws: RedisError.self) { try RedisConnection(url: url) }
        #expect(error?.code == .authentication)
        #expect(error?.message.contains("requires a password") == true)
        #expect(error?.fix?.contains("redis://:PASSWORD@") == true)
    }

    @Test("a database index out of range is a SELECT error with the fix")
    func selectOutOfRangeIsAClearError() throws {
        let server = try RedisServer()
        defer { server.stop() }
        var url = server.url
        url.database = 99
        let error = #expect(throws: RedisError.self) { try RedisConnection(url: url) }
        #expect(error?.code == .select)
        #expect(error?.fix?.contains("databases") == true)
    }

    @Test("nothing listening: a connect error naming host and port")
    func refusedConnectionIsAConnectError() throws {
        let port = try RedisServer.freePort()
        let url = RedisURL(endpoint: .tcp(host: "127.0.0.1", port: port))
        let error = #expect(throws: RedisError.self) { try RedisConnection(url: url) }
        #expect(error?.code == .connect && error?.isTransient == true)
        #expect(error?.fix?.contains("127.0.0.1:\(port)") == true)
    }

    @Test("commands are formatted binary-safe by the host (CR LF, NUL, empty, many arguments), and one larger than the format buffer still goes through")
    func formattedCommandsAreBinarySafe() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let conn = try RedisConnection(url: server.url)
        let awkward: [UInt8] = [0x24, 0x31, 0x0d, 0x0a, 0x00, 0x2a, 0x33, 0x0d, 0x0a, 0xff]   // "$1\r\n\0*3\r\n\xff"
        let big = (0..<(RedisConnection.formatCapacity + 1000)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let values: [[UInt8]] = [awkward, [], Array("x".utf8), big, Array(repeating: 0x0a, count: 1_000)]
        for (i, v) in values.enumerated() {
            #expect(try conn.command(bytes: [Array("SET".utf8), Array("k\(i)".utf8), v]) == .status("OK"))
        }
        for (i, v) in values.enumerated() {
            #expect(try conn.command(bytes: [Array("GET".utf8), Array("k\(i)".utf8)]) == .string(v), "value \(i)")
        }
        // Many arguments (the XADD of an event has about 40): all arrive, in order.
        var args: [[UInt8]] = [Array("RPUSH".utf8), Array("list".utf8)]
        args += (0..<200).map { Array("item-\($0)\r\n".utf8) }
        #expect(try conn.command(bytes: args) == .integer(200))
        let back = try conn.command(["LRANGE", "list", "0", "-1"])
        #expect(back == .array((0..<200).map { .string(Array("item-\($0)\r\n".utf8)) }))
    }

    @Test("reconnect re-applies AUTH and SELECT")
    func reconnectReappliesAuthAndSelect() throws {
        let server = try RedisServer(extraArgs: ["--requirepass", "pw"], password: "pw")
        defer { server.stop() }
        var url = server.url
        url.database = 5
        let conn = try RedisConnection(url: url)
        _ = try conn.command(["SET", "k", "in-db-5"])
        try server.restart()
        #expect(throws: RedisError.self) { _ = try conn.command(["GET", "k"]) }
        try conn.reconnect()
        #expect(try conn.command(["GET", "k"]) == .string(Array("in-db-5".utf8)))
        #expect(try conn.command(["CLIENT", "INFO"]).text?.contains("db=5") == true)
    }
}

@Suite("Unix socket", .serialized)
struct UnixSocketTests {
    @Test("unix:// with AUTH and ?db=N: the publisher delivers over the socket")
    func publishesOverAUnixSocket() throws {
        let server = try RedisServer(extraArgs: ["--requirepass", "pw"], password: "pw", unixSocket: true)
        defer { server.stop() }
        let url = try RedisURL(parsing: "unix://:pw@\(server.socketPath)?db=3")
        let publisher = RedisPublisher(configuration: testConfiguration(url, host: "unix-host"))
        try publisher.start(events: GeneratedEventSource(total: 100, gate: SourceGate(released: 100)))
        #expect(publisher.flush(timeout: .seconds(30)))
        #expect(publisher.stop().published == 100)
        let client = try RedisConnection(url: url)
        #expect(try client.command(["XLEN", "plugboard:{unix-host}:events"]) == .integer(100))
        #expect(try client.command(["CLIENT", "INFO"]).text?.contains("db=3") == true)
    }
}
