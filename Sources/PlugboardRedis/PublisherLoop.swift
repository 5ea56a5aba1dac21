import CHiredis
import CPlugboard
import Foundation
import Logging
import PlugboardCore

/// The publisher thread's state machine. Owned by that thread alone (see `LoopHandoff`).
///
/// Events move through one `RecordStore` as three positions, `acked <= sent <= stored` (byte
/// positions, with matching counts `...N`): `[acked, sent)` is the window of commands sent but not
/// yet answered, `[sent, stored)` waits to be sent: the next pipeline while connected, the spill
/// buffer while Redis is down. After a reconnect `sent` goes back to `acked`, so the window is
/// replayed with the same IDs.
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
    private var eAcked: UInt64 = 0, eSent: UInt64 = 0, eStored: UInt64 = 0
    private var eAckedN: UInt64 = 0, eSentN: UInt64 = 0, eStoredN: UInt64 = 0
    private let plugins: RecordStore
    private var pAcked: UInt64 = 0, pSent: UInt64 = 0, pStored: UInt64 = 0
    private var pAckedN: UInt64 = 0, pSentN: UInt64 = 0, pStoredN: UInt64 = 0
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
        if let connection {
            try connection.reconnect()
        } else {
            connection = try RedisConnection(url: config.url, options: config.connect)
        }
        if epochMs == nil {
            epochMs = try determineEpoch()
        }
        let inFlight = (eSentN - eAckedN) + (pSentN - pAckedN)
        if inFlight > 0 { control.replayed.add(inFlight, ordering: .relaxed) }
        eSent = eAcked
        eSentN = eAckedN
        pSent = pAcked
        pSentN = pAckedN
        connected = true
        control.connected.store(true, ordering: .releasing)
        backoff.reset()
        failedAttempts = 0
    }

    /// The ms part of every ID this run: now, or one past the stream's last ID if that is later
    /// (a clock that went backwards, or a previous run within the same millisecond).
    private func determineEpoch() throws -> UInt64 {
        guard let connection else { throw RedisError(.io, server: server, "not connected") }
        let now = UInt64(max(0, Date().timeIntervalSince1970 * 1000))
        let reply = try connection.command(["XINFO", "STREAM", keys.events])
        var lastMs: UInt64 = 0
        switch reply {
        case .error(let e) where e.contains("no such key"):
            lastMs = 0
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
        return max(now, lastMs + 1)
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
            logger.warning("lost the connection to Redis; spilling up to \(byteCount(config.spillBytes)) of events, reconnecting with backoff",
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

    private enum Outcome { case ok, duplicate, retry(String), rejected(String) }

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
        } catch {
            inFlightBatches = 0
            batchHead = 0
            markDown(error, wasConnected: true)
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
        guard let connection, let epoch = epochMs else { return }
        let nE = Int(min(UInt64(config.maxBatch), eStoredN - eSentN))
        let nP = Int(min(UInt64(config.maxBatch), pStoredN - pSentN))
        let stream = config.mode.usesStream
        let channel = config.mode.usesChannel
        var pos = eSent
        for _ in 0..<nE {
            let r = events.record(at: pos)
            let e = r.payload.assumingMemoryBound(to: pb_event.self)
            if stream {
                let argc = encoder.encodeXADD(e, epochMs: epoch)
                try connection.append(argc, encoder.argv, encoder.lengths)
            }
            if channel {
                let argc = encoder.encodePUBLISH(e, epochMs: epoch, valuesFresh: stream)
                try connection.append(argc, encoder.argv, encoder.lengths)
            }
            pos = r.next
        }
        eSent = pos
        eSentN += UInt64(nE)
        pos = pSent
        for _ in 0..<nP {
            let r = plugins.record(at: pos)
            let argc = encoder.encodePluginXADD(PluginRecord(reading: r.payload), epochMs: epoch)
            try connection.append(argc, encoder.argv, encoder.lengths)
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
            var refused: String?
            if stream {
                switch try connection.withNextReply(PublisherLoop.classifyXADD) {
                case .ok: break
                case .duplicate: duplicates += 1
                case .retry(let why): throw Retry(description: "XADD \(keys.events): \(why)")
                case .rejected(let why): refused = "XADD \(keys.events): \(why)"
                }
            }
            if channel {
                switch try connection.withNextReply(PublisherLoop.classifyPUBLISH) {
                case .ok, .duplicate: channelAcks += 1
                case .retry(let why): throw Retry(description: "PUBLISH \(keys.channel): \(why)")
                case .rejected(let why): refused = refused ?? "PUBLISH \(keys.channel): \(why)"
                }
            }
            let r = events.record(at: eAcked)
            let e = r.payload.assumingMemoryBound(to: pb_event.self)
            if let refused {
                rejected += 1
                logRejected(refused, sequence: e.pointee.sequence)
            } else {
                published += 1
                if let observer = config.ackObserver { observer(e, monotonicNanos()) }
            }
            eAcked = r.next
            eAckedN += 1
        }
        for _ in 0..<nP {
            let r = plugins.record(at: pAcked)
            switch try connection.withNextReply(PublisherLoop.classifyXADD) {
            case .ok, .duplicate:
                control.pluginPublished.add(1, ordering: .relaxed)
            case .retry(let why):
                throw Retry(description: "XADD \(keys.pluginPrefix)*: \(why)")
            case .rejected(let why):
                control.pluginRejected.add(1, ordering: .relaxed)
                let rec = PluginRecord(reading: r.payload)
                let name = String(decoding: UnsafeRawBufferPointer(start: rec.name.0, count: rec.name.1), as: UTF8.self)
                logRejected("XADD \(keys.pluginPrefix)\(name): \(why)", sequence: rec.sequence)
            }
            pAcked = r.next
            pAckedN += 1
        }
        // Round trip of the whole pipelined batch: queued for the socket → last reply read.
        control.publishLatency.record(monotonicNanos() &- batchSentAt[batchHead])
        batchHead = (batchHead + 1) % PublisherLoop.maxBatchesInFlight
        inFlightBatches -= 1
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
    private static let retryPrefixes = ["LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "NOAUTH", "READONLY",
                                        "CLUSTERDOWN", "OOM", "MISCONF"]

    private static func classifyError(_ r: UnsafePointer<redisReply>) -> Outcome {
        let text = String(decoding: RedisReply.bytes(r.pointee.str, r.pointee.len), as: UTF8.self)
        if text.hasPrefix(duplicatePrefix) { return .duplicate }
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
