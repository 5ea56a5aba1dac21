/// A stream entry ID, `<ms>-<seq>`, ordered as Redis orders them.
public struct StreamID: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var ms: UInt64
    public var seq: UInt64

    public init(ms: UInt64, seq: UInt64) {
        self.ms = ms
        self.seq = seq
    }

    /// Parses `ms-seq`; nil for anything else.
    public init?(_ text: String) {
        guard let dash = text.firstIndex(of: "-"), let ms = UInt64(text[..<dash]),
              let seq = UInt64(text[text.index(after: dash)...]) else { return nil }
        self.init(ms: ms, seq: seq)
    }

    public static func < (a: StreamID, b: StreamID) -> Bool { (a.ms, a.seq) < (b.ms, b.seq) }
    public var description: String { "\(ms)-\(seq)" }
}

/// One stream entry as XRANGE/XREAD return it: its ID and its field/value pairs in order.
public struct StreamEntry: Sendable, Equatable {
    public var id: String
    public var fields: [(name: String, value: String)]

    public init(id: String, fields: [(name: String, value: String)]) {
        self.id = id
        self.fields = fields
    }

    public var streamID: StreamID? { StreamID(id) }

    /// The value of field `name`, or nil.
    public subscript(_ name: String) -> String? {
        fields.first { $0.name == name }?.value
    }

    public static func == (a: StreamEntry, b: StreamEntry) -> Bool {
        a.id == b.id && a.fields.elementsEqual(b.fields) { $0.name == $1.name && $0.value == $1.value }
    }

    /// Entries from an XRANGE reply (an array of `[id, [field, value, ...]]`).
    /// - Throws: `.unexpectedReply` naming the command and what was wrong, for any other shape.
    public static func entries(fromRange reply: RedisReply, command: String, server: String) throws -> [StreamEntry] {
        func bad(_ what: String) -> RedisError {
            RedisError(.unexpectedReply, server: server, "\(command): \(what)")
        }
        switch reply {
        case .error(let e): throw RedisError(e.hasPrefix("WRONGTYPE") ? .wrongType : .server, server: server, "\(command): \(e)")
        case .array(let items):
            return try items.enumerated().map { (i, item) in
                guard case .array(let pair) = item, pair.count == 2 else {
                    throw bad("entry \(i) is \(item.shape), expected an array of [id, fields]")
                }
                guard let id = pair[0].text else { throw bad("entry \(i) has an ID of \(pair[0].shape)") }
                var fields: [(name: String, value: String)] = []
                switch pair[1] {
                case .array(let kv):
                    guard kv.count % 2 == 0 else { throw bad("entry \(id) has an odd number (\(kv.count)) of field/value items") }
                    var j = 0
                    while j < kv.count {
                        guard let k = kv[j].text, let v = kv[j + 1].text else {
                            throw bad("entry \(id) field \(j / 2) is \(kv[j].shape) = \(kv[j + 1].shape), expected strings")
                        }
                        fields.append((k, v))
                        j += 2
                    }
                case .null:
                    break  // an entry deleted under a consumer group's pending list
                default:
                    throw bad("entry \(id) has fields of \(pair[1].shape), expected an array")
                }
                return StreamEntry(id: id, fields: fields)
            }
        default:
            throw bad("expected an array of entries, got \(reply.shape)")
        }
    }

    /// Entries of `key` from an XREAD/XREADGROUP reply (`nil` on timeout, or `[[key, entries]...]`).
    public static func entries(fromRead reply: RedisReply, key: String, command: String, server: String) throws -> [StreamEntry] {
        switch reply {
        case .null: return []
        case .error(let e): throw RedisError(e.hasPrefix("WRONGTYPE") ? .wrongType : .server, server: server, "\(command): \(e)")
        case .array(let streams):
            var out: [StreamEntry] = []
            for s in streams {
                guard case .array(let pair) = s, pair.count == 2, let name = pair[0].text else {
                    throw RedisError(.unexpectedReply, server: server, "\(command): expected [key, entries], got \(s.shape)")
                }
                if name == key { out += try entries(fromRange: pair[1], command: command, server: server) }
            }
            return out
        default:
            throw RedisError(.unexpectedReply, server: server, "\(command): expected nil or an array of streams, got \(reply.shape)")
        }
    }
}
