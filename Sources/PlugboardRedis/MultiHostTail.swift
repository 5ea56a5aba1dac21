import Dispatch
import PlugboardCore
import Synchronization

/// Reads several hosts' event streams at once (`plugboard tail --host A --host B`, `--host-pattern`):
/// one `StreamTail` per host, each on a thread of its own with its own connection, since the
/// streams of different hosts live in different cluster slots and one blocking read cannot cover
/// them. Each reader keeps its own delivery guarantee (with a group: one group per stream,
/// acknowledged after delivery) and follows its own cluster redirects. Deliveries are serialized:
/// the callback is never called from two readers at once.
///
/// With a pattern, the hosts are discovered with `SCAN` on every node (`StreamDiscovery`), and
/// again every `rescanInterval`: a stream that appeared since is read from its beginning (all it
/// holds is newer than the tail).
public final class MultiHostTail: Sendable {
    public struct Options: Sendable {
        /// The server, `from`, group, consumer, block and claim settings every reader uses; its
        /// `host` and `count` are not used.
        public var base: StreamTail.Options
        /// Hosts named (`--host`, repeatable).
        public var hosts: [String]
        /// Also every host whose stream matches this glob (`--host-pattern`).
        public var pattern: String?
        /// Stop after this many entries in all (nil: until stopped).
        public var count: Int?
        /// How often the pattern is scanned again for new hosts.
        public var rescanInterval: Duration = .seconds(5)

        public init(base: StreamTail.Options, hosts: [String], pattern: String? = nil) {
            self.base = base
            self.hosts = hosts
            self.pattern = pattern
        }
    }

    /// What a reader says besides entries, for stderr: a connection lost, a redirect followed, hosts found.
    public typealias Notice = @Sendable (String) -> Void
    /// One entry of `host`'s stream. Throwing ends the tail (what was not delivered stays unacknowledged).
    public typealias Delivery = @Sendable (_ host: String, _ entry: StreamEntry) throws -> Void

    private struct State {
        var delivered = 0
        var stopped = false
        var failure: (any Error)?
        var readers = 0
    }

    /// Thrown to a reader when the tail is over (`count` reached, or another reader failed).
    private struct Over: Error {}

    public let options: Options
    private let state = Mutex(State())
    private let readerEnded = DispatchSemaphore(value: 0)

    public init(options: Options) {
        self.options = options
    }

    /// The hosts to read now: those named, and those the pattern matches.
    public func currentHosts() throws -> [String] {
        var hosts = options.hosts
        if let pattern = options.pattern {
            for h in try StreamDiscovery.hosts(matching: pattern, url: options.base.url,
                                                               alternatives: options.base.clusterNodes) where !hosts.contains(h) { hosts.append(h) }
        }
        return hosts
    }

    /// Reads until `count` entries were delivered in all (forever when nil).
    /// - Returns: how many entries were delivered.
    /// - Throws: the first error a reader could not cure by reconnecting (authentication, wrong
    ///   key type...), or the delivery's error; the other readers are stopped first.
    @discardableResult
    public func run(notice: @escaping Notice = { _ in }, _ deliver: @escaping Delivery) throws -> Int {
        var known = Set<String>()
        func startNew(_ hosts: [String], from: String?) {
            for h in hosts where !known.contains(h) {
                known.insert(h)
                start(host: h, from: from, notice: notice, deliver: deliver)
            }
        }
        startNew(try currentHosts(), from: options.base.from)
        if known.isEmpty, let pattern = options.pattern {
            notice("no stream matches \(StreamKeys(host: pattern).events) yet; scanning again every \(options.rescanInterval)")
        }
        while true {
            let (readers, stopped) = state.withLock { ($0.readers, $0.stopped) }
            if readers == 0 && (stopped || options.pattern == nil) { break }
            let timeout = DispatchTime.now() + .nanoseconds(Int(options.rescanInterval.nanoseconds))
            if readerEnded.wait(timeout: timeout) == .success { continue }
            guard options.pattern != nil, !state.withLock({ $0.stopped }) else { continue }
            do {
                let found = try currentHosts().filter { !known.contains($0) }
                if !found.isEmpty { notice("new stream(s) found: \(found.map { StreamKeys(host: $0).events }.joined(separator: ", "))") }
                // A stream that appeared after the tail started holds only newer entries: from its start.
                startNew(found, from: "0")
            } catch let e as RedisError where StreamTail.isConnectionLoss(e) {
                notice("scanning for new streams failed (\(e)); trying again in \(options.rescanInterval)")
            }
        }
        return try state.withLock { s in
            if let failure = s.failure { throw failure }
            return s.delivered
        }
    }

    private func start(host: String, from: String?, notice: @escaping Notice, deliver: @escaping Delivery) {
        var o = options.base
        o.host = host
        o.from = from
        o.count = nil
        let limit = options.count
        o.readLimit = { [self] in
            self.state.withLock { s in s.stopped ? 0 : (limit.map { $0 - s.delivered } ?? Int.max) }
        }
        state.withLock { $0.readers += 1 }
        let readerOptions = o
        _ = NativeThread(name: "pb-tail") { [self] in
            do {
                // Made on the thread that uses it: a StreamTail owns one connection.
                let tail = try StreamTail(options: readerOptions)
                let key = tail.key
                tail.onRedirect = { r in notice("\(key): following \(r.kind == .moved ? "MOVED" : "ASK") to \(r.node.redacted)") }
                try tail.run(shouldStop: { [self] in self.state.withLock { $0.stopped } },
                             onConnectionLoss: { e in notice("\(key): connection lost (\(e)); reconnecting with backoff") }) { entry in
                    try self.deliver(host: host, entry: entry, through: deliver)
                }
            } catch is Over {
            } catch {
                state.withLock { s in
                    if s.failure == nil { s.failure = error }
                    s.stopped = true
                }
            }
            state.withLock { $0.readers -= 1 }
            readerEnded.signal()
        }
    }

    /// One entry to the callback, under the lock (one delivery at a time), counted.
    private func deliver(host: String, entry: StreamEntry, through deliver: Delivery) throws {
        try state.withLock { s in
            if s.stopped { throw Over() }
            try deliver(host, entry)
            s.delivered += 1
            if let count = options.count, s.delivered >= count { s.stopped = true }
        }
    }
}
