import CHiredis
import Foundation
import Logging

/// Redis Cluster failover: when the node to connect to is gone (a killed master), another node of
/// the cluster is asked which node serves the stream now (the replica promoted in its place); and,
/// with `waitReplicas`, `WAIT` so that an acknowledged entry is on the replicas too and survives
/// that failover (docs/redis.md, "Redis Cluster").
extension PublisherLoop {
    /// Connects to `target`, or, when it cannot be reached and the cluster's nodes are known, to
    /// the first other node that answers (which then becomes `clusterNode`).
    /// - Returns: true when connected to another node than `target`.
    /// - Throws: `target`'s error when no node answers.
    func reachNode(_ target: RedisURL) throws -> Bool {
        do {
            try dial(target)
            if unreachableNode == target { unreachableNode = nil }
            return false
        } catch let error as RedisError where error.isTransient {
            unreachableNode = target
            for node in knownNodes where node != target {
                do { try dial(node) } catch let e as RedisError where e.isTransient { continue }
                logger.warning("a Redis Cluster node is unreachable; asking another node of the cluster which one serves the stream",
                               metadata: ["redis": "\(server)", "unreachable": "\(target.redacted)", "asking": "\(node.redacted)",
                                          "error": "\(error)"])
                clusterNode = node
                return true
            }
            if clusterNode != nil {
                logger.warning("the Redis Cluster node the stream's slot moved to is unreachable, and so is every other known node; asking the configured node again",
                               metadata: ["redis": "\(server)", "node": "\(target.redacted)", "error": "\(error)"])
                clusterNode = nil
            }
            throw error
        }
    }

    /// A connection to `target`: the current one re-made when it points there, else a new one.
    private func dial(_ target: RedisURL) throws {
        if let connection, connection.url == target {
            try connection.reconnect()
        } else {
            connection = try RedisConnection(url: target, options: config.connect)
        }
    }

    /// On a reconnect to a cluster: whether this node serves the stream's slot, asked before the
    /// window is replayed (after a failover or a fallback it often does not). A `MOVED` names
    /// the node that does; a node that still names the unreachable one (the cluster has not failed
    /// over yet), or any other error (`CLUSTERDOWN` meanwhile), is a transient failure: back off.
    /// - Returns: the redirect to follow, or nil when this node serves the slot.
    func probeOwner() throws -> (node: RedisURL, text: String)? {
        guard let connection else { throw RedisError(.io, server: server, "not connected") }
        let reply = try connection.command(["EXISTS", keys.events])
        guard case .error(let e) = reply else { return nil }
        if let node = Self.movedTarget(e, like: config.url) {
            if node != unreachableNode { return (node, e) }
            throw RedisError(.unavailable, server: connection.url.redacted,
                             "EXISTS \(keys.events): the stream's slot is still served by \(node.redacted), which is unreachable; waiting for the cluster to promote a replica (\(e))")
        }
        if e.hasPrefix("ASK ") || RedisError.unavailablePrefixes.contains(where: { e.hasPrefix($0) }) {
            throw RedisError(.unavailable, server: connection.url.redacted, "EXISTS \(keys.events): \(e)")
        }
        // Anything else (an ACL without EXISTS: NOPERM) says nothing about the slot: the XADDs will.
        return nil
    }

    /// Asks the node connected to for the cluster's nodes (`CLUSTER NODES`); keeps the old list when
    /// it gets none (not a cluster, an error). A broken connection shows in the pipeline next.
    func learnNodes() {
        guard let connection, let nodes = try? ClusterNodes.ask(connection, like: config.url), !nodes.isEmpty else { return }
        knownNodes = nodes
    }

    // MARK: WAIT for replicas

    /// With `waitReplicas`, at each connect: records answered but not yet vouched for by a `WAIT`
    /// are sent again (they may be on a master that died before its replicas had them; a replay of
    /// a stored one is a duplicate), and a write on this connection (`SET plugboard:{HOST}:wait`)
    /// makes the next `WAIT` cover everything the node stored before: `WAIT` counts replicas that
    /// have this connection's last write, and a replay answered "duplicate" writes nothing.
    func prepareWaitAfterConnect() throws {
        guard config.waitReplicas > 0, let connection else { return }
        var pos = eventWindow.acked.byte, unsettled: UInt64 = 0
        while pos < eventWindow.sent.byte {
            let r = events.record(at: pos)
            var flags = RecordStore.flags(r.payload)
            if flags.contains(.streamSettled) && !flags.contains(.refused) && !flags.contains(.moved) {
                if eventSettled(flags) { unsettled += 1 }  // counted as published when it settled
                flags.remove(.streamSettled)
                RecordStore.setFlags(r.payload, flags)
            }
            pos = r.next
        }
        if unsettled > 0 { control.published.subtract(unsettled, ordering: .relaxed) }
        pos = pluginWindow.acked.byte
        unsettled = 0
        while pos < pluginWindow.sent.byte {
            let r = plugins.record(at: pos)
            var flags = RecordStore.flags(r.payload)
            if flags.contains(.streamSettled) && !flags.contains(.refused) && !flags.contains(.moved) {
                flags.remove(.streamSettled)
                RecordStore.setFlags(r.payload, flags)
                unsettled += 1
            }
            pos = r.next
        }
        if unsettled > 0 { control.pluginPublished.subtract(unsettled, ordering: .relaxed) }
        // An error reply (MOVED: the XADDs will be redirected too) leaves the WAITs unvouched at worst.
        _ = try connection.command(["SET", keys.waitMark, "\(UInt64(max(0, Date().timeIntervalSince1970 * 1000)))"])
    }

    /// Queues `WAIT waitReplicas waitTimeout` behind a batch.
    func appendWait() throws {
        guard let connection else { return }
        let ms = max(1, config.waitTimeout.components.seconds * 1000 + config.waitTimeout.components.attoseconds / 1_000_000_000_000_000)
        try connection.appendCommand(bytes: [Array("WAIT".utf8), Array("\(config.waitReplicas)".utf8), Array("\(ms)".utf8)])
    }

    /// Reads a batch's `WAIT` reply: true when enough replicas have the batch (and all before it on
    /// this connection); otherwise the batch is not acknowledged and the window is replayed after a
    /// backoff (`retryReason`).
    func readWaitReply() throws -> Bool {
        guard let connection else { throw RedisError(.io, server: server, "not connected") }
        let (count, text) = try connection.withNextReply { r -> (Int?, String) in
            if r.pointee.type == REDIS_REPLY_INTEGER { return (Int(r.pointee.integer), "") }
            if r.pointee.type == REDIS_REPLY_ERROR {
                return (nil, String(decoding: RedisReply.bytes(r.pointee.str, r.pointee.len), as: UTF8.self))
            }
            return (nil, "expected an integer, got \(ReplyOutcome.typeName(r))")
        }
        if let count, count >= config.waitReplicas { return true }
        let why = count.map { "\($0) of \(config.waitReplicas) replica(s) acknowledged the batch within \(config.waitTimeout)" } ?? text
        retryReason = retryReason ?? "WAIT \(config.waitReplicas): \(why)"
        return false
    }
}
