import CHiredis
import PlugboardSystem
#if canImport(Glibc)
import Glibc
#endif

/// Timeouts and keepalive for a `RedisConnection`; applied on connect and after every reconnect.
public struct RedisConnectOptions: Sendable, Equatable {
    /// How long a TCP/unix connect may take.
    public var connectTimeout: Duration = .seconds(2)
    /// How long one blocking send or read may take (SO_SNDTIMEO / SO_RCVTIMEO).
    public var commandTimeout: Duration = .seconds(5)
    /// TCP keepalive (hiredis' 15 s idle interval), so a dead peer is noticed without traffic.
    public var keepAlive: Bool = true

    public init(connectTimeout: Duration = .seconds(2), commandTimeout: Duration = .seconds(5), keepAlive: Bool = true) {
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.keepAlive = keepAlive
    }
}

/// One blocking hiredis connection. Owns the `redisContext` (freed with `redisFree` in deinit).
///
/// For `rediss://` it also owns a `TLSBridge`: hiredis is given one end of a socketpair
/// (`redisConnectFd`) and the bridge's pump thread carries the bytes over TLS. `redis://` and
/// `unix://` never touch the bridge.
///
/// Not thread-safe and not Sendable: one thread owns it (the publisher thread, or `tail`).
/// Uses only the hiredis 0.14.1 API: `redisConnectWithTimeout`/`redisConnectUnixWithTimeout`,
/// `redisConnectFd` (TLS), `redisSetTimeout`, `redisEnableKeepAlive`, `redisReconnect`, `redisAppendCommandArgv`,
/// `redisAppendFormattedCommand`,
/// `redisGetReply`.
public final class RedisConnection {
    public let url: RedisURL
    public let options: RedisConnectOptions
    private var context: UnsafeMutablePointer<redisContext>?
    /// rediss:// only. Released after `context` (deinit frees the context first, closing
    /// hiredis' end, then the bridge's pump is stopped and joined).
    private var bridge: TLSBridge?
    /// Where `append` formats each command before hiredis copies it (`pb_redis_append_argv`).
    private let formatBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: RedisConnection.formatCapacity)
    public static let formatCapacity = 64 * 1024

    /// Connects, then applies timeouts and keepalive, AUTH and SELECT.
    /// - Throws: `RedisError` (`.connect`, `.tls`, `.authentication`, `.select`, `.io`).
    public init(url: RedisURL, options: RedisConnectOptions = RedisConnectOptions()) throws {
        self.url = url
        self.options = options
        let tv = RedisConnection.timeval(options.connectTimeout)
        switch url.endpoint {
        case .tcp(let host, let port) where url.tls != nil:
            try connectTLS(host: host, port: port)
        case .tcp(let host, let port):
            context = redisConnectWithTimeout(host, Int32(port), tv)
        case .unix(let path):
            context = redisConnectUnixWithTimeout(path, tv)
        }
        try checkConnected()
        try setUp()
    }

    deinit {
        if let context { redisFree(context) }
        formatBuffer.deallocate()
    }

    /// A new TLS bridge and a hiredis context on its plain end (`redisConnectFd`).
    private func connectTLS(host: String, port: Int) throws {
        let b = try TLSBridge(host: host, port: port, tls: url.tls!, connectTimeout: options.connectTimeout,
                              keepAlive: options.keepAlive, server: url.redacted)
        let fd = b.takeFileDescriptor()
        guard let c = redisConnectFd(fd) else {
            close(fd)
            throw RedisError(.connect, server: url.redacted, "could not allocate a hiredis context (out of memory)")
        }
        context = c
        bridge = b
    }

    /// Reconnects with the saved address and connect timeout (`redisReconnect`), then re-applies
    /// the command timeout, keepalive, AUTH and SELECT, which a new socket does not inherit.
    /// Unsent and unanswered commands are gone afterwards: callers replay their own window.
    public func reconnect() throws {
        if case .tcp(let host, let port) = url.endpoint, url.tls != nil {
            // redisReconnect cannot redo a redisConnectFd connection: a new bridge, a new context.
            if let context { redisFree(context) }
            context = nil
            bridge = nil
            try connectTLS(host: host, port: port)
            try checkConnected()
            try setUp()
            return
        }
        guard let context else {
            throw RedisError(.connect, server: url.redacted, "no connection context (out of memory?)")
        }
        if redisReconnect(context) != REDIS_OK {
            throw connectError()
        }
        try setUp()
    }

    /// True while hiredis has no error latched on the context.
    public var isHealthy: Bool { context.map { $0.pointee.err == 0 } ?? false }

    // MARK: Pipelining

    /// Queues one command in hiredis' output buffer; nothing is sent until `withNextReply` (or
    /// `flush`) runs. `argv`/`lengths` need only live for the call. The command is formatted here
    /// (`pb_redis_append_argv`, one pass, no allocation) and copied once by
    /// `redisAppendFormattedCommand`; hiredis' own `redisAppendCommandArgv` is kept for commands
    /// larger than the buffer.
    public func append(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafePointer<CChar>?>, _ lengths: UnsafePointer<Int>) throws {
        guard let context else { throw RedisError(.io, server: url.redacted, "not connected") }
        let status = lengths.withMemoryRebound(to: size_t.self, capacity: Int(argc)) { lens in
            pb_redis_append_argv(context, argc, argv, lens, formatBuffer, RedisConnection.formatCapacity)
        }
        if status != REDIS_OK {
            throw ioError(doing: "queueing a command")
        }
    }

    /// Reads the next reply (`redisGetReply`, which first writes out anything queued) and hands
    /// it to `body` in place; the reply is freed when `body` returns.
    /// - Throws: `.io` when the connection broke or timed out (hiredis latches the error: reconnect).
    public func withNextReply<T>(_ body: (UnsafePointer<redisReply>) throws -> T) throws -> T {
        guard let context else { throw RedisError(.io, server: url.redacted, "not connected") }
        var raw: UnsafeMutableRawPointer? = nil
        if redisGetReply(context, &raw) != REDIS_OK || raw == nil {
            if let raw { freeReplyObject(raw) }
            throw ioError(doing: "reading a reply")
        }
        defer { freeReplyObject(raw) }
        return try body(raw!.assumingMemoryBound(to: redisReply.self))
    }

    // MARK: One-off commands (control paths)

    /// Sends one command and copies its reply. Error replies come back as `.error`, not thrown.
    public func command(_ args: [String]) throws -> RedisReply {
        try command(bytes: args.map { Array($0.utf8) })
    }

    /// Like `command(_:)` with binary-safe arguments.
    public func command(bytes args: [[UInt8]]) throws -> RedisReply {
        try appendCommand(bytes: args)
        let name = String(decoding: args.first ?? [], as: UTF8.self)
        return try withNextReply { try RedisReply(copying: $0, server: url.redacted, context: name) }
    }

    /// Reads and copies the next reply without sending anything (pub/sub messages, pipelines).
    public func readReply(context: String = "reply") throws -> RedisReply {
        try withNextReply { try RedisReply(copying: $0, server: url.redacted, context: context) }
    }

    /// Queues one command given as byte arrays (control paths; allocates).
    public func appendCommand(bytes args: [[UInt8]]) throws {
        let argc = args.count
        let argv = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: max(argc, 1))
        let lens = UnsafeMutablePointer<Int>.allocate(capacity: max(argc, 1))
        defer { argv.deallocate(); lens.deallocate() }
        // Keep every argument's storage alive until hiredis has copied it into its buffer.
        var storage: [UnsafeMutablePointer<UInt8>] = []
        defer { storage.forEach { $0.deallocate() } }
        for (i, a) in args.enumerated() {
            let p = UnsafeMutablePointer<UInt8>.allocate(capacity: max(a.count, 1))
            a.withUnsafeBufferPointer { if let base = $0.baseAddress { p.update(from: base, count: a.count) } }
            storage.append(p)
            argv[i] = UnsafeRawPointer(p).assumingMemoryBound(to: CChar.self)
            lens[i] = a.count
        }
        try append(Int32(argc), argv, lens)
    }

    // MARK: Private

    private func setUp() throws {
        guard let context else { return }
        if redisSetTimeout(context, RedisConnection.timeval(options.commandTimeout)) != REDIS_OK {
            throw ioError(doing: "setting the command timeout")
        }
        // Over TLS hiredis holds a socketpair; the bridge set keepalive on the TCP socket.
        if options.keepAlive, case .tcp = url.endpoint, url.tls == nil, redisEnableKeepAlive(context) != REDIS_OK {
            throw ioError(doing: "enabling TCP keepalive")
        }
        do {
            try authenticate()
        } catch let e as RedisError where e.code == .io && url.tls != nil {
            // A server that wants a client certificate accepts the TLS 1.3 handshake and sends its
            // alert with the first reply: say that, not "connection closed".
            throw RedisConnection.tlsRefusal(bridge?.failure, tls: url.tls!, server: url.redacted) ?? e
        }
        if url.database != 0 {
            let reply = try command(["SELECT", String(url.database)])
            if case .error(let e) = reply, RedisError.unavailablePrefixes.contains(where: { e.hasPrefix($0) }) {
                throw RedisError.fromReply(e, server: url.redacted, context: "SELECT \(url.database)")
            }
            guard case .status = reply else {
                throw RedisError(.select, server: url.redacted, "SELECT \(url.database) failed: \(reply.shape)",
                                 fix: "use a database index the server has (its 'databases' setting, 16 by default)")
            }
        }
    }

    private func authenticate() throws {
        let server = url.redacted
        if let password = url.password {
            var args = ["AUTH"]
            if let user = url.user { args.append(user) }
            args.append(password)
            let reply = try command(args)
            if case .error(let e) = reply, RedisError.unavailablePrefixes.contains(where: { e.hasPrefix($0) }) {
                throw RedisError.fromReply(e, server: server, context: "AUTH")
            }
            if case .error(let e) = reply {
                let who = url.user.map { "ACL user '\($0)'" } ?? "the default user"
                throw RedisError(.authentication, server: server, "authentication as \(who) failed: \(e)",
                                 fix: url.user == nil
                                    ? "put the server's requirepass in the URL as redis://:PASSWORD@host:port/db (percent-encode @ : / as %40 %3A %2F)"
                                    : "check the password of ACL user '\(url.user!)' (ACL LIST on the server) and put it in the URL as redis://USER:PASSWORD@host:port/db")
            }
            guard case .status = reply else {
                throw RedisError(.unexpectedReply, server: server, "AUTH: expected status OK, got \(reply.shape)")
            }
        }
        // A server that wants a password says so only on the first command: ask now, not mid-stream.
        let ping = try command(["PING"])
        switch ping {
        case .status: return
        case .error(let e) where e.hasPrefix("NOAUTH"):
            throw RedisError(.authentication, server: server, "the server requires a password and the URL gives none (\(e))",
                             fix: "add it to the URL: redis://:PASSWORD@host:port/db, or redis://USER:PASSWORD@host:port/db for an ACL user")
        case .error(let e):
            throw RedisError.fromReply(e, server: server, context: "PING")
        default:
            throw RedisError(.unexpectedReply, server: server, "PING: expected status PONG, got \(ping.shape)")
        }
    }

    private func checkConnected() throws {
        guard let context else {
            throw RedisError(.connect, server: url.redacted, "could not allocate a hiredis context (out of memory)")
        }
        if context.pointee.err != 0 { throw connectError() }
    }

    private func connectError() -> RedisError {
        let reason = context.map { RedisConnection.errstr($0) } ?? "no context"
        let fix: String
        switch url.endpoint {
        case .tcp(let host, let port): fix = "check that redis-server is running and listening on \(host):\(port) (redis-cli -h \(host) -p \(port) ping)"
        case .unix(let path): fix = "check that redis-server is running with unixsocket \(path) and that this user may open it"
        }
        return RedisError(.connect, server: url.redacted, "could not connect: \(reason)", fix: fix)
    }

    private func ioError(doing what: String) -> RedisError {
        var reason = context.map { RedisConnection.errstr($0) } ?? "no context"
        let code = context?.pointee.err ?? 0
        if code == REDIS_ERR_IO && reason.contains("Resource temporarily unavailable") {
            reason = "no reply within the command timeout (\(options.commandTimeout))"
        }
        let kind: String
        switch code {
        case REDIS_ERR_EOF: kind = "server closed the connection"
        case REDIS_ERR_PROTOCOL: kind = "protocol error"
        case REDIS_ERR_OOM: kind = "out of memory"
        case REDIS_ERR_IO: kind = "I/O error"
        default: kind = "error"
        }
        // Over TLS hiredis only sees its socketpair close: add what the bridge saw.
        if let failure = bridge?.failure { reason += " (TLS: \(failure.reason))" }
        return RedisError(.io, server: url.redacted, "\(kind) while \(what): \(reason)")
    }

    static func errstr(_ c: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: c.pointee.errstr) { raw in
            let bytes = raw.prefix { $0 != 0 }
            return bytes.isEmpty ? "unknown error" : String(decoding: bytes, as: UTF8.self)
        }
    }

    static func timeval(_ d: Duration) -> Glibc.timeval { d.timeval }
}
