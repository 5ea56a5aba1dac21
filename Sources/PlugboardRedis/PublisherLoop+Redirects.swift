import Logging

/// Redis Cluster: all of this host's keys share one slot (`{HOST}`), so a `MOVED` reply means
/// the whole publisher moves to the node it names (docs/redis.md, "Redis Cluster").
extension PublisherLoop {
    /// Redis Cluster redirects followed in a row before giving up (a slot table in flux).
    static let maxRedirects = 5

    /// Points the next connection at the cluster node a `MOVED` named (same credentials and
    /// database), counted and logged.
    func follow(_ node: RedisURL, because text: String) {
        clusterNode = node
        control.redirects.add(1, ordering: .relaxed)
        logger.notice("Redis Cluster: the stream's slot is served by another node; following the redirect",
                      metadata: ["redis": "\(server)", "node": "\(node.redacted)", "reply": "\(text)"])
    }

    /// The node of a `MOVED <slot> <host>:<port>` reply, with the configured credentials.
    static func movedTarget(_ text: String, like url: RedisURL) -> RedisURL? {
        guard let redirect = ClusterRedirect(text, like: url), redirect.kind == .moved else { return nil }
        return redirect.node
    }

    /// A MOVED reply: the command was not executed, like a retryable error, and the connection
    /// is then re-made to the named node (all of this host's keys share one slot: `{HOST}`).
    func redirected(_ text: String, command: String) {
        retryReason = retryReason ?? "\(command): \(text)"
        if pendingRedirect == nil, let node = Self.movedTarget(text, like: config.url) { pendingRedirect = (node, text) }
    }
}
