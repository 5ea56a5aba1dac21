import Logging
import PlugboardCore

/// Connecting, marking Redis down, and reconnecting with backoff.
extension PublisherLoop {
    /// The first attempt, on the caller of `start`. Unreachable is fine (we spill); a wrong
    /// password, database or key type is thrown so the daemon fails with the reason.
    func connectAtStart() throws {
        do {
            try connect()
            logger.info("publishing to Redis", metadata: ["redis": "\(server)", "stream": "\(keys.events)",
                                                         "mode": "\(config.mode.rawValue)"])
        } catch let error as RedisError where error.isTransient {
            markDown(error, wasConnected: false)
            logger.warning("Redis is not reachable; starting anyway, spilling up to \(byteCount(config.spillBytes)) of events and retrying with backoff",
                           metadata: ["redis": "\(server)", "error": "\(error)"])
        }
    }

    /// Connects (following cluster redirects), learns the ID epoch on the first connect, and
    /// rewinds both windows so everything unacknowledged is replayed with its IDs.
    func connect() throws {
        // Redis Cluster: the node a MOVED named, else the configured one; when that one is
        // unreachable, another known node, which says (MOVED) where the stream is served now.
        for hop in 0...PublisherLoop.maxRedirects {
            let fellBack = try reachNode(clusterNode ?? config.url)
            if epochMs == nil {
                switch try determineEpoch() {
                case .epoch(let ms):
                    epochMs = ms
                case .moved(let node, let text):
                    guard hop < PublisherLoop.maxRedirects else {
                        throw RedisError(.server, server: server, "XINFO STREAM \(keys.events): \(text) (after \(hop) redirects)",
                                         fix: "check the cluster's slot table (redis-cli --cluster check)")
                    }
                    if node == unreachableNode {
                        throw RedisError(.unavailable, server: server, "XINFO STREAM \(keys.events): \(text): that node is unreachable; waiting for the cluster to promote a replica")
                    }
                    follow(node, because: text)
                    continue
                }
            } else if fellBack || !knownNodes.isEmpty, let redirect = try probeOwner() {
                // A cluster: ask before replaying the window whether this node serves the stream.
                guard hop < PublisherLoop.maxRedirects else {
                    throw RedisError(.unavailable, server: server, "EXISTS \(keys.events): \(redirect.text) (after \(hop) redirects)")
                }
                follow(redirect.node, because: redirect.text)
                continue
            }
            break
        }
        learnNodes()
        try prepareWaitAfterConnect()
        let inFlight = eventWindow.unacknowledgedSent + pluginWindow.unacknowledgedSent
        if inFlight > 0 { control.replayed.add(inFlight, ordering: .relaxed) }
        eventWindow.rewindToAcked()
        pluginWindow.rewindToAcked()
        failedEvents.removeAll()
        failedPlugins.removeAll()
        connected = true
        control.connected.store(true, ordering: .releasing)
        backoff.reset()
        failedAttempts = 0
    }

    /// The connection broke, or Redis answered with a retryable error: spill from now on and
    /// schedule the next attempt after a backoff.
    func markDown(_ error: any Error, wasConnected: Bool) {
        connected = false
        control.connected.store(false, ordering: .releasing)
        let text = "\(error)"
        control.lastError.withLock { $0 = text }
        failedAttempts += 1
        nextAttemptNs = monotonicNanos() + backoff.next()
        if wasConnected {
            spilledThisOutage = 0
            droppedThisOutage = 0
            // A redirect is logged where it is followed; a refusal is not a lost connection.
            if pendingRedirect != nil { return }
            let what = error is Retry ? "Redis refused commands with a retryable error" : "lost the connection to Redis"
            logger.warning("\(what); spilling up to \(byteCount(config.spillBytes)) of events, reconnecting with backoff",
                           metadata: ["redis": "\(server)", "error": "\(text)",
                                      "in_flight": "\(eventWindow.unacknowledgedSent)", "pending": "\(eventWindow.unsettled)"])
        }
    }

    func attemptReconnect() {
        do {
            try connect()
            control.reconnects.add(1, ordering: .relaxed)
            logger.info("reconnected to Redis; replaying the unacknowledged window and the spill buffer",
                        metadata: ["redis": "\(server)", "spilled": "\(spilledThisOutage)",
                                   "dropped": "\(droppedThisOutage)", "pending": "\(eventWindow.unsettled)"])
        } catch {
            markDown(error, wasConnected: false)
            let transient = (error as? RedisError)?.isTransient ?? true
            if !transient {
                logger.error("cannot publish to Redis: \(error)", metadata: ["redis": "\(server)"])
            } else if failedAttempts == 1 || failedAttempts % 10 == 0 {
                logger.warning("Redis still unreachable", metadata: [
                    "redis": "\(server)", "attempts": "\(failedAttempts)", "error": "\(error)",
                    "spilled": "\(spilledThisOutage)", "dropped": "\(droppedThisOutage)"])
            }
        }
    }
}
