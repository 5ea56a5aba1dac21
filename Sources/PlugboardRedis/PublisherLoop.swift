import CHiredis
import CPlugboard
import Foundation
import Logging
import PlugboardCore

/// The publisher thread's state machine. Owned by that thread alone (see `LoopHandoff`).
///
/// Events move through one `RecordStore` as four positions, `acked <= read <= sent <= stored` (byte
/// positions, with matching counts `...N`): `[read, sent)` is the window of commands sent but not
/// yet answered, `[sent, stored)` waits to be sent: the next pipeline while connected, the spill
/// buffer while Redis is down. `[acked, read)` holds answered records kept only because an older
/// one is not settled yet (a retryable error). After a reconnect `sent` and `read` go back to
/// `acked`, so the window is replayed with the same IDs; settled records are skipped.
final class PublisherLoop {
    private let config: RedisPublisher.Configuration
    private let control: PublisherControl
    private let logger: Logger
    private let keys: StreamKeys
    private let source: any EventBatchSource
    private let pluginSource: (any PluginOutputSource)?
    private let encoder: CommandEncoder
    private let server: String

    private let events: RecordStore
    private var eAcked: UInt64 = 0, eRead: UInt64 = 0, eSent: UInt64 = 0, eStored: UInt64 = 0
    private var eAckedN: UInt64 = 0, eReadN: UInt64 = 0, eSentN: UInt64 = 0, eStoredN: UInt64 = 0
    private let plugins: RecordStore
    private var pAcked: UInt64 = 0, pRead: UInt64 = 0, pSent: UInt64 = 0, pStored: UInt64 = 0
    private var pAckedN: UInt64 = 0, pReadN: UInt64 = 0, pSentN: UInt64 = 0, pStoredN: UInt64 = 0
    /// The first retryable error of the replies being read; once every reply in flight is read,
    /// the connection is dropped and the unsettled records are replayed after a backoff.
    private var retryReason: String?
    /// Records whose XADD got a retryable error in the replies read since the last reconnect and
    /// are not resolved yet: events by position; plugin records by position and stream name.
    private var failedEvents: [UInt64] = []
    private var failedPlugins: [(position: UInt64, name: [UInt8])] = []
    /// The highest sequence first sent in the current epoch, events and plugin records.
    private var lastEventSequenceSent: UInt64 = 0
    private var lastPluginSequenceSent: UInt64 = 0
    private var epochBumps = 0
    /// Redis Cluster: the node serving the stream's slot, when a MOVED said it is not the configured one.
    private var clusterNode: RedisURL?
    /// Set while reading replies when one was a MOVED: followed once every reply in flight is read.
    private var pendingRedirect: (node: RedisURL, text: String)?
    private var pluginSequence: UInt64 = 0

    private var connection: RedisConnection?
    private var connected = false
    private var epochMs: UInt64?
    private var backoff: Backoff
    private var nextAttemptNs: UInt64 = 0
    private var failedAttempts = 0
    private var sourceFinished = false
    private var droppedThisOutage: UInt64 = 0
    private var spilledThisOutage: UInt64 = 0
    private var rejectedLogged: UInt64 = 0
    private let batch: UnsafeMutablePointer<UnsafePointer<pb_event>?>

    init(configuration: RedisPublisher.Configuration, control: PublisherControl, logger: Logger,
         source: any EventBatchSource, pluginSource: (any PluginOutputSource)?) {
        self.config = configuration
        self.control = control
        self.logger = logger
        self.keys = StreamKeys(host: configuration.host)
        self.source = source
        self.pluginSource = pluginSource
        self.encoder = CommandEncoder(keys: keys, maxLength: configuration.maxLength)
        self.server = configuration.url.redacted
        self.events = RecordStore(capacity: configuration.spillBytes)
        self.plugins = RecordStore(capacity: max(configuration.pluginBytes, 2 * (configuration.pluginMaxRecord + 64)))
        self.backoff = Backoff(base: configuration.backoffBase, max: configuration.backoffMax)
        let maxBatch = max(1, configuration.maxBatch)
        batch = .allocate(capacity: maxBatch)
        batch.initialize(repeating: nil, count: maxBatch)
    }

    deinit {
        batch.deallocate()
    }

    // MARK: Connecting

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

    private func connect() throws {
        // Redis Cluster: the node a MOVED named, else the configured one. A redirect target that
        // cannot be reached is forgotten, so the next attempt asks the configured node again.
        for hop in 0...PublisherLoop.maxRedirects {
            let target = clusterNode ?? config.url
            do {
                if let connection, connection.url == target {
                    try connection.reconnect()
                } else {
                    connection = try RedisConnection(url: target, options: config.connect)
                }
            } catch let error as RedisError where clusterNode != nil && error.isTransient {
                logger.warning("the Redis Cluster node the stream's slot moved to is unreachable; asking the configured node again",
                               metadata: ["redis": "\(server)", "node": "\(target.redacted)", "error": "\(error)"])
                clusterNode = nil
                throw error
            }
            if epochMs != nil { break }
            switch try determineEpoch() {
            case .epoch(let ms):
                epochMs = ms
            case .moved(let node, let text):
                guard hop < PublisherLoop.maxRedirects else {
                    throw RedisError(.server, server: server, "XINFO STREAM \(keys.events): \(text) (after \(hop) redirects)",
                                     fix: "check the cluster's slot table (redis-cli --cluster check)")
                }
                follow(node, because: text)
                continue
            }
            break
        }
        let inFlight = (eSentN - eAckedN) + (pSentN - pAckedN)
        if inFlight > 0 { control.replayed.add(inFlight, ordering: .relaxed) }
        eSent = eAcked
        eSentN = eAckedN
        eRead = eAcked
        eReadN = eAckedN
        pSent = pAcked
        pSentN = pAckedN
        pRead = pAcked
        pReadN = pAckedN
        failedEvents.removeAll()
        failedPlugins.removeAll()
        connected = true
        control.connected.store(true, ordering: .releasing)
        backoff.reset()
        failedAttempts = 0
    }

    private enum EpochAnswer { case epoch(UInt64), moved(RedisURL, String) }

    /// Redis Cluster redirects followed in a row before giving up (a slot table in flux).
    private static let maxRedirects = 5

    /// Points the next connection at the cluster node a `MOVED` named (same credentials and
    /// database), counted and logged.
    private func follow(_ node: RedisURL, because text: String) {
        clusterNode = node
        control.redirects.add(1, ordering: .relaxed)
        logger.notice("Redis Cluster: the stream's slot is served by another node; following the redirect",
                      metadata: ["redis": "\(server)", "node": "\(node.redacted)", "reply": "\(text)"])
    }

    /// The node of a `MOVED <slot> <host>:<port>` reply, with the configured credentials.
    static func movedTarget(_ text: String, like url: RedisURL) -> RedisURL? {
        let parts = text.split(separator: " ")
        guard parts.count == 3, parts[0] == "MOVED", let colon = parts[2].lastIndex(of: ":"),
              let port = Int(parts[2][parts[2].index(after: colon)...]), (1...65535).contains(port) else { return nil }
        var host = String(parts[2][..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty, case .tcp(let seedHost, _) = url.endpoint { host = seedHost }  // "MOVED 3999 :6381": same host
        return RedisURL(endpoint: .tcp(host: host, port: port), user: url.user, password: url.password, database: url.database)
    }

    /// The ms part of every ID this run: now, or one past the stream's last ID if that is later
    /// (a clock that went backwards, or a previous run within the same millisecond).
    private func determineEpoch() throws -> EpochAnswer {
        guard let connection else { throw RedisError(.io, server: server, "not connected") }
        let now = UInt64(max(0, Date().timeIntervalSince1970 * 1000))
        let reply = try connection.command(["XINFO", "STREAM", keys.events])
        var lastMs: UInt64 = 0
        switch reply {
        case .error(let e) where e.contains("no such key"):
            lastMs = 0
        case .error(let e) where e.hasPrefix("MOVED "):
            guard let node = Self.movedTarget(e, like: config.url) else {
                throw RedisError(.unexpectedReply, server: server, "XINFO STREAM \(keys.events): unreadable redirect \"\(e)\"")
            }
            return .moved(node, e)
        case .error(let e) where e.hasPrefix("WRONGTYPE"):
            throw RedisError(.wrongType, server: server, "key \(keys.events) holds a value that is not a stream (\(e))",
                             fix: "delete it (redis-cli DEL '\(keys.events)') or publish under another host name")
        case .error(let e) where e.hasPrefix("NOAUTH"):
            throw RedisError(.authentication, server: server, "XINFO STREAM \(keys.events): \(e)",
                             fix: "add the password to the URL: redis://[USER]:PASSWORD@host:port/db")
        case .array(let items):
            var i = 0
            var found: String?
            while i + 1 < items.count {
                if items[i].text == "last-generated-id" { found = items[i + 1].text }
                i += 2
            }
            guard let found, let dash = found.firstIndex(of: "-"), let ms = UInt64(found[..<dash]) else {
                throw RedisError(.unexpectedReply, server: server,
                                 "XINFO STREAM \(keys.events): no readable last-generated-id in an array of \(items.count)")
            }
            lastMs = ms
        case .error(let e):
            throw RedisError.fromReply(e, server: server, context: "XINFO STREAM \(keys.events)")
        default:
            throw RedisError(.unexpectedReply, server: server,
                             "XINFO STREAM \(keys.events): expected an array or an error, got \(reply.shape)")
        }
        return .epoch(max(now, lastMs + 1))
    }

    private func markDown(_ error: any Error, wasConnected: Bool) {
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
                                      "in_flight": "\(eSentN - eAckedN)", "pending": "\(eStoredN - eAckedN)"])
        }
    }

    private func attemptReconnect() {
        do {
            try connect()
            control.reconnects.add(1, ordering: .relaxed)
            logger.info("reconnected to Redis; replaying the unacknowledged window and the spill buffer",
                        metadata: ["redis": "\(server)", "spilled": "\(spilledThisOutage)",
                                   "dropped": "\(droppedThisOutage)", "pending": "\(eStoredN - eAckedN)"])
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

    // MARK: The loop

    func run() {
        // The ring wakes us (futex) when events come; plugin output has no wakeup, so poll it each ms.
        let idleWaitNs: UInt64 = pluginSource == nil ? 20_000_000 : 1_000_000
        while true {
            let stopping = control.stopRequested.load(ordering: .acquiring)
            let took = sourceFinished ? 0 : intake()
            let pluginTook = drainPlugins()
            var sent = false
            if connected {
                if eSentN < eStoredN || pSentN < pStoredN || inFlightBatches > 0 {
                    pump()
                    sent = true
                }
            } else if monotonicNanos() >= nextAttemptNs {
                attemptReconnect()
            }
            let pending = (eStoredN - eAckedN) + (pStoredN - pAckedN)
            control.pending.store(eStoredN - eAckedN, ordering: .relaxed)
            control.pluginPending.store(pStoredN - pAckedN, ordering: .relaxed)
            if pending == 0 && took == 0 && pluginTook == 0 {
                control.idleGeneration.add(1, ordering: .releasing)
                // A finished ring is not the end: plugins publish their last records while they
                // shut down, after the ring drained. Only `stop` ends the thread.
                if stopping { break }
            }
            if stopping && monotonicNanos() >= control.stopDeadlineNs.load(ordering: .acquiring) {
                if pending > 0 {
                    logger.error("stopping with events not delivered to Redis", metadata: [
                        "redis": "\(server)", "undelivered": "\(eStoredN - eAckedN)",
                        "plugin_undelivered": "\(pStoredN - pAckedN)"])
                }
                break
            }
            if !sent && took == 0 && pluginTook == 0 {
                if sourceFinished {
                    usleep(1000)  // a closed ring's wait returns at once
                } else if connected {
                    source.wait(timeoutNanoseconds: idleWaitNs)
                } else {
                    let untilAttempt = Int64(nextAttemptNs) - Int64(monotonicNanos())
                    source.wait(timeoutNanoseconds: UInt64(max(100_000, min(untilAttempt, 20_000_000))))
                }
            }
        }
        control.connected.store(false, ordering: .releasing)
        control.exited.store(true, ordering: .releasing)
        connection = nil
    }

    /// Takes events from the source into the store. Connected: only as many as surely fit
    /// (back-pressure; the ring laps us if Redis is too slow, and says so). Down: everything,
    /// dropping what does not fit in the spill buffer, counted and logged.
    private func intake() -> Int {
        var room = config.maxBatch
        if connected {
            let free = UInt64(events.capacity) - (eStored - eAcked)
            room = min(room, Int(free / UInt64(Int(PB_EVENT_MAX_SIZE) + RecordStore.headerSize + 16)))
            if room == 0 { return 0 }
        }
        switch source.poll(max: room, into: batch) {
        case .events(let n):
            guard n > 0 else { return 0 }
            let (storedBefore, storedNBefore) = (eStored, eStoredN)
            var dropped: UInt64 = 0
            for i in 0..<n {
                guard let e = batch[i] else { continue }
                if let next = events.storeEvent(e, stored: eStored, acked: eAcked) {
                    eStored = next
                    eStoredN += 1
                } else {
                    dropped += 1
                }
            }
            if !source.commit() {
                // The producer overwrote the batch while we copied it: the copies may be torn.
                eStored = storedBefore
                eStoredN = storedNBefore
                control.lapped.add(UInt64(n), ordering: .relaxed)
                logger.warning("the Redis publisher was lapped while reading a batch; the batch is skipped",
                               metadata: ["missed": "\(n)", "redis": "\(server)"])
                return n
            }
            if !connected {
                let spilled = UInt64(n) - dropped
                spilledThisOutage += spilled
                control.spilled.add(spilled, ordering: .relaxed)
            }
            if dropped > 0 {
                control.dropped.add(dropped, ordering: .relaxed)
                let before = droppedThisOutage
                droppedThisOutage += dropped
                // The first drop of an outage, then each time the count doubles: loud, not a flood.
                if before == 0 || before.leadingZeroBitCount != droppedThisOutage.leadingZeroBitCount {
                    logger.error("Redis is down and the spill buffer is full: dropping events", metadata: [
                        "redis": "\(server)", "spill_bytes": "\(events.capacity)",
                        "spilled_this_outage": "\(spilledThisOutage)",
                        "dropped_this_outage": "\(droppedThisOutage)",
                        "dropped_total": "\(control.dropped.load(ordering: .relaxed))"])
                }
            }
            return n
        case .empty:
            return 0
        case .lapped(let missed):
            control.lapped.add(missed, ordering: .relaxed)
            logger.warning("the Redis publisher fell a whole ring behind; events skipped",
                           metadata: ["missed": "\(missed)", "redis": "\(server)"])
            return 1
        case .finished:
            sourceFinished = true
            return 0
        }
    }

    private func drainPlugins() -> Int {
        guard let pluginSource else { return 0 }
        // Take only what surely fits; the OutputQueue holds (and counts) the rest.
        let worst = UInt64(PluginRecord.headerSize + config.pluginMaxRecord + RecordStore.headerSize + 16)
        let room = min(config.maxBatch, Int((UInt64(plugins.capacity) - (pStored - pAcked)) / worst))
        if room <= 0 { return 0 }
        return pluginSource.drain(max: room) { name, topic, data in
            pluginSequence += 1
            let size = PluginRecord.size(name: name.count, topic: topic.count, data: data.count)
            guard size - PluginRecord.headerSize <= config.pluginMaxRecord, name.count <= Int(UInt16.max),
                  topic.count <= Int(UInt16.max),
                  let (slot, next) = plugins.reserve(length: size, stored: pStored, acked: pAcked) else {
                control.pluginRejected.add(1, ordering: .relaxed)
                logger.error("plugin output record larger than the Redis publisher accepts; dropped", metadata: [
                    "plugin": "\(String(decoding: name, as: UTF8.self))", "bytes": "\(size - PluginRecord.headerSize)",
                    "limit": "\(config.pluginMaxRecord)"])
                return
            }
            PluginRecord.write(into: slot, sequence: pluginSequence, name: name, topic: topic, data: data)
            pStored = next
            pStoredN += 1
        }
    }

    // MARK: Pipelines

    private enum Outcome { case ok, duplicate, retry(String), moved(String), rejected(String) }

    private struct Retry: Error, CustomStringConvertible {
        var description: String
    }

    /// Moves the pipeline one step. Up to two batches are in flight: batch k+1 is encoded and
    /// queued while Redis still works on batch k, and `redisGetReply` for batch k then writes
    /// k+1 out before reading, so the publisher and the server run in parallel. A broken
    /// connection or a retryable server error marks Redis down; the unanswered window is
    /// replayed after the reconnect.
    private func pump() {
        do {
            var appended = false
            if inFlightBatches < PublisherLoop.maxBatchesInFlight && (eSentN < eStoredN || pSentN < pStoredN) {
                try appendBatch()
                appended = true
            }
            if inFlightBatches == PublisherLoop.maxBatchesInFlight || (!appended && inFlightBatches > 0) {
                try readOldestBatch()
            }
            if let why = retryReason {
                // Read every reply still in flight first: then each record's fate is known, and a
                // failed one that a later entry overtook has been reissued (`reissueFailedEvents`).
                while inFlightBatches > 0 { try readOldestBatch() }
                throw Retry(description: why)
            }
        } catch {
            retryReason = nil
            inFlightBatches = 0
            batchHead = 0
            markDown(error, wasConnected: true)
            if let redirect = pendingRedirect {
                pendingRedirect = nil
                follow(redirect.node, because: redirect.text)
                nextAttemptNs = 0  // a redirect is not an outage: reconnect at once
            }
        }
    }

    private static let maxBatchesInFlight = 2
    /// Sizes (events, plugin records) of the batches in flight, oldest at `batchHead`.
    private var batchSizes: [(events: Int, plugins: Int)] = Array(repeating: (0, 0), count: 2)
    /// When each batch in flight was handed to the socket (ns), for the publish-latency histogram.
    private var batchSentAt: [UInt64] = Array(repeating: 0, count: 2)
    private var batchHead = 0
    private var inFlightBatches = 0

    /// Encodes and queues up to maxBatch waiting events and maxBatch plugin records.
    private func appendBatch() throws {
        guard let connection, epochMs != nil else { return }
        let nE = Int(min(UInt64(config.maxBatch), eStoredN - eSentN))
        let nP = Int(min(UInt64(config.maxBatch), pStoredN - pSentN))
        let stream = config.mode.usesStream
        let channel = config.mode.usesChannel
        var pos = eSent
        for _ in 0..<nE {
            let r = events.record(at: pos)
            let flags = RecordStore.flags(r.payload)
            let e = r.payload.assumingMemoryBound(to: pb_event.self)
            let sendX = stream && !flags.contains(.streamSettled)
            let sendP = channel && !flags.contains(.channelSettled)
            if sendX || sendP {
                let epoch = sendEpoch(r.payload, sequence: e.pointee.sequence, plugin: false)
                if sendX {
                    let argc = encoder.encodeXADD(e, epochMs: epoch)
                    try connection.append(argc, encoder.argv, encoder.lengths)
                }
                if sendP {
                    let argc = encoder.encodePUBLISH(e, epochMs: epoch, valuesFresh: sendX)
                    try connection.append(argc, encoder.argv, encoder.lengths)
                }
            }
            pos = r.next
        }
        eSent = pos
        eSentN += UInt64(nE)
        pos = pSent
        for _ in 0..<nP {
            let r = plugins.record(at: pos)
            let flags = RecordStore.flags(r.payload)
            if !flags.contains(.streamSettled) {
                let rec = PluginRecord(reading: r.payload)
                let argc = encoder.encodePluginXADD(rec, epochMs: sendEpoch(r.payload, sequence: rec.sequence, plugin: true))
                try connection.append(argc, encoder.argv, encoder.lengths)
            }
            pos = r.next
        }
        pSent = pos
        pSentN += UInt64(nP)
        batchSizes[(batchHead + inFlightBatches) % PublisherLoop.maxBatchesInFlight] = (nE, nP)
        batchSentAt[(batchHead + inFlightBatches) % PublisherLoop.maxBatchesInFlight] = monotonicNanos()
        inFlightBatches += 1
    }

    /// Reads every reply of the oldest batch in flight, in order, and acknowledges its records.
    private func readOldestBatch() throws {
        guard let connection else { return }
        let (nE, nP) = batchSizes[batchHead]
        let stream = config.mode.usesStream
        let channel = config.mode.usesChannel
        var published: UInt64 = 0, duplicates: UInt64 = 0, rejected: UInt64 = 0, channelAcks: UInt64 = 0
        defer {
            control.published.add(published, ordering: .relaxed)
            control.duplicates.add(duplicates, ordering: .relaxed)
            control.rejected.add(rejected, ordering: .relaxed)
            control.channelPublished.add(channelAcks, ordering: .relaxed)
        }
        for _ in 0..<nE {
            let r = events.record(at: eRead)
            let before = RecordStore.flags(r.payload)
            var flags = before
            let e = r.payload.assumingMemoryBound(to: pb_event.self)
            // What was sent for this record is what its flags said then: they change only here.
            if stream && !before.contains(.streamSettled) {
                switch try connection.withNextReply(PublisherLoop.classifyXADD) {
                case .ok:
                    flags.insert(.streamSettled)
                    reissueFailedEvents()
                case .duplicate:
                    duplicates += 1
                    flags.insert(.streamSettled)
                    reissueFailedEvents()
                case .retry(let why):
                    failedEvents.append(eRead)
                    retryReason = retryReason ?? "XADD \(keys.events): \(why)"
                case .moved(let text):
                    failedEvents.append(eRead)
                    redirected(text, command: "XADD \(keys.events)")
                case .rejected(let why):
                    flags.formUnion([.streamSettled, .refused])
                    logRejected("XADD \(keys.events): \(why)", sequence: e.pointee.sequence)
                }
            }
            if channel && !before.contains(.channelSettled) {
                switch try connection.withNextReply(PublisherLoop.classifyPUBLISH) {
                case .ok, .duplicate:
                    channelAcks += 1
                    flags.insert(.channelSettled)
                case .retry(let why), .moved(let why):
                    retryReason = retryReason ?? "PUBLISH \(keys.channel): \(why)"
                case .rejected(let why):
                    flags.formUnion([.channelSettled, .refused])
                    logRejected("PUBLISH \(keys.channel): \(why)", sequence: e.pointee.sequence)
                }
            }
            RecordStore.setFlags(r.payload, flags)
            if eventSettled(flags) && !eventSettled(before) && !flags.contains(.moved) {
                if flags.contains(.refused) {
                    rejected += 1
                } else {
                    published += 1
                    if let observer = config.ackObserver { observer(e, monotonicNanos()) }
                }
            }
            eRead = r.next
            eReadN += 1
        }
        while eAckedN < eReadN {
            let r = events.record(at: eAcked)
            guard eventSettled(RecordStore.flags(r.payload)) else { break }
            eAcked = r.next
            eAckedN += 1
        }
        for _ in 0..<nP {
            let r = plugins.record(at: pRead)
            var flags = RecordStore.flags(r.payload)
            if !flags.contains(.streamSettled) {
                let rec = PluginRecord(reading: r.payload)
                // Only the error paths need the name as bytes of their own.
                func name() -> [UInt8] { Array(UnsafeRawBufferPointer(start: rec.name.0, count: rec.name.1)) }
                switch try connection.withNextReply(PublisherLoop.classifyXADD) {
                case .ok, .duplicate:
                    flags.insert(.streamSettled)
                    control.pluginPublished.add(1, ordering: .relaxed)
                    if !failedPlugins.isEmpty { reissueFailedPlugins(stream: name()) }
                case .retry(let why):
                    failedPlugins.append((pRead, name()))
                    retryReason = retryReason ?? "XADD \(keys.pluginPrefix)\(String(decoding: name(), as: UTF8.self)): \(why)"
                case .moved(let text):
                    failedPlugins.append((pRead, name()))
                    redirected(text, command: "XADD \(keys.pluginPrefix)\(String(decoding: name(), as: UTF8.self))")
                case .rejected(let why):
                    flags.formUnion([.streamSettled, .refused])
                    control.pluginRejected.add(1, ordering: .relaxed)
                    logRejected("XADD \(keys.pluginPrefix)\(String(decoding: name(), as: UTF8.self)): \(why)", sequence: rec.sequence)
                }
                RecordStore.setFlags(r.payload, flags)
            }
            pRead = r.next
            pReadN += 1
        }
        while pAckedN < pReadN {
            let r = plugins.record(at: pAcked)
            guard RecordStore.flags(r.payload).contains(.streamSettled) else { break }
            pAcked = r.next
            pAckedN += 1
        }
        // Round trip of the whole pipelined batch: queued for the socket → last reply read.
        control.publishLatency.record(monotonicNanos() &- batchSentAt[batchHead])
        batchHead = (batchHead + 1) % PublisherLoop.maxBatchesInFlight
        inFlightBatches -= 1
    }

    /// A MOVED reply: the command was not executed, like a retryable error, and the connection
    /// is then re-made to the named node (all of this host's keys share one slot: `{HOST}`).
    private func redirected(_ text: String, command: String) {
        retryReason = retryReason ?? "\(command): \(text)"
        if pendingRedirect == nil, let node = Self.movedTarget(text, like: config.url) { pendingRedirect = (node, text) }
    }

    /// Settled: nothing of the record is left to send in this mode.
    private func eventSettled(_ flags: RecordFlags) -> Bool {
        (!config.mode.usesStream || flags.contains(.streamSettled)) && (!config.mode.usesChannel || flags.contains(.channelSettled))
    }

    /// The epoch of a record's IDs: the one of its first send, for every replay. Records are
    /// first sent in store order, so IDs rise as long as sequences do; a reissued copy (a lower
    /// sequence after higher ones) starts a new epoch, above every ID sent so far (docs/redis.md,
    /// "Exactly once").
    private func sendEpoch(_ payload: UnsafeRawPointer, sequence: UInt64, plugin: Bool) -> UInt64 {
        let stored = RecordStore.epoch(payload)
        if stored != 0 { return stored }
        if sequence <= (plugin ? lastPluginSequenceSent : lastEventSequenceSent) {
            let now = UInt64(max(0, Date().timeIntervalSince1970 * 1000))
            epochMs = max(now, epochMs! + 1)
            lastEventSequenceSent = 0
            lastPluginSequenceSent = 0
            epochBumps += 1
            if epochBumps == 1 || epochBumps % 100 == 0 {
                logger.warning("Redis refused entries with a retryable error after accepting later ones; they are re-sent under a new ID epoch",
                               metadata: ["redis": "\(server)", "epoch": "\(epochMs!)", "epochs_started": "\(epochBumps)",
                                          "reissued_so_far": "\(control.reissued.load(ordering: .relaxed))"])
            }
        }
        if plugin { lastPluginSequenceSent = sequence } else { lastEventSequenceSent = sequence }
        RecordStore.setEpoch(payload, epochMs!)
        return epochMs!
    }

    /// A later entry of the events stream was stored: the events whose XADD got a retryable
    /// error before it can never be stored under their IDs (a stream only takes IDs above its
    /// top), and their replay would be answered "equal or smaller", like a true duplicate. So
    /// each is copied to the end of the store, to be sent again under a new epoch, and the
    /// original is settled as moved.
    private func reissueFailedEvents() {
        for position in failedEvents {
            let settled = reissue(in: events, at: position, stored: &eStored, storedN: &eStoredN, acked: eAcked,
                                  keep: .channelSettled, settle: [.streamSettled, .channelSettled])
            if !settled {
                control.dropped.add(1, ordering: .relaxed)
                let seq = events.record(at: position).payload.assumingMemoryBound(to: pb_event.self).pointee.sequence
                logger.error("no room to reissue an event Redis refused with a retryable error; dropped",
                             metadata: ["redis": "\(server)", "sequence": "\(seq)"])
            }
        }
        failedEvents.removeAll()
    }

    /// The same for plugin records, per plugin stream.
    private func reissueFailedPlugins(stream name: [UInt8]) {
        failedPlugins.removeAll { failed in
            guard failed.name == name else { return false }
            if !reissue(in: plugins, at: failed.position, stored: &pStored, storedN: &pStoredN, acked: pAcked,
                        keep: [], settle: .streamSettled) {
                control.pluginRejected.add(1, ordering: .relaxed)
                logger.error("no room to reissue a plugin record Redis refused with a retryable error; dropped",
                             metadata: ["redis": "\(server)", "plugin": "\(String(decoding: name, as: UTF8.self))"])
            }
            return true
        }
    }

    /// Copies the record at `position` to the end of `store` (flags: its own `keep` ones; epoch:
    /// unset, so its first send picks one) and settles the original as moved. False when the
    /// store had no room (the original is settled anyway: the caller counts it as dropped).
    private func reissue(in store: RecordStore, at position: UInt64, stored: inout UInt64, storedN: inout UInt64,
                         acked: UInt64, keep: RecordFlags, settle: RecordFlags) -> Bool {
        let r = store.record(at: position)
        let flags = RecordStore.flags(r.payload)
        defer { RecordStore.setFlags(r.payload, flags.union(settle).union(.moved)) }
        guard let (slot, next) = store.reserve(length: r.length, stored: stored, acked: acked) else { return false }
        slot.copyMemory(from: r.payload, byteCount: r.length)
        RecordStore.setFlags(slot, flags.intersection(keep))
        stored = next
        storedN += 1
        control.reissued.add(1, ordering: .relaxed)
        return true
    }

    private func logRejected(_ what: String, sequence: UInt64) {
        rejectedLogged += 1
        if rejectedLogged <= 10 || rejectedLogged % 1000 == 0 {
            logger.error("Redis refused an entry; it is counted and skipped", metadata: [
                "redis": "\(server)", "reply": "\(what)", "sequence": "\(sequence)",
                "rejected_so_far": "\(rejectedLogged)"])
        }
    }

    /// XADD answers the new entry's ID (a bulk string) or an error.
    private static func classifyXADD(_ r: UnsafePointer<redisReply>) -> Outcome {
        switch r.pointee.type {
        case REDIS_REPLY_STRING: return .ok
        case REDIS_REPLY_ERROR: return classifyError(r)
        default: return .rejected("expected a bulk string (the entry ID) or an error, got \(typeName(r))")
        }
    }

    /// PUBLISH answers the number of subscribers (an integer) or an error.
    private static func classifyPUBLISH(_ r: UnsafePointer<redisReply>) -> Outcome {
        switch r.pointee.type {
        case REDIS_REPLY_INTEGER: return .ok
        case REDIS_REPLY_ERROR: return classifyError(r)
        default: return .rejected("expected an integer (the subscriber count) or an error, got \(typeName(r))")
        }
    }

    /// Redis' error for an ID at or below the stream's top: the replayed entry is already stored.
    private static let duplicatePrefix = "ERR The ID specified in XADD is equal or smaller"
    /// Errors that go away by themselves (loading, failover, memory, persistence): back off and replay.
    /// `ASK`: the slot is migrating and this key already left; retried until the MOVED that ends it.
    private static let retryPrefixes = ["LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "NOAUTH", "READONLY",
                                        "CLUSTERDOWN", "OOM", "MISCONF", "ASK "]

    private static func classifyError(_ r: UnsafePointer<redisReply>) -> Outcome {
        let text = String(decoding: RedisReply.bytes(r.pointee.str, r.pointee.len), as: UTF8.self)
        if text.hasPrefix(duplicatePrefix) { return .duplicate }
        if text.hasPrefix("MOVED ") { return .moved(text) }
        if retryPrefixes.contains(where: { text.hasPrefix($0) }) { return .retry(text) }
        return .rejected(text)
    }

    static func typeName(_ r: UnsafePointer<redisReply>) -> String {
        switch r.pointee.type {
        case REDIS_REPLY_STRING: return "a bulk string"
        case REDIS_REPLY_ARRAY: return "an array of \(r.pointee.elements)"
        case REDIS_REPLY_INTEGER: return "integer \(r.pointee.integer)"
        case REDIS_REPLY_NIL: return "nil"
        case REDIS_REPLY_STATUS: return "status \"\(String(decoding: RedisReply.bytes(r.pointee.str, r.pointee.len), as: UTF8.self))\""
        case REDIS_REPLY_ERROR: return "an error"
        default: return "unknown reply type \(r.pointee.type)"
        }
    }
}

/// Exponential backoff with jitter: the n-th delay is uniform in [d/2, d] for d = min(max, base * 2^n).
struct Backoff {
    let base: UInt64
    let max: UInt64
    private(set) var attempt = 0

    init(base: Duration, max: Duration) {
        self.base = UInt64(Swift.max(1_000_000, base.nanoseconds))
        self.max = UInt64(Swift.max(base.nanoseconds, max.nanoseconds))
    }

    /// The next delay in nanoseconds.
    mutating func next() -> UInt64 {
        var d = base
        for _ in 0..<Swift.min(attempt, 64) { d = d >= max / 2 ? max : d * 2 }
        d = Swift.min(d, max)
        attempt += 1
        return d / 2 + UInt64.random(in: 0...(d / 2))
    }

    mutating func reset() { attempt = 0 }
}

/// "64 MiB", "64 KiB", "512 B": for log lines.
func byteCount(_ n: Int) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 { return "\(n >> 20) MiB" }
    if n >= 1 << 10 { return "\(n >> 10) KiB" }
    return "\(n) B"
}
