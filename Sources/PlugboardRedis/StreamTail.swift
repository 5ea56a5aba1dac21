import PlugboardCore
import PlugboardSystem
#if canImport(Glibc)
import Glibc
#endif
/// Reads `plugboard:{HOST}:events` and hands each entry to a callback: `XREAD BLOCK` from an ID,
/// or, with a consumer group, `XREADGROUP` + `XACK` (the scale-out path: each entry goes to one
/// consumer of the group). The engine of `plugboard tail`.
///
/// With a group, delivery is at-least-once: an entry is acknowledged only after the callback
/// returned for it, a consumer first re-reads what it read before but did not acknowledge (after a
/// crash, or a lost connection), and with `claimIdleMs` it claims entries another consumer left
/// pending that long (`XAUTOCLAIM`), so a dead consumer's entries are not stranded.
///
/// Against a Redis Cluster it follows redirects as the publisher does: `MOVED` moves its connection
/// to the node named (the stream's slot is served there now), `ASK` sends that one command to the
/// node named after `ASKING` (the slot is migrating and the key already left).
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
        /// With a group: claim entries pending for another consumer longer than this (ms); nil: never.
        public var claimIdleMs: Int?
        /// Redis Cluster: more nodes to try when `url` is unreachable, also at start (`--cluster-node`).
        public var clusterNodes: [RedisURL] = []
        /// Most entries one read asks for, asked before each read (nil: 100, or what `count` leaves).
        /// Several tails sharing one `--count` pass what is left of it.
        public var readLimit: (@Sendable () -> Int)?

        public init(url: RedisURL, host: String) {
            self.url = url
            self.host = host
        }
    }

    public let options: Options
    public let key: String
    private var connection: RedisConnection
    private let connectOptions: RedisConnectOptions
    /// The cluster node a `MOVED` pointed at, when it is not the configured one.
    public private(set) var node: RedisURL?
    /// Redis Cluster: the nodes `CLUSTER NODES` listed at the last connect, tried in turn after a
    /// lost connection when neither the redirected-to nor the configured node answers (a killed master).
    private var knownNodes: [RedisURL] = []
    /// Told of every redirect followed (for `tail`'s stderr).
    public var onRedirect: (ClusterRedirect) -> Void = { _ in }
    /// Redis Cluster redirects followed in a row before giving up (a slot table in flux).
    static let maxRedirects = 5

    /// Connects (and, with a group, creates the group with MKSTREAM if missing).
    /// - Throws: `RedisError` (connection, authentication, wrong key type...).
    public init(options: Options) throws {
        precondition(options.group == nil || options.consumer != nil, "a group needs a consumer name")
        self.options = options
        self.key = StreamKeys(host: options.host).events
        var connect = RedisConnectOptions()
        // A blocking read must not trip the socket timeout.
        connect.commandTimeout = .milliseconds(Int64(options.blockMs) + 5000)
        connectOptions = connect
        knownNodes = options.clusterNodes
        do {
            connection = try RedisConnection(url: options.url, options: connect)
        } catch let e as RedisError where Self.isConnectionLoss(e) && !options.clusterNodes.isEmpty {
            // The configured node is down: another one given answers, and redirects as needed.
            guard let (url, reached) = options.clusterNodes.lazy.compactMap({ url in
                (try? RedisConnection(url: url, options: connect)).map { (url, $0) } }).first else { throw e }
            connection = reached
            node = url
        }
        if let nodes = try? ClusterNodes.ask(connection, like: options.url), !nodes.isEmpty { knownNodes = nodes }
        try joinGroup()
    }

    /// Sends one command and returns its reply, following cluster redirects: after `MOVED` the
    /// connection moves to the node named and the command is sent again there (up to
    /// `maxRedirects` hops); after `ASK` the command alone goes to the node named, after `ASKING`.
    /// - Throws: `RedisError`; `.unavailable` after too many redirects in a row (retried).
    func send(_ args: [String]) throws -> RedisReply {
        var hops = 0
        while true {
            let reply = try connection.command(args)
            guard case .error(let e) = reply else { return reply }
            if Self.passingPrefixes.contains(where: { e.hasPrefix($0) }) {
                // Cured by waiting and reconnecting: the run loop backs off, reconnects and rejoins.
                throw RedisError(.unavailable, server: connection.url.redacted, "\(args.first ?? "") \(key): \(e)")
            }
            guard let redirect = ClusterRedirect(e, like: options.url) else { return reply }
            hops += 1
            guard hops <= Self.maxRedirects else {
                throw RedisError(.unavailable, server: options.url.redacted,
                                 "\(args.first ?? "") \(key): more than \(Self.maxRedirects) cluster redirects in a row (last: \(e))")
            }
            onRedirect(redirect)
            switch redirect.kind {
            case .moved:
                connection = try RedisConnection(url: redirect.node, options: connectOptions)
                node = redirect.node
            case .ask:
                let target = try RedisConnection(url: redirect.node, options: connectOptions)
                _ = try target.command(["ASKING"])
                return try target.command(args)
            }
        }
    }

    /// Error replies that pass: a server loading or busy, a cluster failing over (`CLUSTERDOWN`,
    /// `TRYAGAIN`, `MASTERDOWN`, a blocked read ended by the change: `UNBLOCKED`), and a group a
    /// promoted replica does not have yet (`NOGROUP`: rejoined after the reconnect).
    /// (`BUSY ` with its space: `BUSYGROUP` is the answer to joining a group that exists.)
    static let passingPrefixes = ["LOADING", "BUSY ", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "UNBLOCKED", "READONLY", "NOGROUP"]

    /// A new connection after a loss: to the node a redirect named, else (or when that node
    /// cannot be reached: it may have failed over) to the configured one, else to any other node
    /// of the cluster that answers; a node that does not serve the stream redirects again.
    private func reconnect() throws {
        var candidates = (node.map { [$0] } ?? []) + [options.url]
        for n in knownNodes where !candidates.contains(n) { candidates.append(n) }
        var firstError: RedisError?
        for url in candidates {
            do {
                connection = try RedisConnection(url: url, options: connectOptions)
            } catch let e as RedisError where Self.isConnectionLoss(e) {
                if url == node { node = nil }
                firstError = firstError ?? e
                continue
            }
            if url != options.url && url != node { node = url }
            if let nodes = try? ClusterNodes.ask(connection, like: options.url), !nodes.isEmpty { knownNodes = nodes }
            return
        }
        throw firstError ?? RedisError(.connect, server: options.url.redacted, "no node to connect to")
    }

    /// With a group: creates it (MKSTREAM) or joins it when it exists. Also after a reconnect,
    /// since a restarted Redis without persistence has lost it.
    private func joinGroup() throws {
        guard let group = options.group else { return }
        let reply = try send(["XGROUP", "CREATE", key, group, options.from ?? "$", "MKSTREAM"])
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
        // With a group: this consumer's own pending entries come first (read, not acknowledged).
        var ownPending = true
        var claimCursor = "0-0"
        while options.count.map({ delivered < $0 }) ?? true {
            let limit = options.readLimit?() ?? Int.max
            if limit <= 0 { break }  // the tail this reader belongs to is over
            let want = min(100, (options.count ?? Int.max) - delivered, limit)
            var entries: [StreamEntry] = []
            do {
                if lost {
                    try reconnect()
                    try joinGroup()
                    lost = false
                    ownPending = true
                    backoff.reset()
                }
                if let group = options.group, let consumer = options.consumer {
                    if !ownPending, let idle = options.claimIdleMs {
                        (entries, claimCursor) = try claim(group: group, consumer: consumer, idleMs: idle, from: claimCursor,
                                                           count: want, server: server)
                    }
                    if entries.isEmpty {
                        let cmd = ["XREADGROUP", "GROUP", group, consumer, "COUNT", "\(want)"]
                            + (ownPending ? [] : ["BLOCK", "\(options.blockMs)"]) + ["STREAMS", key, ownPending ? "0" : ">"]
                        entries = try StreamEntry.entries(fromRead: try send(cmd), key: key,
                                                          command: "XREADGROUP \(key)", server: server)
                        if ownPending && entries.isEmpty {
                            ownPending = false
                            continue
                        }
                    }
                } else {
                    let cmd = ["XREAD", "COUNT", "\(want)", "BLOCK", "\(options.blockMs)", "STREAMS", key, last]
                    entries = try StreamEntry.entries(fromRead: try send(cmd), key: key,
                                                      command: "XREAD \(key)", server: server)
                }
            } catch let e as RedisError where Self.isConnectionLoss(e) {
                if !lost { onConnectionLoss(e) }
                lost = true
                if shouldStop() { break }
                sleepThread(for: .nanoseconds(Int64(backoff.next())))
                continue
            }
            var done: [String] = []
            do {
                for e in entries {
                    try deliver(e)
                    done.append(e.id)
                    last = e.id
                    delivered += 1
                }
            } catch {
                // The callback failed (the output went away): what it took is acknowledged, the rest
                // of the batch stays pending for this consumer or one that claims it.
                if options.group != nil { try? acknowledge(done, server: server) }
                throw error
            }
            // Acknowledged only once delivered: a consumer that dies before this line gets them again.
            if options.group != nil {
                do {
                    try acknowledge(done, server: server)
                } catch let e as RedisError where Self.isConnectionLoss(e) {
                    // Delivered but not acknowledged: they come again after the reconnect (at least once).
                    if !lost { onConnectionLoss(e) }
                    lost = true
                }
            }
            if entries.isEmpty && shouldStop() { break }
        }
        return delivered
    }

    /// `XACK` of `ids` in the group (nothing to do for none).
    func acknowledge(_ ids: [String], server: String) throws {
        guard let group = options.group, !ids.isEmpty else { return }
        let reply = try send(["XACK", key, group] + ids)
        guard case .integer = reply else {
            throw RedisError(.unexpectedReply, server: server, "XACK \(key) \(group): expected an integer, got \(reply.shape)")
        }
    }

    /// `XAUTOCLAIM`: up to `count` entries pending for other consumers longer than `idleMs`, now this
    /// consumer's, and the cursor to go on from ("0-0" once the pending list was scanned through).
    func claim(group: String, consumer: String, idleMs: Int, from cursor: String, count: Int,
               server: String) throws -> ([StreamEntry], String) {
        let command = "XAUTOCLAIM \(key) \(group)"
        let reply = try send(["XAUTOCLAIM", key, group, consumer, "\(idleMs)", cursor, "COUNT", "\(count)"])
        if case .error(let e) = reply { throw RedisError(.server, server: server, "\(command): \(e)") }
        guard case .array(let parts) = reply, parts.count >= 2, let next = parts[0].text else {
            throw RedisError(.unexpectedReply, server: server, "\(command): expected [cursor, entries, ...], got \(reply.shape)")
        }
        return (try StreamEntry.entries(fromRange: parts[1], command: command, server: server), next)
    }

    /// One line per event, in the spirit of `udevadm monitor`:
    /// `PLUGBOARD[1764374400000-42] add      /sys/devices/.../1-3 046d:c52b bus 001 dev 004 "Logitech" "USB Receiver" serial=ABC driver=usb`
    /// Reads the entry through `EventSchema`, so an older daemon's field names (`vid`, `bus`...) show too.
    /// With `host` (a tail of several hosts) the bracket names it: `PLUGBOARD[host 1764374400000-42] add ...`.
    public static func format(_ e: StreamEntry, host: String? = nil) -> String {
        // A field that does not parse is left out of the line, not fatal: this output is for people.
        let pairs = e.fields.filter { f in (try? EventSchema.entry(named: f.name)?.parse(text: f.value)) != nil }
        let r = (try? EventSchema.record(text: pairs)) ?? EventRecord()
        func hex(_ f: EventField) -> String? {
            guard let n = r.number(f), case .hex(let digits) = f.schema.format else { return nil }
            return String(repeating: "0", count: max(0, digits - String(n, radix: 16).count)) + String(n, radix: 16)
        }
        let action = r.number(.action).flatMap { EventAction(rawValue: UInt16($0))?.name } ?? "?"
        let pad = String(repeating: " ", count: max(0, 8 - action.count))
        var line = "PLUGBOARD[\(host.map { "\($0) " } ?? "")\(e.id)] \(action)\(pad) \(r.string(.syspath) ?? "?")"
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
    /// With `host` (a tail of several hosts), `"host"` follows `"id"`.
    /// - Throws: `PlugboardError` naming the entry and the field whose value does not parse.
    public static func json(_ entry: StreamEntry, host: String? = nil) throws -> String {
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
        EventSchema.writeJSON(UnsafePointer(w.event), into: &json) { j in
            j.key("id"); j.string(entry.id)
            if let host { j.key("host"); j.string(host) }
        }
        return json.text
    }
}
