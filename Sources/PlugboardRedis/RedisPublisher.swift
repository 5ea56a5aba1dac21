import CPlugboard
import Foundation
import Logging
import PlugboardCore
import PlugboardSystem
import Synchronization

/// Publishes ring events to Redis from its own thread (docs/redis.md).
///
/// Events become `XADD plugboard:{HOST}:events MAXLEN ~ N <epoch>-<sequence> field value ...`,
/// pipelined; the explicit IDs make a command replayed after a reconnect a harmless duplicate, so
/// each event is stored exactly once. While Redis is down events go to a bounded spill buffer;
/// past the bound they are dropped and counted. Plugin output goes to `plugboard:{HOST}:plugin:<name>`.
///
/// Lifecycle: `start(events:pluginOutput:)` once, then `flush(timeout:)` as often as needed, then
/// `stop(timeout:)`. `stats` may be read at any time from any thread.
public final class RedisPublisher: Sendable {
    /// Where to publish: the stream, a PUBLISH channel, or both.
    public enum Mode: String, Sendable, Equatable {
        case stream, publish, both
        var usesStream: Bool { self != .publish }
        var usesChannel: Bool { self != .stream }
    }

    public struct Configuration: Sendable {
        public var url: RedisURL
        /// `{HOST}` in the key names.
        public var host: String
        public var mode: Mode = .stream
        /// `MAXLEN ~ N` on every XADD (nil: no trimming by length).
        public var maxLength: Int? = 1_000_000
        /// Time retention: every XADD carries `MINID ~ <now in ms - age>` instead of `MAXLEN`, and
        /// the IDs' millisecond part follows the clock (each batch's first sends take
        /// `max(epoch, now)`), so an entry's ID says when it was first sent and entries older than
        /// `age` are trimmed (docs/redis.md, "Retention"). Takes precedence over `maxLength`.
        public var retentionAge: Duration? = nil
        /// Most events (commands) in one pipeline.
        public var maxBatch: Int = 1024
        /// Bytes for events held while unacknowledged or while Redis is down (each takes its
        /// `total_size` + 16, about 300-400 bytes: 64 MiB holds ~200,000). Past it, new events are
        /// dropped and counted.
        public var spillBytes: Int = 64 << 20
        /// Bytes for plugin output records held while unacknowledged or while Redis is down.
        public var pluginBytes: Int = 8 << 20
        /// Largest plugin record (name + topic + payload), bytes; larger ones are rejected and counted.
        public var pluginMaxRecord: Int = 8192
        public var connect: RedisConnectOptions = RedisConnectOptions()
        /// First reconnect delay; doubles up to `backoffMax`, with jitter.
        public var backoffBase: Duration = .milliseconds(100)
        public var backoffMax: Duration = .seconds(10)
        /// Longest sleep of an idle publisher, ns, when nothing wakes it sooner (events, plugin
        /// output and a stop do, on a ring: `ConsumerWakeup`). Tests raise it to show that a
        /// wakeup, not this timeout, ends the sleep.
        public var idleWait: UInt64 = 20_000_000
        /// How long a small batch may wait for more before it is sent, ns (0: send at once).
        /// A publisher woken for one event at a time (paced traffic) sends, waits for and reads
        /// one reply per event; holding the first event of a quiet spell this long lets the
        /// events behind it share its round trip, and the source stops waking this thread per
        /// event. A full batch (`maxBatch`), a stop and a finished source send at once
        /// (docs/redis.md, "Linger").
        public var linger: UInt64 = 0
        /// `WAIT waitReplicas waitTimeout` after each pipelined batch: its records count as
        /// acknowledged only once that many replicas have them (an acknowledged entry then survives
        /// the failover of its master); fewer is a retryable failure. 0: no WAIT (docs/redis.md,
        /// "Redis Cluster").
        public var waitReplicas: Int = 0
        public var waitTimeout: Duration = .seconds(1)
        /// Redis Cluster: more nodes to try when the one to connect to is unreachable, also at the
        /// first connect; the publisher learns the others with `CLUSTER NODES` once connected.
        public var clusterNodes: [RedisURL] = []
        /// Called on the publisher thread for every event Redis acknowledged, with CLOCK_MONOTONIC
        /// nanoseconds at acknowledgement. For benchmarks (latency); nil in production.
        public var ackObserver: (@Sendable (UnsafePointer<pb_event>, UInt64) -> Void)? = nil
        /// The window and spill in files (`state.dir`), opened by the host before the ring
        /// (docs/redis.md, "Crash safety"); nil keeps them in memory. Its files' sizes replace
        /// `spillBytes` and `pluginBytes`.
        public var state: PublisherState? = nil

        public init(url: RedisURL, host: String = StreamKeys.localHost) {
            self.url = url
            self.host = host
        }
    }

    public let configuration: Configuration
    let control: PublisherControl
    private let logger: Logger
    private let state = Mutex<LifecycleState>(.idle)

    enum LifecycleState: Sendable {
        case idle
        case running(DispatchSemaphore)
        case stopped
    }

    public init(configuration: Configuration, logger: Logger = Logger(label: "plugboard.redis")) {
        self.configuration = configuration
        self.control = PublisherControl()
        self.logger = logger
    }

    /// A publisher dropped without `stop` tells its thread to exit at once (nothing more is
    /// delivered); call `stop` to deliver what it holds first.
    deinit {
        control.stopDeadlineNs.store(0, ordering: .releasing)
        control.requestStop()
    }

    /// Counters and state, for logs, `/health` and tests.
    public var stats: RedisPublisherStats { control.snapshot() }

    /// The publisher thread has ended (after `stop`, or never started).
    public var hasStopped: Bool {
        if case .idle = state.withLock({ $0 }) { return true }
        return control.exited.load(ordering: .acquiring)
    }

    /// Round trip of each pipelined batch (handed to the socket → last reply read), nanoseconds.
    public var publishLatency: LatencyHistogram { control.publishLatency }

    /// The stream key events go to.
    public var streamKey: String { StreamKeys(host: configuration.host).events }

    /// Connects (once, on the caller's thread) and starts the publisher thread.
    ///
    /// Redis being unreachable is not an error: the publisher starts disconnected, spills, and
    /// keeps reconnecting with backoff. A configuration problem is: wrong password, missing
    /// password, bad database, or the stream key holding another type.
    /// - Parameters:
    ///   - events: read only from the publisher thread from now on.
    ///   - pluginOutput: plugin `publish` records; nil when no plugin output is wired.
    /// - Throws: `RedisError` (`.authentication`, `.select`, `.wrongType`, `.unexpectedReply`).
    public func start(events: sending any EventBatchSource, pluginOutput: sending (any PluginOutputSource)? = nil) throws {
        // A ring consumer can be woken for plugin output and for a stop (`ConsumerWakeup`), so the
        // publisher sleeps until there is something to do; another source is polled.
        let wakeup = (events as? RingConsumer)?.makeWakeup()
        if let wakeup { pluginOutput?.setPushHook { wakeup.signal() } }
        control.wakeup.withLock { $0 = wakeup }
        let loop = PublisherLoop(configuration: configuration, control: control, logger: logger,
                                 source: events, pluginSource: pluginOutput, wakeup: wakeup)
        try loop.connectAtStart()
        let done = DispatchSemaphore(value: 0)
        try state.withLock { s in
            guard case .idle = s else {
                throw RedisError(.server, server: configuration.url.redacted, "RedisPublisher.start called twice")
            }
            s = .running(done)
        }
        let handoff = LoopHandoff(loop)
        _ = NativeThread(name: "plugboard-redis") {
            handoff.loop.run()
            done.signal()
        }
    }

    /// Waits until every event the source had when `flush` was called is acknowledged by Redis.
    /// - Returns: false when `timeout` passed first (Redis down, or events still arriving).
    public func flush(timeout: Duration) -> Bool {
        let start = control.idleGeneration.load(ordering: .acquiring)
        let deadline = ContinuousClock.now + timeout
        // Two idle rounds: the first may have started before the caller's last event was produced.
        while control.idleGeneration.load(ordering: .acquiring) < start &+ 2 {
            if control.exited.load(ordering: .acquiring) { return control.snapshot().pending == 0 }
            if ContinuousClock.now >= deadline { return false }
            sleepThread(for: .microseconds(500))
        }
        return true
    }

    /// Asks the thread to deliver what it holds, including plugin output queued until now (for up
    /// to `timeout`), and exit; waits for it. The thread runs until `stop`, also after the ring
    /// finished, because plugins still publish while they shut down.
    /// Undelivered events are counted in `stats.pending` and logged.
    @discardableResult
    public func stop(timeout: Duration = .seconds(5)) -> RedisPublisherStats {
        let deadline = ContinuousClock.now + timeout
        control.stopDeadlineNs.store(monotonicNanos() + UInt64(max(0, timeout.nanoseconds)), ordering: .releasing)
        control.requestStop()
        let sem: DispatchSemaphore? = state.withLock { s in
            if case .running(let sem) = s { s = .stopped; return sem }
            return nil
        }
        if let sem {
            // The loop gives up at the deadline itself; allow a connect/command timeout on top.
            let slack = configuration.connect.commandTimeout + configuration.connect.connectTimeout
            let wait = max(.zero, deadline - ContinuousClock.now) + slack
            _ = sem.wait(timeout: .now() + .nanoseconds(Int(wait.nanoseconds)))
        }
        return stats
    }
}

/// Moves the loop onto its thread. `@unchecked Sendable` is safe here: `start` creates the loop,
/// hands it over through this box and never touches it again; afterwards only the publisher
/// thread uses it (shared state lives in `PublisherControl`, which is Sendable on its own).
private final class LoopHandoff: @unchecked Sendable {
    let loop: PublisherLoop
    init(_ loop: PublisherLoop) { self.loop = loop }
}

/// A point-in-time copy of the publisher's counters.
public struct RedisPublisherStats: Sendable, Equatable, CustomStringConvertible {
    /// Connected to Redis right now.
    public var connected: Bool
    /// Events Redis acknowledged (including duplicates of replays).
    public var published: UInt64
    /// Replayed commands Redis rejected as already stored ("equal or smaller" ID): delivered once.
    public var duplicates: UInt64
    /// Events taken into the spill buffer while Redis was down.
    public var spilled: UInt64
    /// Commands re-sent after a reconnect (the window of unacknowledged commands).
    public var replayed: UInt64
    /// Events dropped because the spill buffer was full while Redis was down.
    public var dropped: UInt64
    /// Events Redis refused with a permanent error, or answered with an unexpected reply type.
    public var rejected: UInt64
    /// Events the ring skipped because the publisher fell a whole ring behind.
    public var lapped: UInt64
    /// Successful reconnects.
    public var reconnects: UInt64
    /// Events held, not yet acknowledged (window + spill).
    public var pending: UInt64
    /// Plugin records acknowledged / rejected (too large, refused) / held.
    public var pluginPublished: UInt64
    public var pluginRejected: UInt64
    public var pluginPending: UInt64
    /// PUBLISH messages acknowledged (mode .publish or .both).
    public var channelPublished: UInt64
    /// Records re-sent under a new ID epoch because Redis refused them with a retryable error
    /// after accepting a later entry of the same stream (docs/redis.md, "Exactly once").
    public var reissued: UInt64
    /// Redis Cluster MOVED redirects followed (docs/redis.md, "Redis Cluster").
    public var redirects: UInt64
    /// The last connection or server error, redacted; nil when none yet.
    public var lastError: String?
    /// Bytes of the event store in use (the unacknowledged window and, while Redis is down, the
    /// spill), and its size (`Configuration.spillBytes`, rounded): past it, events are dropped.
    public var heldBytes: UInt64 = 0
    public var capacityBytes: UInt64 = 0

    public var description: String {
        "connected=\(connected) published=\(published) duplicates=\(duplicates) spilled=\(spilled) " +
        "replayed=\(replayed) dropped=\(dropped) rejected=\(rejected) lapped=\(lapped) " +
        "reconnects=\(reconnects) pending=\(pending) plugin_published=\(pluginPublished) " +
        "plugin_rejected=\(pluginRejected) plugin_pending=\(pluginPending) reissued=\(reissued) redirects=\(redirects)"
    }
}

/// State shared between the publisher thread and everyone else: atomics only (plus one mutex for
/// the last error text, written on the rare error path).
final class PublisherControl: Sendable {
    let connected = Atomic<Bool>(false)
    let published = Atomic<UInt64>(0)
    let duplicates = Atomic<UInt64>(0)
    let spilled = Atomic<UInt64>(0)
    let replayed = Atomic<UInt64>(0)
    let dropped = Atomic<UInt64>(0)
    let rejected = Atomic<UInt64>(0)
    let lapped = Atomic<UInt64>(0)
    let reconnects = Atomic<UInt64>(0)
    let pending = Atomic<UInt64>(0)
    let heldBytes = Atomic<UInt64>(0)
    let capacityBytes = Atomic<UInt64>(0)
    let pluginPublished = Atomic<UInt64>(0)
    let pluginRejected = Atomic<UInt64>(0)
    let pluginPending = Atomic<UInt64>(0)
    let channelPublished = Atomic<UInt64>(0)
    let reissued = Atomic<UInt64>(0)
    let redirects = Atomic<UInt64>(0)
    let idleGeneration = Atomic<UInt64>(0)
    let stopRequested = Atomic<Bool>(false)
    /// Wakes the publisher's thread when it sleeps on the ring (set by `start`).
    let wakeup = Mutex<ConsumerWakeup?>(nil)

    /// Asks the thread to finish, and wakes it if it sleeps.
    func requestStop() {
        stopRequested.store(true, ordering: .sequentiallyConsistent)
        wakeup.withLock { $0 }?.signal()
    }
    let stopDeadlineNs = Atomic<UInt64>(0)
    let exited = Atomic<Bool>(false)
    let lastError = Mutex<String?>(nil)
    /// Pipelined batch round trips, ns; written by the publisher thread only.
    let publishLatency = LatencyHistogram()

    func snapshot() -> RedisPublisherStats {
        RedisPublisherStats(
            connected: connected.load(ordering: .relaxed),
            published: published.load(ordering: .relaxed),
            duplicates: duplicates.load(ordering: .relaxed),
            spilled: spilled.load(ordering: .relaxed),
            replayed: replayed.load(ordering: .relaxed),
            dropped: dropped.load(ordering: .relaxed),
            rejected: rejected.load(ordering: .relaxed),
            lapped: lapped.load(ordering: .relaxed),
            reconnects: reconnects.load(ordering: .relaxed),
            pending: pending.load(ordering: .relaxed),
            pluginPublished: pluginPublished.load(ordering: .relaxed),
            pluginRejected: pluginRejected.load(ordering: .relaxed),
            pluginPending: pluginPending.load(ordering: .relaxed),
            channelPublished: channelPublished.load(ordering: .relaxed),
            reissued: reissued.load(ordering: .relaxed),
            redirects: redirects.load(ordering: .relaxed),
            lastError: lastError.withLock { $0 },
            heldBytes: heldBytes.load(ordering: .relaxed),
            capacityBytes: capacityBytes.load(ordering: .relaxed))
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `pb_event.timestamp_ns`.
public func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}


