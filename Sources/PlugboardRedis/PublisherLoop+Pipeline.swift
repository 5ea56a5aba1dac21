import CPlugboard
import PlugboardCore

/// The pipeline: batches of commands encoded, queued for the socket, and read back in order,
/// with two in flight so the publisher and the server work in parallel.
extension PublisherLoop {
    /// The error that drops the connection when Redis answered with a retryable error.
    struct Retry: Error, CustomStringConvertible {
        var description: String
    }

    /// Moves the pipeline one step. Up to two batches are in flight: batch k+1 is encoded and
    /// queued while Redis still works on batch k, and `redisGetReply` for batch k then writes
    /// k+1 out before reading, so the publisher and the server run in parallel. A broken
    /// connection or a retryable server error marks Redis down; the unanswered window is
    /// replayed after the reconnect.
    func pump() {
        do {
            var appended = false
            if !batches.isFull && (eventWindow.unsent > 0 || pluginWindow.unsent > 0) {
                try appendBatch()
                appended = true
            }
            if batches.isFull || (!appended && batches.count > 0) {
                try readOldestBatch()
            }
            if let why = retryReason {
                // Read every reply still in flight first: then each record's fate is known, and a
                // failed one that a later entry overtook has been reissued (`reissueFailedEvents`).
                while batches.count > 0 { try readOldestBatch() }
                throw Retry(description: why)
            }
        } catch {
            retryReason = nil
            batches.removeAll()
            markDown(error, wasConnected: true)
            if let redirect = pendingRedirect {
                pendingRedirect = nil
                follow(redirect.node, because: redirect.text)
                // A redirect is not an outage: reconnect at once, unless to a node just found unreachable.
                if redirect.node != unreachableNode { nextAttemptNs = 0 }
            }
        }
    }

    /// Encodes and queues up to maxBatch waiting events and maxBatch plugin records.
    func appendBatch() throws {
        guard let connection, epochMs != nil else { return }
        let nE = Int(min(UInt64(config.maxBatch), eventWindow.unsent))
        let nP = Int(min(UInt64(config.maxBatch), pluginWindow.unsent))
        let stream = config.mode.usesStream
        let channel = config.mode.usesChannel
        if let age = config.retentionAge { followClock(retention: age) }
        var pos = eventWindow.sent.byte
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
        eventWindow.didSend(count: UInt64(nE), next: pos)
        pos = pluginWindow.sent.byte
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
        pluginWindow.didSend(count: UInt64(nP), next: pos)
        let wait = config.waitReplicas > 0
        if wait { try appendWait() }
        batches.append(events: nE, plugins: nP, sentAt: monotonicNanos(), wait: wait)
    }
}

/// The pipelined batches sent and not read yet, oldest first: a fixed ring of two, so the
/// pipeline allocates nothing per batch.
struct BatchesInFlight {
    /// One batch: its record counts, when it was handed to the socket (ns) for the
    /// publish-latency histogram, and whether a `WAIT` follows it.
    struct Batch {
        var events = 0
        var plugins = 0
        var sentAt: UInt64 = 0
        var wait = false
    }

    static let capacity = 2
    private var ring = Array(repeating: Batch(), count: capacity)
    private var head = 0
    private(set) var count = 0

    var isFull: Bool { count == Self.capacity }

    /// The oldest batch in flight; only while `count > 0`.
    var oldest: Batch { ring[head] }

    mutating func append(events: Int, plugins: Int, sentAt: UInt64, wait: Bool = false) {
        precondition(count < Self.capacity, "more than \(Self.capacity) batches in flight")
        ring[(head + count) % Self.capacity] = Batch(events: events, plugins: plugins, sentAt: sentAt, wait: wait)
        count += 1
    }

    /// The oldest batch was read.
    mutating func removeOldest() {
        precondition(count > 0, "no batch in flight")
        head = (head + 1) % Self.capacity
        count -= 1
    }

    /// The connection dropped: nothing is in flight any more.
    mutating func removeAll() {
        head = 0
        count = 0
    }
}
