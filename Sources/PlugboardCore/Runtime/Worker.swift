import CPlugboard
import CPlugboardSupport
import Dispatch
import Logging
import PlugboardSystem
import Synchronization

/// The lifecycle state of a plugin's worker.
public enum WorkerState: UInt8, Sendable, CustomStringConvertible {
    case starting, running, failed, stopped
    /// A worker process crashed and waits for its restart (backoff).
    case restarting
    /// It crashed too often: it gets no more events (docs/operations.md, "Crashes").
    case quarantined

    public var description: String {
        switch self {
        case .starting: "starting"
        case .running: "running"
        case .failed: "failed"
        case .stopped: "stopped"
        case .restarting: "restarting"
        case .quarantined: "quarantined"
        }
    }
}

/// Where a plugin's code runs (manifest `[worker] isolation`, daemon `plugins.isolation`).
public enum Isolation: String, Sendable, CaseIterable {
    /// A worker process of its own: a crash, hang or stray write ends only that process.
    case process
    /// A thread of the host: the lowest latency, for trusted plugins; a crash ends the host.
    case thread
}

/// One plugin's worker, whatever its isolation: what the runtime, the shutdown steps, status
/// and metrics need of it.
public protocol PluginWorker: AnyObject, Sendable {
    var name: String { get }
    var version: String { get }
    /// The plugin file it runs.
    var path: String { get }
    /// The file the plugin was found as (hot reload watches it).
    var sourcePath: String { get }
    var isolation: Isolation { get }
    var state: WorkerState { get }
    var activity: WorkerActivity { get }
    var stats: PluginStats { get }
    /// Start until init returned; nil until then.
    var startDuration: Duration? { get }
    /// Receipt → callback entry, and callback durations, nanoseconds.
    var latency: LatencyHistogram { get }
    var callbackDuration: LatencyHistogram { get }
    /// The sizes of the batches handed to the plugin so far (docs/operations.md, "Memory and batching").
    var batchSizes: BatchSizes.Snapshot { get }
    var metricsSnapshot: PluginContext.Metrics { get }
    var configuration: PluginConfiguration { get }
    /// Lets a drained worker call its plugin's shutdown.
    func openShutdownGate()
    /// Stops at once without draining (abort).
    func requestStop()
    /// Waits until the worker ended (nil: no limit). At the deadline a process is killed; a thread
    /// cannot be. Returns whether it ended in time.
    func join(until deadline: ContinuousClock.Instant?) -> Bool
}

/// Where a worker's thread is, for naming what a shutdown waits on ("in events callback").
public enum WorkerActivity: UInt8, Sendable, CustomStringConvertible {
    /// Initialising, or waiting for events.
    case idle
    case inEvents
    case inResync
    /// Read the closed ring to its end; waits for `Runtime.shutdownPlugins` to call shutdown.
    case drained
    case inShutdown
    /// Shutdown returned (or init failed): the thread has ended or is ending.
    case done

    public var description: String {
        switch self {
        case .idle: "idle"
        case .inEvents: "in events callback"
        case .inResync: "in resync callback"
        case .drained: "drained"
        case .inShutdown: "in shutdown"
        case .done: "done"
        }
    }
}

/// Decides whether a plugin receives an event (the manifests' match index supplies it).
public typealias EventFilter = @Sendable (UnsafePointer<pb_event>) -> Bool

/// One plugin's isolated worker: a dedicated thread reading batches from its own ring
/// cursor and handing the plugin pointers into the ring slots (zero-copy; valid only
/// during the call).
public final class Worker: PluginWorker {
    /// Longest sleep of an idle worker thread, ns (see `run`'s `.empty`).
    static let idleWait: UInt64 = 1_000_000_000
    public let plugin: LoadedPlugin
    public let context: PluginContext
    let consumer: RingConsumer
    let batchSize: Int
    let filter: EventFilter?
    /// Longest a callback may take before it counts as an overrun (0: no deadline), ns.
    let deadlineNanoseconds: UInt64
    let logger: Logger
    /// CPUs the worker thread is pinned to (empty: not pinned).
    let cpus: CPUAffinity
    /// The nice value of the worker thread (manifest `[worker] nice`; nil: the daemon's).
    let nice: Int32?
    /// The settle window's settings (nil: every event at once, today's path).
    let settleOptions: SettleOptions?
    /// The settle window itself: created and used by the worker thread only.
    nonisolated(unsafe) var settle: SettleWindow?
    /// The settle window's counters, published for `stats` (the window itself is the thread's).
    let settleCoalesced = Atomic<UInt64>(0)
    let settleFlaps = Atomic<UInt64>(0)
    let settleOverflow = Atomic<UInt64>(0)
    /// The file the plugin was found as (a hot reload loads a private copy of a new build of it).
    public let sourcePath: String
    /// Set on a replacement (hot reload): after init it waits for its predecessor's state.
    let handoff: Handoff?
    /// Set on a worker being replaced: it hands its cursor and state over as it stops.
    let successor = Mutex<Worker?>(nil)

    // Counters read by `stats` from other threads; written by the worker thread.
    let delivered = Atomic<UInt64>(0)
    let filtered = Atomic<UInt64>(0)
    let errors = Atomic<UInt64>(0)
    let laps = Atomic<UInt64>(0)
    let missed = Atomic<UInt64>(0)
    let resyncs = Atomic<UInt64>(0)
    let overruns = Atomic<UInt64>(0)
    let cursor = Atomic<UInt64>(0)
    let stateValue = Atomic<UInt8>(WorkerState.starting.rawValue)
    let stopRequested = Atomic<Bool>(false)
    let activityValue = Atomic<UInt8>(WorkerActivity.idle.rawValue)
    /// Opened by `Runtime.shutdownPlugins` (or a stop request): a drained worker then calls its
    /// plugin's shutdown. Keeps draining and shutting down two steps a shutdown can time apart.
    let shutdownGate = DispatchSemaphore(value: 0)
    /// From `start` to init returning (the worker ready to read the ring), ns; 0 until then.
    let startNanoseconds = Atomic<UInt64>(0)
    // Written by `start` before the thread exists, read by the thread.
    nonisolated(unsafe) var startedAt: UInt64 = 0
    let lastError = Mutex<String?>(nil)
    let initError = Mutex<PluginLoadError?>(nil)
    /// Receipt → callback entry, nanoseconds, per event.
    public let latency = LatencyHistogram()
    /// Duration of each events callback, nanoseconds.
    public let callbackDuration = LatencyHistogram()
    /// Sizes of the batches handed to the plugin (one record per callback).
    let batchSizeHistogram = BatchSizes()
    public var batchSizes: BatchSizes.Snapshot { batchSizeHistogram.snapshot }
    // Written once by `start`, read by `join`.
    nonisolated(unsafe) var thread: NativeThread?

    init(plugin: LoadedPlugin, context: PluginContext, consumer: RingConsumer, batchSize: Int,
         filter: EventFilter?, deadline: Duration? = nil, cpus: CPUAffinity = .none, nice: Int32? = nil,
         settle: SettleOptions? = nil, sourcePath: String? = nil, handoff: Handoff? = nil, logger: Logger) {
        self.plugin = plugin
        self.sourcePath = sourcePath ?? plugin.path
        self.handoff = handoff
        self.context = context
        self.consumer = consumer
        self.batchSize = max(1, batchSize)
        self.filter = filter
        if let deadline, deadline > .zero {
            deadlineNanoseconds = UInt64(deadline.nanoseconds)
        } else {
            deadlineNanoseconds = 0
        }
        self.logger = logger
        self.cpus = cpus
        self.nice = nice
        self.settleOptions = settle
        // Pinned to one CPU with the source, a spin can never see the next event: the source
        // runs only once this thread yields. Sleep at once instead of delaying it.
        if cpus.cpus.count == 1 { consumer.spinLimit = 0 }
        cursor.store(consumer.cursor, ordering: .relaxed)
    }

    public var name: String { plugin.name }
    public var version: String { plugin.version }
    public var path: String { plugin.path }
    public var isolation: Isolation { .thread }
    public var metricsSnapshot: PluginContext.Metrics { context.metricsSnapshot }
    public var configuration: PluginConfiguration { context.configuration }

    public func join(until deadline: ContinuousClock.Instant?) -> Bool {
        guard let thread else { return true }
        guard let deadline else { return thread.join() }
        return thread.join(timeout: max(.zero, deadline - ContinuousClock.now))
    }

    /// The worker thread's kernel id (0 before it runs).
    public var threadID: Int32 { thread?.threadID ?? 0 }

    public var state: WorkerState { WorkerState(rawValue: stateValue.load(ordering: .acquiring)) ?? .failed }

    /// How long the worker took to start: thread creation until its plugin's init returned.
    /// nil until then (or when init failed).
    public var startDuration: Duration? {
        let ns = startNanoseconds.load(ordering: .relaxed)
        return ns == 0 ? nil : .nanoseconds(Int64(ns))
    }

    /// Starts the thread; it calls the plugin's init first.
    func start() {
        startedAt = pbs_monotonic_ns()
        thread = NativeThread(name: "pb-\(plugin.name)", cpus: cpus) { [self] in run() }
    }

    /// Waits until init finished (success or failure), at most `deadline`. A thread cannot be
    /// stopped: past the deadline the worker is abandoned (it reads nothing, holds no flow
    /// control, and if its init ever returns it shuts the plugin down and ends).
    func waitForInit(deadline: Duration? = nil) -> PluginLoadError? {
        let end = deadline.map { ContinuousClock.now + $0 }
        while state == .starting {
            if let end, ContinuousClock.now >= end {
                stopRequested.store(true, ordering: .releasing)
                consumer.deregister()
                if state == .starting {
                    lastError.withLock { $0 = "init did not return within \(deadline!.shortText)" }
                    return PluginLoadError(file: plugin.path, kind: .isolated(code: "init-deadline",
                        message: "\(plugin.path): init did not return within \(deadline!.shortText); the plugin runs as a thread, which cannot be stopped: it is abandoned (fix: make init return quickly, or run it with isolation = \"process\", which kills it)"))
                }
                break
            }
            usleepShort()
        }
        return initError.withLock { $0 }
    }

    /// Where the worker's thread is now.
    public var activity: WorkerActivity { WorkerActivity(rawValue: activityValue.load(ordering: .acquiring)) ?? .done }

    /// Asks the worker to stop at once, without draining.
    public func requestStop() {
        stopRequested.store(true, ordering: .releasing)
        consumer.ring.wakeAll()
        shutdownGate.signal()
    }

    /// Lets a drained worker call its plugin's shutdown (a no-op for one that is not there yet:
    /// it passes the gate as soon as it drains).
    public func openShutdownGate() { shutdownGate.signal() }

    private func enter(_ a: WorkerActivity) { activityValue.store(a.rawValue, ordering: .releasing) }

    private func run() {
        if let nice {
            // Linux keeps nice per thread; set before init, so threads the plugin starts inherit it.
            if let problem = WorkerPriority.applyNice(nice) {
                logger.warning("plugin worker priority not applied: \(problem)", metadata: ["plugin": "\(plugin.name)"])
            }
        }
        do {
            try plugin.initialize(context: context)
        } catch {
            initError.withLock { $0 = error }
            lastError.withLock { $0 = error.description }
            consumer.deregister()
            enter(.done)
            stateValue.store(WorkerState.failed.rawValue, ordering: .releasing)
            return
        }
        startNanoseconds.store(max(1, pbs_monotonic_ns() &- startedAt), ordering: .relaxed)
        if stopRequested.load(ordering: .acquiring) {
            // Abandoned while in init (past the init deadline): never read the ring.
            plugin.shutdown()
            enter(.done)
            stateValue.store(WorkerState.failed.rawValue, ordering: .releasing)
            return
        }
        stateValue.store(WorkerState.running.rawValue, ordering: .releasing)
        if let handoff {
            // A replacement: read nothing until the predecessor stopped and handed over.
            handoff.go.wait()
            if let saved = handoff.state.withLock({ $0 }) {
                let status = plugin.restoreState(saved)
                if status != PB_OK { recordError("restore_state returned \(statusName(status)); the plugin starts without its predecessor's state") }
            }
        }
        let batch = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: batchSize)
        let selected = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: batchSize)
        defer {
            batch.deallocate()
            selected.deallocate()
        }
        if let settleOptions { settle = SettleWindow(settleOptions) }
        loop: while !stopRequested.load(ordering: .relaxed) {
            if let settle, settle.held > 0, pbs_monotonic_ns() >= settle.nextDue {
                deliverSettled(settle, upTo: pbs_monotonic_ns(), using: batch)
            }
            switch consumer.poll(max: batchSize, into: batch) {
            case .events(let n):
                var k = 0
                if let filter {
                    for i in 0..<n where filter(batch[i]!) {
                        selected[k] = batch[i]
                        k += 1
                    }
                } else {
                    for i in 0..<n { selected[i] = batch[i] }
                    k = n
                }
                // A plugin in a settle window gets its events later, from copies (deliverSettled);
                // only those that found no room in the window go now. Others: one branch.
                var direct = k
                if let settle { direct = settle.hold(selected, count: k, now: pbs_monotonic_ns()) }
                if direct > 0 { call(selected, direct) }
                if consumer.commit() {
                    delivered.add(UInt64(direct), ordering: .relaxed)
                    filtered.add(UInt64(n - k), ordering: .relaxed)
                    cursor.store(consumer.cursor, ordering: .relaxed)
                    if settle != nil { publishSettleCounters() }
                } else {
                    // Overwritten while the plugin read it: what it saw (or the window copied) may be torn.
                    settle?.discardAll()
                    lapped()
                }
            case .lapped:
                settle?.discardAll()
                lapped()
            case .empty:
                // Events and `requestStop` wake this thread (the ring's futex); the timeout is only
                // a safety net, long so that an idle plugin costs nothing: at 100 ms, 100 idle
                // plugins took 1.4 % of a core (docs/benchmarks.md, "An idle daemon").
                if let settle {
                    consumer.wait(timeoutNanoseconds: settle.sleepNanoseconds(now: pbs_monotonic_ns(), idle: Self.idleWait))
                } else {
                    consumer.wait(timeoutNanoseconds: Self.idleWait)
                }
            case .finished:
                break loop
            }
        }
        // The end of the stream, a hot reload's handover or a stop: what the window holds goes now,
        // so nothing held is lost (the successor reads on from this cursor).
        if let settle, settle.held > 0 { deliverSettled(settle, upTo: .max, using: batch) }
        if let next = successor.withLock({ $0 }), let handoff = next.handoff {
            // Hot reload: the replacement reads on from exactly here (repositioned while this
            // consumer is still registered, so nothing it needs can be lapped meanwhile).
            next.consumer.reposition(to: consumer.cursor)
            let saved = plugin.supportsStateTransfer ? plugin.saveState() : nil
            handoff.state.withLock { $0 = saved }
        }
        consumer.deregister()
        enter(.drained)
        // A stop request (hot reload, abort) opens the gate too, so only a drain waits here.
        if !stopRequested.load(ordering: .acquiring) { shutdownGate.wait() }
        enter(.inShutdown)
        plugin.shutdown()
        enter(.done)
        stateValue.store(WorkerState.stopped.rawValue, ordering: .releasing)
    }

    /// Calls the plugin's events callback with `k` events, timing it.
    @inline(__always) private func call(_ selected: UnsafeMutablePointer<UnsafePointer<pb_event>?>, _ k: Int) {
        let start = pbs_monotonic_ns()
        for i in 0..<k { latency.record(start &- selected[i]!.pointee.timestamp_ns) }
        batchSizeHistogram.record(k)
        enter(.inEvents)
        let status = plugin.deliver(selected, count: UInt32(k))
        enter(.idle)
        let took = pbs_monotonic_ns() &- start
        callbackDuration.record(took)
        if deadlineNanoseconds > 0 && took > deadlineNanoseconds { overran(took) }
        if status != PB_OK { recordError("events callback returned \(statusName(status))") }
    }

    /// Delivers the devices whose window closed by `now` (every held one for `.max`), a batch at a time.
    private func deliverSettled(_ settle: SettleWindow, upTo now: UInt64, using buffer: UnsafeMutablePointer<UnsafePointer<pb_event>?>) {
        while true {
            let k = settle.takeDue(now: now, into: buffer, max: batchSize) { e, n in
                if SettleWindow.reportsFlap(n) {
                    logger.notice("device flapped within the settle window: added and removed, delivered as nothing",
                                  metadata: ["plugin": "\(plugin.name)", "syspath": "\(e.string(.syspath))",
                                             "id": "\(SettleWindow.deviceID(e))", "device_flaps": "\(n)"])
                }
            }
            if k > 0 {
                call(buffer, k)
                delivered.add(UInt64(k), ordering: .relaxed)
            }
            settle.release()
            if k < batchSize { break }
        }
        publishSettleCounters()
    }

    private func publishSettleCounters() {
        guard let settle else { return }
        settleCoalesced.store(settle.coalesced, ordering: .relaxed)
        settleFlaps.store(settle.flaps, ordering: .relaxed)
        settleOverflow.store(settle.overflow, ordering: .relaxed)
    }

    /// Adds a predecessor's counters to this worker's (a hot reload keeps a plugin's totals;
    /// laps and missed events are its consumer's own and start again).
    func inheritCounters(from old: Worker) {
        func add(_ mine: borrowing Atomic<UInt64>, _ theirs: borrowing Atomic<UInt64>) {
            mine.add(theirs.load(ordering: .relaxed), ordering: .relaxed)
        }
        add(delivered, old.delivered)
        add(filtered, old.filtered)
        add(errors, old.errors)
        add(resyncs, old.resyncs)
        add(overruns, old.overruns)
        add(settleCoalesced, old.settleCoalesced)
        add(settleFlaps, old.settleFlaps)
        add(settleOverflow, old.settleOverflow)
    }

    /// The consumer was lapped (before or during a batch): publish its counts, resync the plugin.
    private func lapped() {
        publishSettleCounters()
        let skipped = consumer.missed &- missed.load(ordering: .relaxed)
        laps.store(consumer.laps, ordering: .relaxed)
        missed.store(consumer.missed, ordering: .relaxed)
        cursor.store(consumer.cursor, ordering: .relaxed)
        logger.warning("plugin fell a whole ring behind and was lapped; resynchronising from the device table",
                       metadata: ["plugin": "\(plugin.name)", "missed": "\(skipped)"])
        let snapshot = context.deviceTable.snapshot()
        enter(.inResync)
        let status = plugin.resync(snapshot.pointers, count: UInt32(snapshot.count))
        enter(.idle)
        resyncs.add(1, ordering: .relaxed)
        if status != PB_OK { recordError("resync callback returned \(statusName(status))") }
    }

    /// A callback ran past the manifest's `deadline_ms`. A thread cannot be preempted: the
    /// overrun is counted and logged (the first, then every 100th).
    private func overran(_ took: UInt64) {
        let n = overruns.add(1, ordering: .relaxed).newValue
        if n == 1 || n % 100 == 0 {
            logger.warning("plugin callback overran its deadline",
                           metadata: ["plugin": "\(plugin.name)", "took_ms": "\(took / 1_000_000)",
                                      "deadline_ms": "\(deadlineNanoseconds / 1_000_000)", "overruns": "\(n)"])
        }
    }

    private func recordError(_ message: String) {
        errors.add(1, ordering: .relaxed)
        lastError.withLock { $0 = message }
    }

    /// A snapshot of this worker's counters.
    public var stats: PluginStats {
        let c = context.publishCounts
        return PluginStats(
            name: plugin.name, version: plugin.version, path: plugin.path, state: state,
            events: delivered.load(ordering: .relaxed), filtered: filtered.load(ordering: .relaxed),
            errors: errors.load(ordering: .relaxed), laps: laps.load(ordering: .relaxed),
            missed: missed.load(ordering: .relaxed), resyncs: resyncs.load(ordering: .relaxed),
            overruns: overruns.load(ordering: .relaxed), batchSize: batchSize,
            lag: consumer.ring.published &- cursor.load(ordering: .relaxed),
            published: c.accepted, publishRefused: c.refused,
            lastError: lastError.withLock { $0 }, isolation: .thread, logDropped: context.logDropped,
            settleWindow: settleOptions?.window, settleCoalesced: settleCoalesced.load(ordering: .relaxed),
            settleFlaps: settleFlaps.load(ordering: .relaxed), settleOverflow: settleOverflow.load(ordering: .relaxed))
    }
}

/// One plugin's counters, as `plugboard run` prints them and `/plugins` serves them.
public struct PluginStats: Sendable, Equatable {
    public var name: String
    public var version: String
    public var path: String
    public var state: WorkerState
    /// Events handed to the plugin.
    public var events: UInt64
    /// Events its filter did not select.
    public var filtered: UInt64
    /// Non-zero statuses from its callbacks.
    public var errors: UInt64
    /// Times it fell a whole ring behind.
    public var laps: UInt64
    /// Events skipped by laps.
    public var missed: UInt64
    /// Resync callbacks made.
    public var resyncs: UInt64
    /// Callbacks that ran past the plugin's deadline (manifest `[worker] deadline_ms`).
    public var overruns: UInt64
    /// Most events per callback for this plugin.
    public var batchSize: Int
    /// Events published but not yet consumed.
    public var lag: UInt64
    /// Records it published through the host API, and those refused.
    public var published: UInt64
    public var publishRefused: UInt64
    public var lastError: String?
    public var isolation: Isolation = .thread
    /// The worker process's pid (0 in thread mode, or while none runs).
    public var pid: Int32 = 0
    /// Worker processes started again after a crash.
    public var restarts: UInt64 = 0
    /// Crashes by reason ("SIGSEGV", "exit_3", "deadline", "init_deadline", "stalled", "protocol").
    public var crashes: [String: UInt64] = [:]
    /// Poison events withheld from it (it crashed on each twice).
    public var skipped: UInt64 = 0
    /// Why it was quarantined, when it was.
    public var quarantineReason: String? = nil
    /// The last crash, described ("killed by SIGSEGV (Segmentation fault) in events callback, sequence 1000").
    public var lastCrash: String? = nil
    /// Log messages dropped by the per-plugin rate limit.
    public var logDropped: UInt64 = 0
    /// The plugin's settle window (nil: none; docs/operations.md, "Settle window").
    public var settleWindow: Duration? = nil
    /// Events that entered the window and were not delivered as themselves (a later event of the
    /// device replaced them, a flap dropped them, or a resync superseded them).
    public var settleCoalesced: UInt64 = 0
    /// Windows where a device was added and removed again: delivered as nothing.
    public var settleFlaps: UInt64 = 0
    /// Events delivered at once because the window held its most devices.
    public var settleOverflow: UInt64 = 0
    /// Worker processes replaced by a fresh one on purpose (`plugins.recycle_after_*`).
    public var recycles: UInt64 = 0
}

func usleepShort() {
    sleepThread(for: .microseconds(200))
}

#if canImport(Glibc)
import Glibc
#endif
