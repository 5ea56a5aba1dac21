import Foundation
import Logging

/// The ms part of the Redis IDs: chosen at the first connect, kept per record for its replays,
/// and started anew when a record must be sent below IDs already sent (docs/redis.md, "Exactly once").
extension PublisherLoop {
    enum EpochAnswer { case epoch(UInt64), moved(RedisURL, String) }

    /// The ms part of every ID this run: now, or one past the stream's last ID if that is later
    /// (a clock that went backwards, or a previous run within the same millisecond).
    func determineEpoch() throws -> EpochAnswer {
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

    /// Time retention (`retentionAge`), once per batch: the epoch moves up to now, so the records
    /// first sent in this batch carry the time of their send in their IDs, and the batch's XADDs
    /// trim below `now - age` (`MINID ~`). Moving the epoch up keeps IDs increasing: a larger
    /// millisecond part with any sequence, as a reissue's new epoch does. Replays keep the
    /// epoch stored with their record.
    func followClock(retention age: Duration) {
        let now = UInt64(max(0, Date().timeIntervalSince1970 * 1000))
        if let epoch = epochMs, now > epoch { epochMs = now }
        let ageMs = UInt64(age.components.seconds) * 1000
        encoder.minID = now > ageMs ? now - ageMs : 0
    }

    /// The epoch of a record's IDs: the one of its first send, for every replay. Records are
    /// first sent in store order, so IDs rise as long as sequences do; a reissued copy (a lower
    /// sequence after higher ones) starts a new epoch, above every ID sent so far (docs/redis.md,
    /// "Exactly once").
    func sendEpoch(_ payload: UnsafeRawPointer, sequence: UInt64, plugin: Bool) -> UInt64 {
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
}
