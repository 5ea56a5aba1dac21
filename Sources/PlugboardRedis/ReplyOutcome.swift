import CHiredis

/// What one reply means for the record it answers: the classification of XADD and PUBLISH
/// replies (docs/redis.md, "Exactly once").
enum ReplyOutcome {
    /// Applied.
    case ok
    /// A replayed XADD whose ID is already stored: delivered once.
    case duplicate
    /// Not applied, for a reason that goes away by itself: back off and replay.
    case retry(String)
    /// Redis Cluster: not applied, the slot is served by the node the text names.
    case moved(String)
    /// Refused for good: counted and skipped.
    case rejected(String)

    /// XADD answers the new entry's ID (a bulk string) or an error.
    static func ofXADD(_ r: UnsafePointer<redisReply>) -> ReplyOutcome {
        switch r.pointee.type {
        case REDIS_REPLY_STRING: return .ok
        case REDIS_REPLY_ERROR: return ofError(r)
        default: return .rejected("expected a bulk string (the entry ID) or an error, got \(typeName(r))")
        }
    }

    /// PUBLISH answers the number of subscribers (an integer) or an error.
    static func ofPUBLISH(_ r: UnsafePointer<redisReply>) -> ReplyOutcome {
        switch r.pointee.type {
        case REDIS_REPLY_INTEGER: return .ok
        case REDIS_REPLY_ERROR: return ofError(r)
        default: return .rejected("expected an integer (the subscriber count) or an error, got \(typeName(r))")
        }
    }

    /// Redis' error for an ID at or below the stream's top: the replayed entry is already stored.
    static let duplicatePrefix = "ERR The ID specified in XADD is equal or smaller"
    /// Errors that go away by themselves (loading, failover, memory, persistence): back off and replay.
    /// `ASK`: the slot is migrating and this key already left; retried until the MOVED that ends it.
    static let retryPrefixes = ["LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "NOAUTH", "READONLY",
                                "CLUSTERDOWN", "OOM", "MISCONF", "ASK "]

    static func ofError(_ r: UnsafePointer<redisReply>) -> ReplyOutcome {
        let text = String(decoding: RedisReply.bytes(r.pointee.str, r.pointee.len), as: UTF8.self)
        if text.hasPrefix(duplicatePrefix) { return .duplicate }
        if text.hasPrefix("MOVED ") { return .moved(text) }
        if retryPrefixes.contains(where: { text.hasPrefix($0) }) { return .retry(text) }
        return .rejected(text)
    }

    /// The reply's type in words, for error messages.
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
