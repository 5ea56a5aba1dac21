/// An error from the Redis side of Plugboard: a bad URL, a refused connection, a failed AUTH,
/// a reply of the wrong shape. Every message names the server (the URL with its password
/// replaced by `***`), says what happened and, where there is one, what to do about it.
public struct RedisError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What kind of failure this is; decides whether the publisher retries.
    public enum Code: String, Sendable, Equatable {
        /// The URL could not be parsed. Not retried.
        case invalidURL
        /// TCP/unix connect failed (refused, unreachable, timed out). Retried with backoff.
        case connect
        /// AUTH failed, or the server wants a password the URL does not give. Not fixed by retrying alone.
        case authentication
        /// rediss://: the server's certificate was not accepted (unknown CA, wrong name, expired), a
        /// CA/certificate/key file is unreadable, the port does not speak TLS, or the server refused
        /// our client certificate. Not fixed by retrying alone.
        case tls
        /// SELECT failed (database index out of range). Not fixed by retrying alone.
        case select
        /// The connection broke while sending or reading (I/O error, EOF, timeout). Retried.
        case io
        /// The server is up but cannot serve yet (LOADING its dataset, BUSY script, MASTERDOWN). Retried.
        case unavailable
        /// Redis answered with an error reply (`-ERR ...`, `-WRONGTYPE ...`).
        case server
        /// Redis answered with a reply whose type or shape the caller did not expect.
        case unexpectedReply
        /// A key holds a value of the wrong type for what Plugboard stores there.
        case wrongType
    }

    public var code: Code
    /// The server, as a URL without its password (`RedisURL.redacted`).
    public var server: String
    /// What happened, for a person reading a log.
    public var message: String
    /// What to do about it, when there is something to do.
    public var fix: String?

    public init(_ code: Code, server: String, _ message: String, fix: String? = nil) {
        self.code = code
        self.server = server
        self.message = message
        self.fix = fix
    }

    public var description: String {
        var text = "redis \(server): \(message)"
        if let fix { text += (text.hasSuffix(".") ? " " : ". ") + "Fix: \(fix)" }
        return text
    }

    /// True for failures that a reconnect may cure (connect, I/O, a loading server). AUTH, SELECT and wrong types
    /// are configuration problems: the publisher still retries them (the server may be fixed
    /// under it) but logs them as errors, and `start` refuses them up front.
    public var isTransient: Bool {
        switch code {
        case .connect, .io, .unavailable: return true
        default: return false
        }
    }
}

extension RedisError {
    /// Error replies that go away by themselves: the server is loading, busy or failing over.
    static let unavailablePrefixes = ["LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"]

    /// `.unavailable` for a transient error reply, else `fallback`.
    static func fromReply(_ e: String, server: String, context: String, fallback: Code = .server) -> RedisError {
        let code: Code = unavailablePrefixes.contains(where: { e.hasPrefix($0) }) ? .unavailable
            : e.hasPrefix("WRONGTYPE") ? .wrongType : fallback
        return RedisError(code, server: server, "\(context): \(e)")
    }
}
