import PlugboardCore

/// Where a Redis server is and how to log in to it, parsed from a URL.
///
/// Accepted forms (see docs/redis.md):
/// - `redis://[[user]:password@]host[:port][/db]`: TCP; port defaults to 6379, db to 0.
///   `redis://:secret@host` authenticates the default user; `redis://alice:secret@host` an ACL user.
/// - `rediss://...`: the same over TLS (`tls` is set; its files and server name come from the
///   `redis.tls_*` settings, not from the URL).
/// - `unix://[[user]:password@]/path/to/redis.sock[?db=N]`: a unix domain socket.
///
/// User and password may be percent-encoded (`%40` for `@`). `redacted` is the URL with the
/// password replaced by `***`: use it in every log line and error.
public struct RedisURL: Sendable, Equatable, CustomStringConvertible {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case unix(path: String)
    }

    public var endpoint: Endpoint
    public var user: String?
    public var password: String?
    public var database: Int
    /// Non-nil for `rediss://`: connect over TLS with these files and this server name.
    public var tls: RedisTLS?

    public init(endpoint: Endpoint, user: String? = nil, password: String? = nil, database: Int = 0, tls: RedisTLS? = nil) {
        self.endpoint = endpoint
        self.user = user
        self.password = password
        self.database = database
        self.tls = tls
    }

    /// Parses `text`.
    /// - Throws: `RedisError` with code `.invalidURL`, naming the part that is wrong and the accepted forms.
    public init(parsing text: String) throws {
        let forms = "use redis://[user:password@]host:port/db, rediss://[user:password@]host:port/db (TLS) or unix:///path/to/redis.sock?db=N"
        func bad(_ what: String) -> RedisError {
            RedisError(.invalidURL, server: Text.redactingCredentials(text), what, fix: forms)
        }
        let isUnix: Bool
        var isTLS = false
        var rest: Substring
        if text.hasPrefix("redis://") {
            isUnix = false
            rest = text.dropFirst("redis://".count)
        } else if text.hasPrefix("rediss://") {
            isUnix = false
            isTLS = true
            rest = text.dropFirst("rediss://".count)
        } else if text.hasPrefix("unix://") {
            isUnix = true
            rest = text.dropFirst("unix://".count)
        } else {
            throw bad("the URL must start with redis://, rediss:// or unix://")
        }

        // Query (?db=N), only for unix:// where the path takes the place of /db. TLS files are
        // settings (redis.tls_*), not query parameters: one place for each, and no paths in URLs.
        var query: Substring? = nil
        if let q = rest.firstIndex(of: "?") {
            if isTLS {
                throw bad("rediss:// takes no query parameters: set the CA file, client certificate and server name with the redis.tls_* settings (docs/redis.md, \"TLS\")")
            }
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }

        // Userinfo: everything before the last '@' that comes before the path.
        var user: String? = nil
        var password: String? = nil
        let authorityEnd = isUnix ? (rest.firstIndex(of: "/") ?? rest.endIndex) : (rest.firstIndex(of: "/") ?? rest.endIndex)
        if let at = rest[..<authorityEnd].lastIndex(of: "@") {
            let info = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = info.firstIndex(of: ":") {
                let u = String(info[..<colon])
                guard let du = RedisURL.percentDecode(u) else { throw bad("the user name has a bad percent-escape") }
                guard let dp = RedisURL.percentDecode(String(info[info.index(after: colon)...])) else {
                    throw bad("the password has a bad percent-escape")
                }
                user = du.isEmpty ? nil : du
                password = dp
            } else {
                guard let du = RedisURL.percentDecode(String(info)) else { throw bad("the user name has a bad percent-escape") }
                user = du.isEmpty ? nil : du
            }
            if user != nil && password == nil {
                throw bad("a user name needs a password (redis://user:password@host)")
            }
        }

        var database = 0
        let endpoint: Endpoint
        if isUnix {
            guard rest.hasPrefix("/"), rest.count > 1 else { throw bad("unix:// needs an absolute socket path, as in unix:///run/redis/redis.sock") }
            endpoint = .unix(path: String(rest))
        } else {
            var hostPort = rest
            if let slash = rest.firstIndex(of: "/") {
                hostPort = rest[..<slash]
                let db = rest[rest.index(after: slash)...]
                if !db.isEmpty {
                    guard let n = Int(db), n >= 0 else { throw bad("the database '\(db)' after the '/' is not a non-negative integer") }
                    database = n
                }
            }
            var host = String(hostPort)
            var port = 6379
            if hostPort.hasPrefix("[") {  // [ipv6]:port
                guard let close = hostPort.firstIndex(of: "]") else { throw bad("an IPv6 host needs a closing ']'") }
                host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
                let after = hostPort[hostPort.index(after: close)...]
                if after.hasPrefix(":") {
                    guard let p = Int(after.dropFirst()), (1...65535).contains(p) else { throw bad("the port '\(after.dropFirst())' is not a number from 1 to 65535") }
                    port = p
                }
            } else if let colon = hostPort.lastIndex(of: ":") {
                host = String(hostPort[..<colon])
                let p = hostPort[hostPort.index(after: colon)...]
                guard let n = Int(p), (1...65535).contains(n) else { throw bad("the port '\(p)' is not a number from 1 to 65535") }
                port = n
            }
            guard !host.isEmpty else { throw bad("the host is missing") }
            endpoint = .tcp(host: host, port: port)
        }
        if let query {
            for item in query.split(separator: "&") {
                let kv = item.split(separator: "=", maxSplits: 1)
                guard kv.count == 2, kv[0] == "db" else { throw bad("unknown query parameter '\(item)' (only db=N is accepted)") }
                guard let n = Int(kv[1]), n >= 0 else { throw bad("db='\(kv[1])' is not a non-negative integer") }
                database = n
            }
        }
        self.init(endpoint: endpoint, user: user, password: password, database: database, tls: isTLS ? RedisTLS() : nil)
    }

    /// The URL with the password replaced by `***`: safe for logs and error messages.
    public var redacted: String {
        var info = ""
        if password != nil { info = "\(user ?? ""):***@" }
        switch endpoint {
        case .tcp(let host, let port):
            let h = host.contains(":") ? "[\(host)]" : host
            return (tls == nil ? "redis://" : "rediss://") + "\(info)\(h):\(port)/\(database)"
        case .unix(let path):
            return "unix://\(info)\(path)" + (database != 0 ? "?db=\(database)" : "")
        }
    }

    public var description: String { redacted }

    static func percentDecode(_ s: String) -> String? {
        guard s.contains("%") else { return s }
        var out: [UInt8] = []
        var bytes = Array(s.utf8)[...]
        while let b = bytes.popFirst() {
            if b == UInt8(ascii: "%") {
                guard bytes.count >= 2, let v = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16) else { return nil }
                out.append(v)
                bytes = bytes.dropFirst(2)
            } else {
                out.append(b)
            }
        }
        return String(validating: out, as: UTF8.self)
    }
}
