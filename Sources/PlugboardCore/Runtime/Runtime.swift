import CPlugboard
import Logging
import Synchronization

/// Settings for a `Runtime`.
public struct RuntimeOptions: Sendable {
    /// Ring slots (rounded up to a power of two).
    public var ringSlots: Int = 4096
    /// The ring's file (`state.ring_dir`/ring); nil keeps it in a sealed memfd.
    public var ringFile: String?
    /// The first event's sequence: 1, or one past what the previous run published (its state files).
    public var firstSequence: UInt64 = 1
    /// Most events handed to a plugin per call.
    public var batchSize: Int = 64
    /// Configuration per plugin name, handed to init and `config_get`.
    public var pluginConfiguration: [String: PluginConfiguration] = [:]
    /// Bound of the plugin output queue (records).
    public var outputQueueRecords: Int = 4096
    /// Most devices the device table holds (`performance.max_devices`).
    public var maxDevices: Int = DeviceTable.defaultMaxDevices
    /// Largest record a plugin may `publish` (bytes): what the publisher carries. Larger records
    /// get PB_ERR_INVALID at the call, in both isolation modes.
    public var maxRecordBytes: Int = 64 << 10
    /// What each plugin's `log` calls may cost the host's log.
    public var logLimits = PluginLogLimits()
    /// Finite sources wait for slow consumers instead of lapping them (default true).
    public var flowControlForFiniteSources = true
    /// CPUs the source thread and every plugin worker are pinned to (empty: not pinned).
    /// See `CPUAffinity` for the trade.
    public var cpuAffinity: CPUAffinity = .none
    /// How worker processes run (nil: only thread workers can be started).
    public var processPolicy: ProcessPolicy?
    /// Longest a thread plugin's init may take before it is abandoned and refused.
    public var initDeadline: Duration = .seconds(5)
    /// When worker processes are replaced by fresh ones (nil: never).
    public var recycle: RecyclePolicy?

    public init() {}
}

/// An opened plugin waiting for its worker, with its per-plugin settings.
struct PendingPlugin {
    var plugin: LoadedPlugin
    var filter: EventFilter?
    var configuration: PluginConfiguration?
    var batchSize: Int?
    var deadline: Duration?
    var settle: SettleOptions?
    var priority: WorkerPriority
}

/// One plugin that did not make it, with the reason (shown by `run`, `explain`, `/plugins`).
public struct PluginFailure: Sendable, CustomStringConvertible {
    public var path: String
    public var error: PluginLoadError
    public var description: String { error.description }
}

/// The host runtime: one ring, one source, one worker thread per plugin, any extra
/// consumers (the Redis publisher). It wires the parts; each part does its own work.
///
/// The host (PlugboardHost) finds the plugins: from manifests, opening each with `PluginLoader`
/// and adding it with `addPlugin`, or all libraries of a directory with `addLibraries(in:)`.
/// Typical use: `addPlugin` for each,
/// `startWorkers()`, `start(source:)`, then the shutdown steps `stopSource(until:)`,
/// `drain(until:)`, `shutdownPlugins(until:)` (or `stop(deadline:)`, all three at once).
public final class Runtime: Sendable {
    public let options: RuntimeOptions
    public let ring: EventRing
    public let deviceTable: DeviceTable
    public let outputQueue: OutputQueue
    public let logger: Logger
    let producer: RingProducer

    private struct State {
        var loaded: [PendingPlugin] = []
        var pendingProcesses: [ProcessPluginSpec] = []
        var workers: [any PluginWorker] = []
        var failures: [PluginFailure] = []
        var sourceThread: NativeThread?
        var sourceContext: SourceContext?
        var sourceError: String?
        var sourceName: String?
        /// Workers whose init is under way (for an abort, and for naming them).
        var starting: [any PluginWorker] = []
        var startAborted = false
        var recycler: NativeThread?
    }
    private let state = Mutex(State())
    /// Set when the recycler must stop (the shutdown began).
    let recyclerStop = Atomic<Bool>(false)

    /// Creates the ring and the shared tables.
    /// - Throws: `PlugboardError` when the ring cannot be created.
    public init(options: RuntimeOptions, logger: Logger) throws {
        try options.cpuAffinity.validate()
        self.options = options
        self.logger = logger
        ring = try EventRing(slotCount: options.ringSlots, file: options.ringFile, firstSequence: options.firstSequence,
                             prefault: .background)
        producer = ring.makeProducer()
        deviceTable = DeviceTable(maxDevices: options.maxDevices)
        outputQueue = OutputQueue(maxRecords: options.outputQueueRecords, maxRecordBytes: options.maxRecordBytes) { [logger] records, bytes in
            logger.warning("plugin output queue full: publish calls are refused with PB_ERR_FULL until it drains (its reader, the Redis publisher, is behind or down) (fix: check Redis; raise plugins.output_queue_records for longer bursts)",
                           metadata: ["records": "\(records)", "bytes": "\(bytes)", "max_records": "\(options.outputQueueRecords)"])
        }
    }

    /// Opens every `*.so` in `directories` and adds it, without manifests (no filter, no
    /// `[config]`, no order): the host's `plugins.manifests = false` mode, and the core tests.
    /// Failures are recorded (see `failures`) and logged; they never stop the others.
    /// `refuse` may turn a file away before it is opened (the host's file trust check), with why.
    /// - Returns: per plugin name, the time `PluginLoader.open` took.
    /// - Throws: `PlugboardError` only when a directory cannot be read.
    @discardableResult
    public func addLibraries(in directories: [String], refuse: ((String) -> String?)? = nil) throws -> [String: Duration] {
        let clock = ContinuousClock()
        var times: [String: Duration] = [:]
        for path in try PluginLoader.discover(in: directories) {
            if let why = refuse?(path) {
                recordFailure(path: path, PluginLoadError(file: path, kind: .skipped(reason: why)))
                continue
            }
            let t = clock.now
            do {
                let plugin = try PluginLoader.open(path)
                if addPlugin(plugin) { times[plugin.name] = clock.now - t }
            } catch {
                recordFailure(path: path, error)
            }
        }
        return times
    }

    /// Adds an opened plugin. `filter` selects its events; `configuration` overrides
    /// `options.pluginConfiguration[name]`; `batchSize` overrides `options.batchSize` for this
    /// plugin; a callback longer than `deadline` is counted as an overrun and logged; `settle`
    /// holds and coalesces each device's events for this plugin (nil: every event at once);
    /// `priority` sets the worker thread's nice value and CPUs (its CPUs replace `options.cpuAffinity`).
    /// Returns false (and records why) for a duplicate name.
    @discardableResult
    public func addPlugin(_ plugin: LoadedPlugin, filter: EventFilter? = nil, configuration: PluginConfiguration? = nil,
                          batchSize: Int? = nil, deadline: Duration? = nil, settle: SettleOptions? = nil,
                          priority: WorkerPriority = WorkerPriority()) -> Bool {
        if isDuplicate(plugin.name) {
            plugin.unload()
            recordFailure(path: plugin.path, PluginLoadError(file: plugin.path, kind: .skipped(
                reason: "another plugin named '\(plugin.name)' is already loaded (fix: remove one of them from the plugin directories)")))
            return false
        }
        state.withLock { $0.loaded.append(PendingPlugin(plugin: plugin, filter: filter, configuration: configuration,
                                                        batchSize: batchSize, deadline: deadline, settle: settle,
                                                        priority: priority)) }
        logger.info("plugin opened", metadata: ["plugin": "\(plugin.name)", "version": "\(plugin.version)",
                                                "path": "\(plugin.path)", "abi": "1.\(plugin.abiMinor)"])
        return true
    }

    func isDuplicate(_ name: String) -> Bool {
        state.withLock { s in
            s.loaded.contains { $0.plugin.name == name } || s.pendingProcesses.contains { $0.name == name }
                || s.workers.contains { $0.name == name && $0.state != .failed }
        }
    }

    /// Adds a plugin to run in a worker process of its own (`options.processPolicy` says how).
    /// Nothing of it is loaded into this process. Returns false (and records why) for a duplicate
    /// name or when process isolation is not available.
    @discardableResult
    public func addProcessPlugin(_ spec: ProcessPluginSpec) -> Bool {
        if isDuplicate(spec.name) {
            recordFailure(path: spec.path, PluginLoadError(file: spec.path, kind: .skipped(
                reason: "another plugin named '\(spec.name)' is already loaded (fix: remove one of them from the plugin directories)")))
            return false
        }
        guard options.processPolicy != nil else {
            recordFailure(path: spec.path, PluginLoadError(file: spec.path, kind: .skipped(
                reason: "isolation \"process\" is not available in this host (fix: set isolation = \"thread\")")))
            return false
        }
        // The host checks the ELF headers itself before a worker is spawned: a truncated or
        // malformed .so is refused here, with its reason, rather than found by a worker dying.
        do { _ = try ELFImage.inspect(path: spec.path) } catch {
            recordFailure(path: spec.path, error)
            return false
        }
        state.withLock { $0.pendingProcesses.append(spec) }
        logger.info("plugin found", metadata: ["plugin": "\(spec.name)", "version": "\(spec.version)",
                                               "path": "\(spec.path)", "isolation": "process"])
        return true
    }

    /// Records a plugin that will not run.
    public func recordFailure(path: String, _ error: PluginLoadError) {
        logger.error("plugin rejected: \(error.description)")
        state.withLock { $0.failures.append(PluginFailure(path: path, error: error)) }
    }

    /// Starts one worker per added plugin: a thread for each opened plugin, a process for each
    /// process plugin; each calls its plugin's init. Waits until every init returned (a worker
    /// process's init is killed at the policy's deadline). Plugins whose init failed are
    /// recorded in `failures`.
    /// - Returns: the number of plugins running.
    @discardableResult
    public func startWorkers() -> Int {
        if startAborted {
            state.withLock {
                $0.loaded = []
                $0.pendingProcesses = []
            }
            return 0
        }
        let (loaded, processes) = state.withLock { s -> ([PendingPlugin], [ProcessPluginSpec]) in
            defer {
                s.loaded = []
                s.pendingProcesses = []
            }
            return (s.loaded, s.pendingProcesses)
        }
        var started: [any PluginWorker] = []
        for spec in processes {
            do {
                let w = try ProcessWorker(spec: spec, policy: options.processPolicy!, ring: ring, deviceTable: deviceTable,
                                          outputQueue: outputQueue, logger: logger, logLimits: options.logLimits)
                w.start()
                started.append(w)
            } catch {
                recordFailure(path: spec.path, PluginLoadError(file: spec.path, kind: .isolated(code: "worker",
                    message: "\(spec.path): cannot set up the worker process: \(error)")))
            }
        }
        for p in loaded {
            let context = PluginContext(
                name: p.plugin.name, configuration: p.configuration ?? options.pluginConfiguration[p.plugin.name] ?? [:],
                outputQueue: outputQueue, deviceTable: deviceTable, logger: logger, logLimits: options.logLimits)
            let worker = Worker(plugin: p.plugin, context: context, consumer: ring.makeConsumer(name: p.plugin.name),
                                batchSize: p.batchSize ?? options.batchSize, filter: p.filter, deadline: p.deadline,
                                cpus: p.priority.cpus.isEmpty ? options.cpuAffinity : p.priority.cpus,
                                nice: p.priority.nice, settle: p.settle, logger: logger)
            worker.start()
            started.append(worker)
        }
        state.withLock { $0.starting = started }
        if state.withLock({ $0.startAborted }) { abortStart() }
        var running: [any PluginWorker] = []
        for w in started {
            let error: PluginLoadError?
            if let t = w as? Worker {
                error = t.waitForInit(deadline: options.initDeadline)
                if let error, case .isolated(code: "init-deadline", _) = error.kind {
                    logger.error("plugin init did not return in time; its thread is abandoned", metadata: ["plugin": "\(t.name)"])
                } else if error != nil {
                    t.thread?.join()
                    t.plugin.unload()
                }
            } else {
                error = (w as! ProcessWorker).waitForInit()
            }
            if let error { recordFailure(path: w.path, error) } else { running.append(w) }
            state.withLock { s in s.starting.removeAll { $0 === w } }
        }
        state.withLock { $0.workers.append(contentsOf: running) }
        startRecycler()
        return running.count
    }

    /// Starts the recycler thread once, when a recycle policy is set (see `Runtime+Recycle`).
    func startRecycler() {
        guard let policy = options.recycle, policy.isActive else { return }
        state.withLock { s in
            guard s.recycler == nil else { return }
            s.recycler = NativeThread(name: "pb-recycle") { [weak self] in self?.recycleLoop(policy) }
        }
    }

    /// Stops the recycler and waits for a recycle under way to finish.
    func stopRecycler() {
        recyclerStop.store(true, ordering: .relaxed)
        let t = state.withLock { s -> NativeThread? in defer { s.recycler = nil }; return s.recycler }
        _ = t?.join()
    }

    /// Stops a start under way: worker processes still in init are killed (their plugins are
    /// refused, "stopped during init"); later `startWorkers` calls start nothing new.
    public func abortStart() {
        let starting = state.withLock { s -> [any PluginWorker] in
            s.startAborted = true
            return s.starting
        }
        for w in starting where w.isolation == .process { w.requestStop() }
    }

    /// Whether `abortStart` was called.
    public var startAborted: Bool { state.withLock { $0.startAborted } }
    /// Names of the plugins whose init is under way.
    public var startingWorkers: [String] { state.withLock { $0.starting.map(\.name) } }

    /// Starts `source` on its own thread. A finite source closes the ring when done.
    public func start(source: some EventSource) {
        let context = SourceContext(producer: producer, deviceTable: deviceTable, logger: logger)
        producer.flowControl = source.isFinite && options.flowControlForFiniteSources
        let thread = NativeThread(name: "pb-source", cpus: options.cpuAffinity) { [self] in
            do {
                try source.run(context)
            } catch {
                logger.error("event source \(source.name) failed: \(error)")
                state.withLock { $0.sourceError = "\(error)" }
            }
            producer.close()
        }
        state.withLock {
            $0.sourceThread = thread
            $0.sourceContext = context
            $0.sourceName = source.name
        }
        logger.info("event source started", metadata: ["source": "\(source.name)",
                                                       "cpu_affinity": "\(options.cpuAffinity.isEmpty ? "none" : options.cpuAffinity.description)"])
    }

    /// The running source's counters (published, truncated, resynced), if any.
    public var sourceContext: SourceContext? { state.withLock { $0.sourceContext } }
    /// The error that ended the source, if it failed.
    public var sourceError: String? { state.withLock { $0.sourceError } }

    /// Waits until the source ended and every worker read the ring to its end. The plugins are
    /// not shut down yet: `shutdownPlugins(until:)` does that.
    public func waitUntilSourceDrained() {
        let (source, workers) = state.withLock { ($0.sourceThread, $0.workers) }
        source?.join()
        for w in workers {
            while w.activity != .drained && w.activity != .done { usleepShort() }
        }
    }

    /// Waits until the source ended, every worker drained the ring and shut its plugin down.
    public func waitUntilDrained() {
        waitUntilSourceDrained()
        _ = shutdownPlugins(until: nil)
    }

    /// What was still busy when a deadline passed.
    public struct StopReport: Sendable {
        /// Components that did not finish in time ("source", "plugin usb-logger (in shutdown)"...).
        public var stuck: [String]
        public var clean: Bool { stuck.isEmpty }
    }

    /// Graceful stop in one call: `stopSource`, `drain`, then `shutdownPlugins`, all before `deadline`.
    public func stop(deadline: Duration) -> StopReport {
        let end = ContinuousClock.now + deadline
        var stuck = stopSource(until: end)
        stuck += drain(until: end)
        if stuck.isEmpty { stuck = shutdownPlugins(until: end) }
        return StopReport(stuck: stuck)
    }

    /// Stops the source: no event enters the ring once it returns, and the ring is closed, so
    /// every consumer reads what was published and then sees the end.
    ///
    /// A finite source keeps flow control while it stops, so nothing it produced is lapped.
    /// If it is still blocked near `deadline` (waiting for a stuck plugin), flow control is
    /// abandoned so the source can end; only the stuck plugin is lapped then.
    /// - Returns: `["source"]` when the source thread did not end in time, else empty.
    public func stopSource(until deadline: ContinuousClock.Instant) -> [String] {
        stopRecycler()
        let clock = ContinuousClock()
        let (source, context) = state.withLock { ($0.sourceThread, $0.sourceContext) }
        context?.requestStop()
        guard let source else {
            producer.close()
            return []
        }
        // Leave the workers a share of the time to finish after the source ends.
        let grace = min((deadline - clock.now) / 4, .milliseconds(250))
        if !source.join(timeout: max(.zero, (deadline - grace) - clock.now)) {
            producer.abandonFlowControl.store(true, ordering: .relaxed)
            if !source.join(timeout: max(.milliseconds(20), grace / 2)) { return ["source"] }
        }
        return []
    }

    /// Waits until every worker has read the closed ring to its end (or failed, or was stopped).
    /// - Returns: the workers still reading at `deadline`, named with where they are, e.g.
    ///   `plugin slow (in events callback, 12 events left)`; empty when all drained.
    public func drain(until deadline: ContinuousClock.Instant) -> [String] {
        let workers = self.workers
        while ContinuousClock.now < deadline {
            if workers.allSatisfy({ $0.activity == .drained || $0.activity == .done }) { return [] }
            usleepShort()
        }
        return workers.filter { $0.activity != .drained && $0.activity != .done }.map { w in
            let left = w.stats.lag
            return "plugin \(w.name) (\(w.activity), \(left) event\(left == 1 ? "" : "s") left)"
        }
    }

    /// Calls every drained plugin's shutdown on its own worker thread and joins the workers.
    /// - Parameter deadline: nil waits as long as it takes.
    /// - Returns: the plugins whose worker had not ended by `deadline`, e.g. `plugin sleepy (in shutdown)`.
    public func shutdownPlugins(until deadline: ContinuousClock.Instant?) -> [String] {
        let workers = self.workers
        for w in workers { w.openShutdownGate() }
        var stuck: [String] = []
        for w in workers {
            if w.isolation == .process, let deadline {
                // A worker process still busy near the deadline is killed (and named in the log) so
                // the host itself finishes in time: only its plugin's shutdown is cut short.
                let grace = min(.milliseconds(250), (deadline - ContinuousClock.now) / 5)
                let activity = w.activity
                if !w.join(until: deadline - grace) {
                    logger.error("plugin did not finish its shutdown in time; its worker process was killed",
                                 metadata: ["plugin": "\(w.name)", "where": "\(activity)"])
                }
                continue
            }
            if !w.join(until: deadline) {
                stuck.append("plugin \(w.name) (\(w.activity))")
            }
        }
        return stuck
    }

    /// Stops every worker at once without draining (second signal, hard deadline).
    public func abort() {
        recyclerStop.store(true, ordering: .relaxed)
        let (context, workers) = state.withLock { ($0.sourceContext, $0.workers) }
        context?.requestStop()
        producer.abandonFlowControl.store(true, ordering: .relaxed)
        for w in workers { w.requestStop() }
    }

    /// Events the source published, by action name.
    public var eventsByAction: [String: UInt64] { producer.eventsByAction }

    /// Per-plugin counters, in load order.
    public var pluginStats: [PluginStats] { state.withLock { $0.workers }.map(\.stats) }
    /// The running workers (for metrics: latency histograms).
    public var workers: [any PluginWorker] { state.withLock { $0.workers } }

    /// The source thread's kernel id (0 before a source starts).
    public var sourceThreadID: Int32 { state.withLock { $0.sourceThread?.threadID ?? 0 } }
    /// Plugins that were rejected or failed to initialise.
    public var failures: [PluginFailure] { state.withLock { $0.failures } }

    /// Puts `new` where `old` was in the list of workers (status, drain, shutdown see it).
    func replaceWorker(_ old: any PluginWorker, with new: any PluginWorker) {
        state.withLock { s in
            if let i = s.workers.firstIndex(where: { $0 === old }) { s.workers[i] = new } else { s.workers.append(new) }
        }
    }

    // MARK: Hot reload

    /// Replaces the running plugin `name` with the build at `path`, without losing or repeating
    /// an event (docs/plugin-guide.md, "Hot reload"). The new build is opened from a private
    /// copy (so `dlopen` maps the new code even when the old image stays loaded) and initialised
    /// with the same configuration, filter and batch size while the old one keeps running. Only
    /// then does the old worker stop after its current batch; its cursor and, when both builds
    /// implement it, its `save_state` pass to the new one, which restores the state and reads on
    /// from that cursor.
    /// - Throws: `PluginLoadError` naming `path` when the new build cannot replace the old one
    ///   (not a plugin, another name, init failed...): the old one then keeps running untouched.
    /// - Parameter settings: the new build's manifest settings (a production reload reads its new
    ///   manifest); nil keeps the running build's (a development reload of the `.so` alone).
    @discardableResult
    public func reload(pluginNamed name: String, from path: String, settings: ReloadSettings? = nil) throws(PluginLoadError) -> any PluginWorker {
        guard let running = state.withLock({ $0.workers.first { $0.name == name && $0.state == .running } }) else {
            throw PluginLoadError(file: path, kind: .skipped(reason: "no running plugin named '\(name)' to replace"))
        }
        if let old = running as? ProcessWorker { return try reload(old, from: path, settings: settings) }
        let old = running as! Worker
        let copy = try ReloadCopies.shared.copy(of: path)
        let fresh: LoadedPlugin
        do {
            fresh = try PluginLoader.open(copy)
        } catch {
            ReloadCopies.shared.remove(copy)
            throw PluginLoadError(file: path, kind: error.kind)
        }
        guard fresh.name == name else {
            fresh.unload()
            ReloadCopies.shared.remove(copy)
            throw PluginLoadError(file: path, kind: .skipped(
                reason: "the new build is named '\(fresh.name)', not '\(name)' (fix: keep the name, or restart to load it as another plugin)"))
        }
        let context = PluginContext(name: name, configuration: settings?.configuration ?? old.configuration, outputQueue: outputQueue,
                                    deviceTable: deviceTable, logger: logger, logLimits: options.logLimits)
        let next = Worker(plugin: fresh, context: context, consumer: ring.makeConsumer(name: name),
                          batchSize: settings?.batchSize ?? old.batchSize,
                          filter: settings.map { $0.filter } ?? old.filter,
                          deadline: settings.map { $0.deadline }
                              ?? (old.deadlineNanoseconds > 0 ? .nanoseconds(Int64(old.deadlineNanoseconds)) : nil),
                          cpus: old.cpus, nice: old.nice, settle: old.settleOptions, sourcePath: old.sourcePath,
                          handoff: Handoff(), logger: logger)
        next.start()
        if let error = next.waitForInit() {
            next.thread?.join()
            fresh.unload()
            ReloadCopies.shared.remove(copy)
            throw PluginLoadError(file: path, kind: error.kind)
        }
        let stateKept = old.plugin.supportsStateTransfer && fresh.supportsStateTransfer
        // The swap: the old worker finishes its batch, repositions the new consumer at its own
        // cursor and saves its state (see Worker.run), then the new one starts reading.
        old.successor.withLock { $0 = next }
        old.requestStop()
        old.thread?.join()
        next.inheritCounters(from: old)
        state.withLock { s in
            if let i = s.workers.firstIndex(where: { $0 === old }) { s.workers[i] = next } else { s.workers.append(next) }
        }
        next.handoff?.go.signal()
        // The old image stays mapped (as with RTLD_NODELETE): a thread it started may still run,
        // and unmapping code under a running thread crashes the daemon (docs/security.md). Its
        // private copy can go: the mapping keeps the pages.
        ReloadCopies.shared.remove(old.plugin.path)
        logger.notice("plugin reloaded", metadata: [
            "plugin": "\(name)", "from_version": "\(old.plugin.version)", "to_version": "\(fresh.version)",
            "path": "\(path)", "state": "\(stateKept ? "transferred" : "not kept")"])
        return next
    }
}
extension Runtime {
    /// Hot reload of a process plugin: the new build starts in a new worker process and
    /// initialises while the old one still reads; then the old one stops after its batch and
    /// hands over its cursor and saved state; the new one reads on from there, and the old
    /// process runs its shutdown and exits — its image, Swift or not, goes with it.
    func reload(_ old: ProcessWorker, from path: String, settings: ReloadSettings?, recycle: Bool = false) throws(PluginLoadError) -> any PluginWorker {
        var spec = old.spec
        spec.path = path
        if let settings { settings.apply(to: &spec) }
        _ = try ELFImage.inspect(path: path)  // in the host, before a worker is spawned for the new build
        let next: ProcessWorker
        do {
            next = try ProcessWorker(spec: spec, policy: old.policy, ring: ring, deviceTable: deviceTable,
                                     outputQueue: outputQueue, sourcePath: old.sourcePath, logger: logger,
                                     logLimits: options.logLimits)
        } catch {
            throw PluginLoadError(file: path, kind: .isolated(code: "worker", message: "\(path): cannot set up the worker process: \(error)"))
        }
        next.remote.reset(to: old.remote.cursor(head: ring.published))
        next.start(holdGo: true)
        if let error = next.waitForInit() { throw error }
        let oldPid = old.pid
        guard let handed = old.handOver(timeout: .seconds(30)) else {
            next.requestStop()
            _ = next.join(until: ContinuousClock.now + .seconds(5))
            throw PluginLoadError(file: path, kind: .skipped(reason: "the running build did not hand over within 30 s (it stays; fix: check its events callback)"))
        }
        next.inheritCounters(from: old)
        if recycle { next.recycles.add(1, ordering: .relaxed) }
        next.go(cursor: handed.cursor, state: handed.state)
        state.withLock { s in
            if let i = s.workers.firstIndex(where: { $0 === old }) { s.workers[i] = next } else { s.workers.append(next) }
        }
        old.openShutdownGate()
        if !old.join(until: ContinuousClock.now + .seconds(10)) {
            logger.warning("the old build did not shut down within 10 s; its worker process was killed", metadata: ["plugin": "\(spec.name)"])
        }
        logger.log(level: recycle ? .info : .notice, recycle ? "worker process recycled" : "plugin reloaded", metadata: [
            "plugin": "\(spec.name)", "from_version": "\(old.version)", "to_version": "\(next.version)",
            "path": "\(path)", "isolation": "process", "pid": "\(next.pid)", "old_pid": "\(oldPid)",
            "state": "\(handed.state != nil ? "transferred" : "not kept")"])
        return next
    }
}
