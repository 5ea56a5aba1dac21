/// Finds the hosts that publish to a Redis server or cluster: the keys `plugboard:{HOST}:events`
/// whose HOST matches a glob, with `SCAN ... MATCH ... TYPE stream` on the server, or on every
/// master of a Redis Cluster (`CLUSTER NODES`), since each node holds only its own slots' keys.
public enum StreamDiscovery {
    /// The hosts whose event stream exists and whose name matches `pattern` (Redis glob: `*`, `?`,
    /// `[a-z]`, `\` to escape), sorted.
    /// - Throws: `RedisError` (connection, authentication, a refused SCAN).
    /// - Parameter alternatives: Redis Cluster nodes to ask for the node list when `url` is unreachable.
    public static func hosts(matching pattern: String, url: RedisURL, alternatives: [RedisURL] = [],
                             options: RedisConnectOptions = RedisConnectOptions()) throws -> [String] {
        let match = StreamKeys(host: pattern).events
        let prefix = "plugboard:{", suffix = "}:events"
        var found = Set<String>()
        for node in try nodes(url: url, alternatives: alternatives, options: options) {
            let connection = try RedisConnection(url: node, options: options)
            var cursor = "0"
            repeat {
                let reply = try connection.command(["SCAN", cursor, "MATCH", match, "TYPE", "stream", "COUNT", "1000"])
                guard case .array(let parts) = reply, parts.count == 2, let next = parts[0].text,
                      case .array(let keys) = parts[1] else {
                    if case .error(let e) = reply { throw RedisError.fromReply(e, server: node.redacted, context: "SCAN MATCH \(match)") }
                    throw RedisError(.unexpectedReply, server: node.redacted, "SCAN MATCH \(match): expected [cursor, keys], got \(reply.shape)")
                }
                for k in keys {
                    guard let key = k.text, key.hasPrefix(prefix), key.hasSuffix(suffix),
                          key.count > prefix.count + suffix.count else { continue }
                    found.insert(String(key.dropFirst(prefix.count).dropLast(suffix.count)))
                }
                cursor = next
            } while cursor != "0"
        }
        return found.sorted()
    }

    /// The servers to scan: every master of a cluster that is not failing, or the one server
    /// when it is not a cluster node. Each keeps `url`'s credentials, database and TLS settings.
    /// When `url` cannot be reached, the first of `alternatives` that can is asked instead.
    public static func nodes(url: RedisURL, alternatives: [RedisURL] = [],
                             options: RedisConnectOptions = RedisConnectOptions()) throws -> [RedisURL] {
        let connection: RedisConnection
        do {
            connection = try RedisConnection(url: url, options: options)
        } catch let e as RedisError where e.isTransient && !alternatives.isEmpty {
            guard let reached = alternatives.lazy.compactMap({ try? RedisConnection(url: $0, options: options) }).first else { throw e }
            connection = reached
        }
        let reply = try connection.command(["CLUSTER", "NODES"])
        if case .error(let e) = reply {
            // "ERR This instance has cluster support disabled": a single server.
            if e.contains("cluster support disabled") { return [url] }
            throw RedisError.fromReply(e, server: url.redacted, context: "CLUSTER NODES")
        }
        guard let text = reply.text else {
            throw RedisError(.unexpectedReply, server: url.redacted, "CLUSTER NODES: expected text, got \(reply.shape)")
        }
        let out = ClusterNodes.parse(text, like: url, mastersOnly: true)
        return out.isEmpty ? [url] : out
    }
}
