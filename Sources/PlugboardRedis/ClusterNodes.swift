/// The nodes of a Redis Cluster, as `CLUSTER NODES` lists them: where the publisher and `tail` turn
/// when the node they talk to is gone (a killed master: any live node then redirects to the replica
/// promoted in its place), and the masters `tail --host-pattern` scans (docs/redis.md, "Redis Cluster").
public enum ClusterNodes {
    /// The nodes in a `CLUSTER NODES` reply that are not failing, masters first, each with `url`'s
    /// credentials, database and TLS settings (an empty host means `url`'s).
    /// - Parameter mastersOnly: leave the replicas out.
    public static func parse(_ text: String, like url: RedisURL, mastersOnly: Bool = false) -> [RedisURL] {
        var masters: [RedisURL] = [], replicas: [RedisURL] = []
        // <id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count >= 8 else { continue }
            let flags = f[2].split(separator: ",")
            guard !flags.contains("fail"), !flags.contains("noaddr"), !flags.contains("handshake"),
                  let node = ClusterRedirect("MOVED 0 \(f[1].prefix { $0 != "@" })", like: url)?.node else { continue }
            if flags.contains("master") { masters.append(node) } else if !mastersOnly { replicas.append(node) }
        }
        return masters + replicas
    }

    /// Asks `connection` for the cluster's nodes. [] when the server is not a cluster node, or
    /// when the answer is an error or unreadable: knowing the nodes is a help, never a condition.
    /// - Throws: only a broken connection (`RedisError`, `.io`).
    public static func ask(_ connection: RedisConnection, like url: RedisURL) throws -> [RedisURL] {
        guard let text = try connection.command(["CLUSTER", "NODES"]).text else { return [] }
        return parse(text, like: url)
    }
}
