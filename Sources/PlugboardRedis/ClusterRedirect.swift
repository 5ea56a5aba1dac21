/// A Redis Cluster redirect reply: `MOVED <slot> <host>:<port>` (the slot lives on that node now)
/// or `ASK <slot> <host>:<port>` (it is migrating there, and this key already left).
/// The publisher and `plugboard tail` both follow them (docs/redis.md, "Redis Cluster").
public struct ClusterRedirect: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case moved, ask }
    public var kind: Kind
    public var slot: Int
    /// The node to ask, with the credentials, database and TLS settings of the URL it came from.
    public var node: RedisURL

    /// Parses an error reply; nil when it is not a readable redirect.
    /// - Parameter url: the URL whose credentials and TLS the node keeps, and whose host an
    ///   empty host (`MOVED 3999 :6381`) means.
    public init?(_ text: String, like url: RedisURL) {
        let parts = text.split(separator: " ")
        guard parts.count == 3, let slot = Int(parts[1]), let colon = parts[2].lastIndex(of: ":"),
              let port = Int(parts[2][parts[2].index(after: colon)...]), (1...65535).contains(port) else { return nil }
        switch parts[0] {
        case "MOVED": kind = .moved
        case "ASK": kind = .ask
        default: return nil
        }
        var host = String(parts[2][..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty, case .tcp(let seedHost, _) = url.endpoint { host = seedHost }
        self.slot = slot
        node = RedisURL(endpoint: .tcp(host: host, port: port), user: url.user, password: url.password, database: url.database,
                        tls: url.tls)
    }
}
