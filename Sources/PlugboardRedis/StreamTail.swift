import PlugboardCore
import PlugboardSystem
#if canImport(Glibc)
import Glibc
#endif
/// Reads `plugboard:{HOST}:events` and hands each entry to a callback: `XREAD BLOCK` from an ID,
/// or, with a consumer group, `XREADGROUP` + `XACK` (the scale-out path: each entry goes to one
/// consumer of the group). The engine of `plugboard tail`.
public final class StreamTail {
    public struct Options: Sendable {
        public var url: RedisURL
        public var host: String
        /// Start after this ID; nil means "$" (only new entries). With a group: where the group starts
        /// when it is created ("0" for the whole stream).
        public var from: String?
        public var group: String?
        public var consumer: String?
        /// Stop after this many entries (nil: run until stopped).
        public var count: Int?
        /// How long one XREAD blocks before asking again, milliseconds.
        public var blockMs: Int = 1000

        public init(url: RedisURL, host: String) {
            self.url = url
            self.host = host
        }
    }

    public let options: Options
    public let key: String
    private let connection: RedisConnection

    /// Connects (and, with a group, creates the group with MKSTREAM if missing).
    /// - Throws: `RedisError` (connection, authentication, wrong key type...).
    public init(options: Options) throws {
        precondition(options.group == nil || options.consumer != nil, "a group needs a consumer name")
        self.options = options
        self.key = StreamKeys(host: options.host).events
        var connect = RedisConnectOptions()
        // A blocking read must not trip the socket timeout.
        connect.commandTimeout = .milliseconds(Int64(options.blockMs) + 5000)
        connection = try RedisConnection(url: options.url, options: connect)
        try joinGroup()
    }

    /// With a group: creates it (MKSTREAM) or joins it when it exists. Also after a reconnect,
    /// since a restarted Redis without persistence has lost it.
    private func joinGroup() throws {
        guard let group = options.group else { return }
        let reply = try connection.command(["XGROUP", "CREATE", key, group, options.from ?? "$", "MKSTREAM"])
        switch reply {
        case .status: break
        case .error(let e) where e.hasPrefix("BUSYGROUP"): break  // exists: join it
        case .error(let e):
            throw RedisError(e.hasPrefix("WRONGTYPE") ? .wrongType : .server, server: options.url.redacted,
                             "XGROUP CREATE \(key) \(group): \(e)")
        default:
            throw RedisError(.unexpectedReply, server: options.url.redacted,
                             "XGROUP CREATE \(key) \(group): expected status OK, got \(reply.shape)")
        }
    }

    /// Whether a failure is the connection's (the server went away, restarted, timed out), so that
    /// reconnecting can cure it, as opposed to a refusal that would repeat (auth, wrong type...).
    static func isConnectionLoss(_ e: RedisError) -> Bool {
        e.code == .io || e.code == .connect || e.code == .unavailable
    }

    /// Reads until `options.count` entries were delivered (forever when nil) or `shouldStop` says so
    /// (checked after every blocking read). When the connection is lost it reconnects with
    /// exponential backoff and jitter, telling `onConnectionLoss`, and resumes after the last
    /// entry it delivered (XREAD) or with the group's pending position (XREADGROUP): nothing is
    /// skipped or printed twice.
    /// - Returns: how many entries were delivered.
    /// - Throws: a `RedisError` that reconnecting cannot cure (authentication, wrong key type...).
    @discardableResult
    public func run(shouldStop: () -> Bool = { false }, onConnectionLoss: (RedisError) -> Void = { _ in },
                    _ deliver: (StreamEntry) throws -> Void) throws -> Int {
        var delivered = 0
        var last = options.from ?? "$"
        let server = options.url.redacted
        var backoff = Backoff(base: .milliseconds(100), max: .seconds(5))
        var lost = false
        while options.count.map({ delivered < $0 }) ?? true {
            let want = min(100, (options.count ?? Int.max) - delivered)
            let entries: [StreamEntry]
            do {
                if lost {
                    try connection.reconnect()
                    try joinGroup()
                    lost = false
                    backoff.reset()
                }
                if let group = options.group, let consumer = options.consumer {
                    let cmd = ["XREADGROUP", "GROUP", group, consumer, "COUNT", "\(want)", "BLOCK", "\(options.blockMs)",
                               "STREAMS", key, ">"]
                    entries = try StreamEntry.entries(fromRead: try connection.command(cmd), key: key,
                                                      command: "XREADGROUP \(key)", server: server)
                    if !entries.isEmpty {
                        let reply = try connection.command(["XACK", key, group] + entries.map(\.id))
                        guard case .integer = reply else {
                            throw RedisError(.unexpectedReply, server: server, "XACK \(key) \(group): expected an integer, got \(reply.shape)")
                        }
                    }
                } else {
                    let cmd = ["XREAD", "COUNT", "\(want)", "BLOCK", "\(options.blockMs)", "STREAMS", key, last]
                    entries = try StreamEntry.entries(fromRead: try connection.command(cmd), key: key,
                                                      command: "XREAD \(key)", server: server)
                }
            } catch let e as RedisError where Self.isConnectionLoss(e) {
                if !lost { onConnectionLoss(e) }
                lost = true
                if shouldStop() { break }
                sleepThread(for: .nanoseconds(Int64(backoff.next())))
                continue
            }
            for e in entries {
                try deliver(e)
                last = e.id
                delivered += 1
            }
            if entries.isEmpty && shouldStop() { break }
        }
        return delivered
    }

    /// One line per event, in the spirit of `udevadm monitor`:
    /// `PLUGBOARD[1764374400000-42] add      /sys/devices/.../1-3 046d:c52b bus 001 dev 004 "Logitech" "USB Receiver" serial=ABC driver=usb`
    /// Reads the entry through `EventSchema`, so an older daemon's field names (`vid`, `bus`...) show too.
    public static func format(_ e: StreamEntry) -> String {
        // A field that does not parse is left out of the line, not fatal: this output is for people.
        let pairs = e.fields.filter { f in (try? EventSchema.entry(named: f.name)?.parse(text: f.value)) != nil }
        let r = (try? EventSchema.record(text: pairs)) ?? EventRecord()
        func hex(_ f: EventField) -> String? {
            guard let n = r.number(f), case .hex(let digits) = f.schema.format else { return nil }
            return String(repeating: "0", count: max(0, digits - String(n, radix: 16).count)) + String(n, radix: 16)
        }
        let action = r.number(.action).flatMap { EventAction(rawValue: UInt16($0))?.name } ?? "?"
        let pad = String(repeating: " ", count: max(0, 8 - action.count))
        var line = "PLUGBOARD[\(e.id)] \(action)\(pad) \(r.string(.syspath) ?? "?")"
        if let vid = hex(.vendorID), let pid = hex(.productID) { line += " \(vid):\(pid)" }
        if let bus = r.number(.busnum), let dev = r.number(.devnum) { line += " bus \(pad3("\(bus)")) dev \(pad3("\(dev)"))" }
        if let m = r.string(.manufacturer), !m.isEmpty { line += " \"\(m)\"" }
        if let p = r.string(.product), !p.isEmpty { line += " \"\(p)\"" }
        if let s = r.string(.serial), !s.isEmpty { line += " serial=\(s)" }
        if let d = r.string(.driver), !d.isEmpty { line += " driver=\(d)" }
        if let f = r.number(.flags), f != 0 {
            line += " flags=" + EventFlags.names.filter { f & UInt64($0.0.rawValue) != 0 }.map(\.1).joined(separator: ",")
        }
        return line
    }

    private static func pad3(_ s: String) -> String { String(repeating: "0", count: max(0, 3 - s.count)) + s }
}

extension StreamTail {
    /// One entry as the JSON object `monitor --json` prints for the event, with the entry's
    /// `"id"` first: the names, value formats and order of `EventSchema`. Reads the names an
    /// older daemon wrote (`vid`, `kseq`, `ifaces` as `cc:ss:pp`, `flags` as decimal bits) too.
    /// - Throws: `PlugboardError` naming the entry and the field whose value does not parse.
    public static func json(_ entry: StreamEntry) throws -> String {
        let record: EventRecord
        do { record = try EventSchema.record(text: entry.fields) } catch let e as EventSchema.ValueError {
            throw PlugboardError(code: "tail.field", file: "entry \(entry.id)", field: e.field, reason: "expected \(e.expected)",
                                 fix: "the entry was not written by plugboard; skip it or fix the writer")
        }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: EventLayout.maxSize, alignment: 16)
        defer { buffer.deallocate() }
        var w = EventWriter(at: buffer, sequence: 0)
        w.event.pointee.timestamp_ns = 0
        record.write(into: &w, hostFields: true)
        var json = JSONWriter()
        EventSchema.writeJSON(UnsafePointer(w.event), into: &json) { $0.key("id"); $0.string(entry.id) }
        return json.text
    }
}
