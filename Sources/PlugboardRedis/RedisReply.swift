import CHiredis

/// A Redis reply copied out of hiredis, for control paths (AUTH, XINFO, XREAD in `tail`).
/// The publisher's hot path never builds one: it checks the `redisReply` in place.
public enum RedisReply: Sendable, Equatable {
    case string([UInt8])
    case status(String)
    case integer(Int64)
    case null
    case error(String)
    indirect case array([RedisReply])

    /// Copies a hiredis reply tree.
    /// - Throws: `.unexpectedReply` for a reply type hiredis 0.14.1 does not define (never traps).
    init(copying reply: UnsafePointer<redisReply>, server: String, context: @autoclosure () -> String) throws {
        let r = reply.pointee
        switch r.type {
        case REDIS_REPLY_STRING:
            self = .string(RedisReply.bytes(r.str, r.len))
        case REDIS_REPLY_STATUS:
            self = .status(String(decoding: RedisReply.bytes(r.str, r.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            self = .error(String(decoding: RedisReply.bytes(r.str, r.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            self = .integer(Int64(r.integer))
        case REDIS_REPLY_NIL:
            self = .null
        case REDIS_REPLY_ARRAY:
            var items: [RedisReply] = []
            items.reserveCapacity(r.elements)
            for i in 0..<r.elements {
                guard let element = r.element?[i] else {
                    throw RedisError(.unexpectedReply, server: server, "\(context()): array element \(i) of \(r.elements) is missing")
                }
                items.append(try RedisReply(copying: element, server: server, context: context()))
            }
            self = .array(items)
        default:
            throw RedisError(.unexpectedReply, server: server, "\(context()): reply of unknown type \(r.type)")
        }
    }

    static func bytes(_ p: UnsafeMutablePointer<CChar>?, _ n: Int) -> [UInt8] {
        guard let p, n > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: n))
    }

    /// A short name for the reply's type, for error messages ("integer 42", "array of 3").
    public var shape: String {
        switch self {
        case .string(let b): return "bulk string \"\(String(decoding: b.prefix(40), as: UTF8.self))\""
        case .status(let s): return "status \"\(s)\""
        case .integer(let i): return "integer \(i)"
        case .null: return "nil"
        case .error(let e): return "error \"\(e)\""
        case .array(let a): return "array of \(a.count)"
        }
    }

    /// The text of a bulk string or status reply, or nil.
    public var text: String? {
        switch self {
        case .string(let b): return String(decoding: b, as: UTF8.self)
        case .status(let s): return s
        default: return nil
        }
    }
}
