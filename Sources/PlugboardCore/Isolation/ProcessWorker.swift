import CPlugboard
import CPlugboardSupport
import Dispatch
import Logging
import PlugboardSystem
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How the host runs, watches and restarts worker processes (daemon config `[plugins]`).
public struct ProcessPolicy: Sendable {
    /// The `plugboard-worker` executable.
    public var workerExecutable: String
    /// The account plugin code runs as when the host is root (nil: keep the host's).
    public var account: LockDown.Account?
    /// setrlimit for each worker, 0 = unlimited: address space (bytes), CPU (seconds), open files.
    public var addressSpace: UInt64 = 0
    public var cpuSeconds: UInt64 = 0
    public var openFiles: UInt64 = 0
    /// Longest an init may take (loading included) before the process is killed.
    public var initDeadline: Duration = .seconds(5)
    /// Callback deadline for a plugin whose manifest sets none (`deadline_ms = 0`).
    public var defaultCallbackDeadline: Duration = .seconds(10)
    /// A worker whose cursor has not moved for this long while events wait, outside any
    /// callback, is treated as hung.
    public var stallTimeout: Duration = .seconds(30)
    /// First restart delay; doubles with each crash in `crashInterval`, up to `restartBackoffMax`.
    public var restartBackoff: Duration = .milliseconds(100)
    public var restartBackoffMax: Duration = .seconds(5)
    /// Keep a spare worker process initialised for each plugin, so a crash restart adopts it
    /// instead of waiting for spawn, `dlopen` and `init` (`plugins.prewarm`).
    public var prewarm = false
    /// More than `crashBurst` crashes within `crashInterval` quarantine the plugin (like systemd's
    /// StartLimitBurst / StartLimitIntervalSec).
    public var crashBurst: Int = 5
    public var crashInterval: Duration = .seconds(60)
    /// Start workers as copies of a fork server (`plugboard-worker --zygote`, `ForkServer`)
    /// instead of spawning the executable each time (`plugins.fork_server`).
    public var forkServer = true
    /// How often an idle monitor thread wakes for its watchdog (deadlines, stalls) when nothing
    /// else wakes it. What the host asks of a worker (the shutdown gate, a stop) and what a worker
    /// announces (drained) wake it at once, whatever this is.
    public var watchdogTick: Duration = .milliseconds(50)

    public init(workerExecutable: String) { self.workerExecutable = workerExecutable }
}

/// A plugin to run in a worker process, as the host found it.
public struct ProcessPluginSpec: Sendable {
    public var path: String
    /// The name its manifest gives (the plugin must report the same).
    public var name: String
    /// The manifest's version (until the worker reports the plugin's own).
    public var version: String
    public var configuration: PluginConfiguration
    public var batchSize: Int
    /// The manifest's callback deadline (nil: the policy's default).
    public var deadline: Duration?
    /// The `.pbm` bytes, for the worker's match filter (empty: every event).
    public var manifest: [UInt8]
    /// Whether the plugin must call itself `name` (false without a manifest: `name` is then only
    /// a placeholder until the worker reports the plugin's own).
    public var checkName = true
    /// With `checkName` false: configuration by the name the plugin will report.
    public var configurationByName: [String: PluginConfiguration] = [:]
    /// The settle window (nil: every event at once).
    public var settle: SettleOptions?
    /// The worker process's nice value and CPUs, set in it before the plugin loads.
    public var priority = WorkerPriority()

    public init(path: String, name: String, version: String, configuration: PluginConfiguration, batchSize: Int,
                deadline: Duration?, manifest: [UInt8]) {
        self.path = path
        self.name = name
        self.version = version
        self.configuration = configuration
        self.batchSize = batchSize
        self.deadline = deadline
        self.manifest = manifest
    }
}

/// The host's side of one plugin running in a worker process: it starts the process, answers
/// its host calls, watches it (exit, deadlines, a stalled cursor), restarts it with backoff from
/// its cursor, withholds an event that crashed it twice, and quarantines a crash loop.
///
/// One monitor thread per worker does all of that; the runtime's threads only read counters
/// and ask for shutdown. The worker process is untrusted: every byte it sends is checked, its
/// control page is believed only about itself, and a frame it leaves half-sent times out.
/// A worker process that has loaded and initialised its plugin and waits for its go: the
/// current one once adopted, or a spare held for the next restart (`plugins.prewarm`).
final class Launched: @unchecked Sendable {
    // @unchecked: owned by one thread at a time (the one that made it, then the monitor).
    let process: ChildProcess
    let channel: WireChannel
    let queue: SharedQueue.Consumer
    let outputs: [CapturedStream]
    let name: String
    let version: String
    let startNanoseconds: UInt64

    init(process: ChildProcess, channel: WireChannel, queue: SharedQueue.Consumer, outputs: [CapturedStream],
         name: String, version: String, startNanoseconds: UInt64) {
        self.process = process
        self.channel = channel
        self.queue = queue
        self.outputs = outputs
        self.name = name
        self.version = version
        self.startNanoseconds = startNanoseconds
    }

    /// Kills a spare that will not be used and releases its descriptors.
    func discard() {
        process.signal(SIGKILL)
        _ = process.wait(timeout: .seconds(2))
        for o in outputs { o.close() }
    }
}

/// One standard stream of a worker process, read by the host (`ProcessWorker.drainOutput`).
final class CapturedStream {
    enum Kind { case output, errors }
    let fd: FileDescriptor
    let kind: Kind
    var pending: [UInt8] = []
    /// What one read takes, kept for the stream's life (not allocated per drain).
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 16384, alignment: 1)
    private var isClosed = false
    init(fd: FileDescriptor, kind: Kind) {
        self.fd = fd
        self.kind = kind
    }
    /// Closes the pipe's read end, once: a second close would close whatever descriptor
    /// another thread got under the same number meanwhile.
    func close() {
        if isClosed { return }
        isClosed = true
        try? fd.close()
    }
    deinit {
        close()
        scratch.deallocate()
    }
}

public final class ProcessWorker: PluginWorker, @unchecked Sendable {
    // @unchecked: mutable state is in `st` (a Mutex) or atomics; `control` and the ring are
    // shared memory accessed through pbs_* atomics.
    public let spec: ProcessPluginSpec
    public let policy: ProcessPolicy
    let ring: EventRing
    let deviceTable: DeviceTable
    /// The host-side context: the plugin's logger, metrics, publish counters.
    public let context: PluginContext
    let logger: Logger
    let control: WorkerControl
    let remote: RemoteCursor
    public let sourcePath: String
    /// Counters of predecessors (a hot reload keeps a plugin's totals).
    let inherited = Mutex<[WorkerControl.Counter: UInt64]>([:])
    /// Times this plugin's worker was recycled (carried from predecessor to successor).
    public let recycles = Atomic<UInt64>(0)
    /// When this worker was made (a recycle by age counts from here).
    public let createdAt = ContinuousClock.now
    /// The plugin file as it was when this worker was made (device, inode, size, times): a
    /// recycle must start the same build, not one installed since.
    public let fileIdentity: [Int64]?

    struct State {
        var state: WorkerState = .starting
        var process: ChildProcess?
        var channel: WireChannel?
        var name: String
        var version: String
        var initError: PluginLoadError?
        var initDone = false
        var startNanoseconds: UInt64 = 0
        var restarts: UInt64 = 0
        var crashes: [String: UInt64] = [:]
        var crashTimes: [ContinuousClock.Instant] = []
        var crashCounts: [UInt64: Int] = [:]
        var skip: [UInt64] = []
        var singleUntil: UInt64 = 0
        var quarantineReason: String?
        var lastCrash: String?
        var lastError: String?
        /// Set when the host killed the process, with why (deadline, stall...).
        var killReason: (label: String, text: String)?
        var gateOpen = false
        var shutdownSent = false
        var stopping = false
        var finished = false
        /// Reload: hold the go until the predecessor handed over.
        var holdGo = false
        var handover: (cursor: UInt64, state: [UInt8]?)?
        /// A canary's snapshot (`snapshot(timeout:)`).
        var snapshot: (cursor: UInt64, state: [UInt8]?)?
        /// Worker processes between spawn and READY (killed by `requestStop`).
        var initializing: [ChildProcess] = []
        /// A worker process initialised ahead and held (`plugins.prewarm`), and whether one is
        /// being prepared.
        var spare: Launched?
        var preparingSpare = false
    }
    let st: Mutex<State>
    /// A canary's view of this worker's output (`Runtime.canary`): nil when none is taken.
    let tap = Mutex<OutputTap?>(nil)
    /// A canary's shadow: its publishes go to `tap` only, never to the output queue.
    public let shadow: Bool
    let snapshotSignal = DispatchSemaphore(value: 0)
    let initSignal = DispatchSemaphore(value: 0)
    let handoverSignal = DispatchSemaphore(value: 0)
    let finishedSignal = DispatchSemaphore(value: 0)
    /// Wakes the monitor thread's `poll` when the host changes what it waits for (the shutdown
    /// gate opened, a stop): without it the change is seen at the idle watchdog tick, 50 ms.
    let monitorWake: EventFD
    nonisolated(unsafe) var monitor: NativeThread?
    /// The running worker's host-call queue: used by the monitor thread only.
    nonisolated(unsafe) var currentQueue: SharedQueue.Consumer?
    /// The read ends of the running worker's standard output and error, each with what was written
    /// since its last newline: monitor thread only.
    nonisolated(unsafe) var outputs: [CapturedStream] = []
    /// Whether the last launch adopted a pre-warmed spare: monitor thread only.
    nonisolated(unsafe) var adoptedSpare = false
    let clock = ContinuousClock()

    public init(spec: ProcessPluginSpec, policy: ProcessPolicy, ring: EventRing, deviceTable: DeviceTable,
                outputQueue: OutputQueue, sourcePath: String? = nil, logger: Logger,
                logLimits: PluginLogLimits = PluginLogLimits(), shadow: Bool = false) throws(Errno) {
        self.spec = spec
        self.shadow = shadow
        fileIdentity = Self.identity(of: spec.path)
        self.policy = policy
        self.ring = ring
        self.deviceTable = deviceTable
        self.logger = logger
        self.sourcePath = sourcePath ?? spec.path
        context = PluginContext(name: spec.name, configuration: spec.configuration, outputQueue: outputQueue,
                                deviceTable: deviceTable, logger: logger, logLimits: logLimits)
        control = try WorkerControl.create(name: spec.name)
        monitorWake = try EventFD()
        control.cursor = ring.published
        remote = ring.registerRemote(name: spec.name, cursor: control.cursorWord, sleeping: control.sleepingWord,
                                     wakeAt: control.wakeAtWord)
        st = Mutex(State(name: spec.name, version: spec.version))
    }

    deinit {
        remote.deregister()
        try? monitorWake.close()
    }

    static func identity(of path: String) -> [Int64]? {
        guard let st = try? FileStatus.of(path: path) else { return nil }
        return [Int64(bitPattern: st.device), Int64(bitPattern: st.inode), Int64(st.size), st.modificationNanoseconds, st.changeNanoseconds]
    }

    /// Whether the plugin file is still the one this worker was started from.
    public var fileUnchanged: Bool { fileIdentity != nil && Self.identity(of: spec.path) == fileIdentity }

    // MARK: PluginWorker

    public var name: String { st.withLock { $0.name } }
    public var version: String { st.withLock { $0.version } }
    public var path: String { spec.path }
    public var isolation: Isolation { .process }
    public var state: WorkerState { st.withLock { $0.state } }
    public var latency: LatencyHistogram { control.latency }
    public var callbackDuration: LatencyHistogram { control.callbackDuration }
    public var metricsSnapshot: PluginContext.Metrics { context.metricsSnapshot }
    public var configuration: PluginConfiguration { spec.configuration }
    public var startDuration: Duration? {
        let ns = st.withLock { $0.startNanoseconds }
        return ns == 0 ? nil : .nanoseconds(Int64(ns))
    }
    /// The running worker process's pid (0 when none runs).
    public var pid: Int32 { st.withLock { $0.process?.pid ?? 0 } }

    public var activity: WorkerActivity {
        let s = st.withLock { ($0.state, $0.finished) }
        if s.1 || s.0 == .quarantined || s.0 == .failed || s.0 == .stopped { return .done }
        if s.0 == .restarting || s.0 == .starting { return .idle }
        return control.activity
    }

    public var stats: PluginStats {
        let s = st.withLock { $0 }
        let inh = inherited.withLock { $0 }
        func c(_ k: WorkerControl.Counter) -> UInt64 { control[k] &+ (inh[k] ?? 0) }
        let head = ring.published
        let lag = s.state == .quarantined || s.finished ? 0 : head &- remote.cursor(head: head)
        return PluginStats(
            name: s.name, version: s.version, path: spec.path, state: s.state,
            events: c(.delivered), filtered: c(.filtered), errors: c(.errors), laps: c(.laps), missed: c(.missed),
            resyncs: c(.resyncs), overruns: c(.overruns), batchSize: spec.batchSize, lag: lag,
            published: context.publishCounts.accepted, publishRefused: context.publishCounts.refused &+ c(.refused),
            lastError: s.lastError, isolation: .process, pid: s.process?.pid ?? 0, restarts: s.restarts,
            crashes: s.crashes, skipped: UInt64(s.skip.count), quarantineReason: s.quarantineReason, lastCrash: s.lastCrash,
            logDropped: context.logDropped, settleWindow: spec.settle?.window, settleCoalesced: c(.settleCoalesced),
            settleFlaps: c(.settleFlaps), settleOverflow: c(.settleOverflow), recycles: recycles.load(ordering: .relaxed))
    }

    // MARK: Start

    /// Starts the worker process and its monitor thread; the plugin's init runs in the process.
    /// `holdGo`: wait for `go(cursor:state:)` before reading (a hot-reload replacement).
    public func start(holdGo: Bool = false) {
        st.withLock { $0.holdGo = holdGo }
        // Weak: the thread's closure outlives the loop; a strong capture would keep this worker,
        // its control page and its queue mapped after a reload replaced it.
        monitor = NativeThread(name: "pb-watch-\(spec.name)") { [weak self] in self?.monitorLoop() }
    }

    /// Waits until the first init finished (success or failure).
    public func waitForInit() -> PluginLoadError? {
        initSignal.wait()
        initSignal.signal()
        return st.withLock { $0.initError }
    }

    func setup() -> WorkerSetup {
        var s = WorkerSetup(pluginPath: spec.path, expectedName: spec.checkName ? spec.name : "", configuration: spec.configuration,
                            batchSize: UInt32(max(1, spec.batchSize)))
        s.manifest = spec.manifest
        s.byName = spec.configurationByName
        if let a = policy.account {
            s.uid = a.uid
            s.gid = a.gid
        }
        s.addressSpace = policy.addressSpace
        s.cpuSeconds = policy.cpuSeconds
        s.openFiles = policy.openFiles
        s.maxRecordBytes = UInt32(context.outputQueue.maxRecordBytes)
        if let settle = spec.settle {
            s.settleNanoseconds = settle.windowNanoseconds
            s.settleDevices = UInt32(settle.maxDevices)
        }
        s.nice = spec.priority.nice
        s.cpus = spec.priority.cpus.cpus.map(UInt32.init)
        st.withLock {
            s.singleUntil = $0.singleUntil
            s.skip = $0.skip
        }
        return s
    }

    /// Runs a worker process (a spare taken from `plugins.prewarm`, or a new one) to READY and
    /// makes it the current one. Returns the error when none got there.
    func launch() -> PluginLoadError? {
        if st.withLock({ $0.stopping }) {
            return PluginLoadError(file: spec.path, kind: .isolated(code: "stopped",
                message: "\(spec.path): stopped during init (the daemon is shutting down)"))
        }
        drainOutput(final: true)
        for o in outputs { o.close() }
        outputs = []
        if let spare = takeSpare() {
            control.resetForRestart()
            adopt(spare)
            adoptedSpare = true
            return nil
        }
        adoptedSpare = false
        control.resetForRestart()
        switch spawnReady(spare: false) {
        case .failure(let error): return error
        case .success(let launched):
            adopt(launched)
            return nil
        }
    }

    /// Makes `l` the running worker process (the monitor thread serves it from now on).
    func adopt(_ l: Launched) {
        currentQueue = l.queue
        outputs = l.outputs
        let stopping = st.withLock {
            $0.process = l.process
            $0.channel = l.channel
            $0.killReason = nil
            $0.name = l.name
            $0.version = l.version
            $0.startNanoseconds = l.startNanoseconds
            return $0.stopping
        }
        if stopping { l.process.signal(SIGKILL) }
    }

    /// Spawns a worker process and runs it through load and init to READY, without making it
    /// the current one. A spare (`spare`) leaves the control page alone: the current process
    /// still uses it.
    func spawnReady(spare: Bool) -> Result<Launched, PluginLoadError> {
        let t0 = pbs_monotonic_ns()
        /// The worker's descriptors, made afresh for each attempt, and the process holding them.
        func launch() throws(Errno) -> (pair: (FileDescriptor, FileDescriptor), process: ChildProcess,
                                         queue: SharedQueue.Consumer, outputs: [CapturedStream]) {
            let q = try SharedQueue.create(capacity: 256 * 1024)
            defer { try? q.memoryFile.close() }
            let pair = try SocketPair.stream()
            var handedOver = false
            defer { if !handedOver { try? pair.0.close() } }
            defer { try? pair.1.close() }
            // The ring goes over as a read-only descriptor of the sealed memfd (its seals already
            // refuse any writable mapping; this refuses write(2) too).
            let ringRO = try FileDescriptor.open("/proc/self/fd/\(ring.fd)", .readOnly)
            defer { try? ringRO.close() }
            // What plugin code writes to stdout or stderr comes back here: stdout is passed on to
            // the daemon's stdout a line at a time, stderr is logged as the plugin's messages are;
            // both escaped, so neither can write the daemon's log or terminal directly.
            let stdout = try OutputPipe.make(), stderr = try OutputPipe.make()
            defer { try? stdout.write.close(); try? stderr.write.close() }
            defer { if !handedOver { try? stdout.read.close(); try? stderr.read.close() } }
            let outputs = [CapturedStream(fd: stdout.read, kind: .output), CapturedStream(fd: stderr.read, kind: .errors)]
            // An empty environment but for one setting: the Swift runtime's crash backtracer, which
            // would spend seconds symbolicating a plugin's crash before the process ends (the
            // host names the crash itself).
            let descriptors = [pair.1.rawValue, ringRO.rawValue, control.file.rawValue, q.memoryFile.rawValue, q.consumer.wakeup.rawValue]
            let process: ChildProcess
            if policy.forkServer {
                process = try ForkServer.shared(for: policy.workerExecutable).spawn(
                    name: spec.name, descriptors: descriptors, output: stdout.write, errors: stderr.write,
                    environment: ["SWIFT_BACKTRACE=enable=no"], logger: logger)
            } else {
                process = try Spawner.shared.spawn(policy.workerExecutable, arguments: [spec.name],
                                                 environment: ["SWIFT_BACKTRACE=enable=no"], descriptors: descriptors,
                                                 output: stdout.write, errors: stderr.write)
            }
            handedOver = true
            return (pair, process, q.consumer, outputs)
        }
        let launched: (pair: (FileDescriptor, FileDescriptor), process: ChildProcess, queue: SharedQueue.Consumer, outputs: [CapturedStream])
        do throws(Errno) {
            do {
                launched = try launch()
            } catch where ForkServer.lostRequest(error) {
                // The fork server ended or hung while making this worker (logged; a new one
                // is started): a half-made copy may hold that attempt's descriptors, so the
                // worker is started again with new ones, once.
                launched = try launch()
            }
        } catch {
            return .failure(PluginLoadError(file: spec.path, kind: .isolated(code: "worker",
                message: "\(spec.path): cannot start the worker process: \(error) (fix: check plugins.worker_executable, or set isolation = \"thread\")")))
        }
        let (pair, process, queue, outputs) = launched
        // A worker that leaves a frame half-sent must not hold this thread.
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        _ = setsockopt(pair.0.rawValue, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let channel = WireChannel(fd: pair.0)
        // Reachable by requestStop while it initialises.
        let stopping = st.withLock {
            $0.initializing.append(process)
            return $0.stopping
        }
        if stopping { process.signal(SIGKILL) }
        var ready: Launched?
        defer {
            st.withLock { $0.initializing.removeAll { $0 === process } }
            if ready == nil { for o in outputs { o.close() } }
        }
        func fail(_ e: PluginLoadError) -> Result<Launched, PluginLoadError> { .failure(e) }
        try? channel.send(.setup, setup().encode())
        // Wait for ready / refusal / exit, at most the init deadline.
        let deadline = clock.now + policy.initDeadline
        while true {
            var fds = [Poll.readable(channel.fd.rawValue), Poll.readable(process.pidfd.rawValue),
                       Poll.readable(queue.wakeup.rawValue)] + outputs.map { Poll.readable($0.fd.rawValue) }
            _ = drain(queue)
            drainOutput(outputs)
            _ = try? queue.wakeup.drain()
            let left = deadline - clock.now
            if left <= .zero {
                process.signal(SIGKILL)
                _ = process.wait(timeout: .seconds(5))
                return fail(PluginLoadError(file: spec.path, kind: .isolated(code: "init-deadline",
                    message: "\(spec.path): init did not return within \(policy.initDeadline.shortText); the worker process was killed (fix: make init return quickly, or do slow work on a thread of the plugin's own)")))
            }
            _ = try? Poll.wait(&fds, timeoutMilliseconds: Int32(max(1, min(left.nanoseconds / 1_000_000, 100))))
            if fds[0].revents != 0 {
                guard let frame = try? channel.receive() else {
                    // Closed (it died), or a frame left half-sent (it times out): either way this
                    // process is done; it is killed so a hung one cannot linger.
                    var status = process.wait(timeout: .milliseconds(200))
                    if status == nil {
                        process.signal(SIGKILL)
                        status = process.wait(timeout: .seconds(5))
                        return fail(PluginLoadError(file: spec.path, kind: .isolated(code: "worker",
                            message: "\(spec.path): the worker process broke the protocol while loading or initialising the plugin (a message left half-sent) and was killed (fix: a plugin must not write to descriptors it did not open)")))
                    }
                    if st.withLock({ $0.stopping }) {
                        return fail(PluginLoadError(file: spec.path, kind: .isolated(code: "stopped",
                            message: "\(spec.path): stopped during init (the daemon is shutting down)")))
                    }
                    return fail(PluginLoadError(file: spec.path, kind: .isolated(code: "worker-died",
                        message: "\(spec.path): the worker process \(status?.description ?? "stopped answering") while loading or initialising the plugin (fix: run the plugin under `plugboard run` with isolation = \"process\" and read its log; a constructor that exits or crashes does this)")))
                }
                switch WireType(rawValue: frame.type) {
                case .ready:
                    var r = WireReader(frame.payload)
                    guard let name = try? r.string(), let version = try? r.string(), (try? r.u16()) != nil else {
                        process.signal(SIGKILL)
                        return fail(PluginLoadError(file: spec.path, kind: .isolated(code: "worker", message: "\(spec.path): the worker sent a malformed ready message")))
                    }
                    ready = Launched(process: process, channel: channel, queue: queue, outputs: outputs, name: name,
                                     version: version, startNanoseconds: pbs_monotonic_ns() &- t0)
                    return .success(ready!)
                case .initFailed:
                    var r = WireReader(frame.payload)
                    let code = (try? r.string()) ?? "worker"
                    let message = (try? r.string()) ?? "\(spec.path): the plugin could not be loaded"
                    _ = process.wait(timeout: .seconds(5))
                    return fail(PluginLoadError(file: spec.path, kind: .isolated(code: code, message: message)))
                case .log:
                    handleLog(frame.payload)
                default:
                    if !handle(frame, channel: channel) {
                        process.signal(SIGKILL)
                        _ = process.wait(timeout: .seconds(5))
                        return fail(PluginLoadError(file: spec.path, kind: .isolated(code: "worker",
                            message: "\(spec.path): the worker process sent an unknown or malformed message (type \(frame.type)) while loading or initialising the plugin and was killed (fix: a plugin must not write to descriptors it did not open)")))
                    }
                }
            } else if fds[1].revents != 0 {
                let status = process.wait(timeout: .seconds(1))
                if st.withLock({ $0.stopping }) {
                    return fail(PluginLoadError(file: spec.path, kind: .isolated(code: "stopped",
                        message: "\(spec.path): stopped during init (the daemon is shutting down)")))
                }
                return fail(PluginLoadError(file: spec.path, kind: .isolated(code: "worker-died",
                    message: "\(spec.path): the worker process \(status?.description ?? "ended") while loading or initialising the plugin (fix: run the plugin under `plugboard run` and read its log; a constructor that exits or crashes does this)")))
            }
        }
    }

    /// Lets a held replacement read on from `cursor` with its predecessor's state.
    public func go(cursor: UInt64, state saved: [UInt8]?) {
        remote.reset(to: cursor)
        st.withLock { $0.handover = (cursor, saved) }
        handoverSignal.signal()
    }

    func sendGo(_ channel: WireChannel, cursor: UInt64, state saved: [UInt8]?) {
        var w = WireWriter()
        w.u64(cursor)
        if let saved {
            w.u8(1)
            w.data(saved)
        } else {
            w.u8(0)
        }
        // The poison events and the one-event batches as they are now: a spare was set up
        // before the crash that decided them.
        let (singleUntil, skip) = st.withLock { ($0.singleUntil, $0.skip) }
        w.u64(singleUntil)
        w.u32(UInt32(skip.count))
        for q in skip { w.u64(q) }
        try? channel.send(.go, w.bytes)
        prepareSpare()
    }

    // MARK: Monitor

    func monitorLoop() {
        var first = true
        while true {
            if !first {
                // A restart: wait the backoff (a stop request cuts it short).
                // Doubling per crash within plugins.crash_interval (as documented), so a plugin that
                // crashes once a day restarts after the base backoff, not after the longest one.
                let delay = backoff(afterCrashes: st.withLock { $0.crashTimes.count })
                let end = clock.now + delay
                while clock.now < end && !st.withLock({ $0.stopping }) {
                    // In steps of at most 5 ms (a stop cuts it short), never past the end: a 1 ms
                    // backoff waits 1 ms.
                    sleepThread(for: min(.milliseconds(5), end - clock.now))
                }
                if st.withLock({ $0.stopping }) { break }
                st.withLock { $0.restarts += 1 }
            }
            if let error = launch() {
                if first {
                    st.withLock {
                        $0.initError = error
                        $0.state = .failed
                        $0.finished = true
                    }
                    remote.deregister()
                    initSignal.signal()
                    finishedSignal.signal()
                    return
                }
                // A restart that could not initialise counts as a crash.
                st.withLock { $0.lastError = error.description }
                if recordCrash(label: "init", text: error.description, batch: nil) { break }
                continue
            }
            let (process, channel) = st.withLock { ($0.process!, $0.channel!) }
            if first {
                let hold = st.withLock { $0.holdGo }
                st.withLock { $0.state = .running }
                initSignal.signal()
                if hold {
                    handoverSignal.wait()
                    let h = st.withLock { $0.handover }
                    sendGo(channel, cursor: h?.cursor ?? control.cursor, state: h?.state)
                } else {
                    sendGo(channel, cursor: control.cursor, state: nil)
                }
            } else {
                st.withLock { $0.state = .running }
                sendGo(channel, cursor: remote.cursor(head: ring.published), state: nil)
                logger.notice("plugin restarted", metadata: ["plugin": "\(spec.name)", "pid": "\(process.pid)",
                                                             "cursor": "\(control.cursor)",
                                                             "spare": "\(adoptedSpare ? "adopted" : policy.prewarm ? "none ready" : "off")"])
            }
            first = false
            let status = watch(process, channel, currentQueue!)
            drainOutput(final: true)
            let s = st.withLock { $0 }
            if s.stopping || (s.shutdownSent && status == .exited(code: 0)) || s.state == .stopped {
                break
            }
            // A crash (or a kill for a deadline/stall/protocol violation).
            let batch = control.batch
            let where_ = control.activity
            var label = s.killReason?.label ?? status.label
            var text = s.killReason?.text ?? status.description
            if where_ != .idle && where_ != .done {
                let w = where_.description
                text += w.hasPrefix("in ") ? " \(w)" : " while \(w)"
            }
            if let b = batch { text += b.first == b.last ? ", sequence \(b.first)" : ", sequences \(b.first)...\(b.last)" }
            if s.killReason == nil, let m = MemoryLimitReport(peak: control.peakAddressSpace, limit: policy.addressSpace) {
                text += m.text
                if m.likely { label = MemoryLimitReport.label }
            }
            if s.shutdownSent || where_ == .drained || where_ == .inShutdown {
                // Crashed in (or on the way to) shutdown: counted and named; nothing to restart for.
                _ = recordCrash(label: label, text: text, batch: nil, restarting: false)
                break
            }
            if recordCrash(label: label, text: text, batch: where_ == .inEvents ? batch : nil) { break }
            st.withLock { $0.state = .restarting }
        }
        let spare = st.withLock { s -> Launched? in
            s.finished = true
            if s.state == .running || s.state == .restarting { s.state = .stopped }
            s.process = nil
            defer { s.spare = nil }
            return s.spare
        }
        spare?.discard()
        remote.deregister()
        finishedSignal.signal()
    }

    /// The wait before a restart: `restart_backoff`, doubled for each other crash within
    /// `crash_interval`, at most `restartBackoffMax`.
    func backoff(afterCrashes recent: Int) -> Duration {
        min(policy.restartBackoff * (1 << min(max(1, recent) - 1, 20)), policy.restartBackoffMax)
    }

    /// Counts a crash, decides about poison events and quarantine. Returns true when quarantined.
    func recordCrash(label: String, text: String, batch: (first: UInt64, last: UInt64)?, restarting: Bool = true) -> Bool {
        let now = clock.now
        var poison: UInt64?
        let (quarantined, count) = st.withLock { s -> (Bool, Int) in
            s.crashes[label, default: 0] += 1
            s.lastCrash = text
            s.lastError = "crashed: \(text)"
            s.crashTimes.append(now)
            s.crashTimes.removeAll { now - $0 > policy.crashInterval }
            if let b = batch, b.last >= b.first, b.last - b.first < 65_536 {
                for q in b.first...b.last { s.crashCounts[q, default: 0] += 1 }
                if b.first == b.last, s.crashCounts[b.first, default: 0] >= 2, !s.skip.contains(b.first) {
                    s.skip.append(b.first)
                    poison = b.first
                    s.crashCounts[b.first] = nil
                } else if b.first != b.last {
                    // Next time one event per callback, so a second crash names the event.
                    s.singleUntil = max(s.singleUntil, b.last)
                }
                if s.crashCounts.count > 100_000 { s.crashCounts.removeAll() }
            }
            if restarting && s.crashTimes.count > policy.crashBurst {
                s.state = .quarantined
                s.quarantineReason = "crashed \(s.crashTimes.count) times within \(policy.crashInterval.shortText); last: \(text)"
                return (true, s.crashTimes.count)
            }
            return (false, s.crashTimes.count)
        }
        if let seq = poison { withholdPoison(seq) }
        if !restarting {
            logger.error("plugin crashed: \(text)", metadata: ["plugin": "\(spec.name)", "reason": "\(label)"])
            return false
        }
        if quarantined {
            remote.deregister()
            logger.error("plugin quarantined: it crashed \(count) times within \(policy.crashInterval.shortText) (more than plugins.crash_burst = \(policy.crashBurst)); it gets no more events until the daemon restarts or the plugin is reloaded. Last crash: \(text)",
                         metadata: ["plugin": "\(spec.name)"])
        } else {
            logger.error("plugin crashed: \(text); restarting it from its cursor in \(backoff(afterCrashes: count).shortText) (crash \(count) of at most \(policy.crashBurst) within \(policy.crashInterval.shortText))",
                         metadata: ["plugin": "\(spec.name)", "reason": "\(label)"])
        }
        return quarantined
    }

    /// Logs the poison event and publishes it to the plugin's own stream (topic "poison").
    func withholdPoison(_ seq: UInt64) {
        let head = ring.published
        var json = "{\"sequence\":\(seq)}"
        if seq <= head && head &- seq < UInt64(ring.window) {
            let e = ring.readSlot(seq).assumingMemoryBound(to: pb_event.self)
            let line = EventJSON.encode(e)
            if e.pointee.sequence == seq { json = line }
        }
        logger.error("plugin crashed twice on the same event: it will not receive it again (counted in skipped): \(json)",
                     metadata: ["plugin": "\(spec.name)", "sequence": "\(seq)"])
        _ = context.publish(topic: "poison", payload: Array(json.utf8))
    }

    /// Serves one running process until it ends. Returns how it ended.
    func watch(_ process: ChildProcess, _ channel: WireChannel, _ queue: SharedQueue.Consumer) -> ExitStatus {
        let tickMilliseconds = Int32(clamping: max(1, policy.watchdogTick.nanoseconds / 1_000_000))
        var lastCursor = control.cursor
        var lastMove = clock.now
        var channelOpen = true
        while true {
            var fds = [Poll.readable(channelOpen ? channel.fd.rawValue : -1), Poll.readable(process.pidfd.rawValue),
                       Poll.readable(queue.wakeup.rawValue), Poll.readable(monitorWake.rawValue)]
                + outputs.map { Poll.readable($0.fd.rawValue) }
            // Always poll (the pidfd and the socket must be seen even while records keep coming);
            // sleep only when the queue is empty and sound.
            let idle = queue.corruption == nil && queue.prepareToSleep()
            // Idle, the watchdog ticks every 50 ms (`watchdogTick`): a deadline kill lands within
            // 50 ms of it, and 100 idle plugins cost 2,000 wake-ups a second, not 10,000.
            _ = try? Poll.wait(&fds, timeoutMilliseconds: idle ? tickMilliseconds : 0)
            queue.awake()
            if fds[3].revents != 0 { _ = try? monitorWake.drain() }
            if idle && fds[0].revents == 0 && fds[1].revents == 0 && fds[2].revents == 0 && fds[3].revents == 0
                && fds[4...].contains(where: { $0.revents != 0 }) {
                // Only the plugin's output woke this thread: let a millisecond's lines gather
                // first. A plugin that prints a line per event (usb-logger) otherwise wakes it
                // once per line; the pipe holds 64 KiB, and anything else is seen at the next poll.
                sleepThread(for: Self.outputGather)
            }
            drainOutput()
            if !drain(queue) { kill(process, label: "protocol", text: "corrupted its host-call queue (\(queue.corruption ?? "?"))") }
            if channelOpen && fds[0].revents != 0 {
                do {
                    let frame = try channel.receive()
                    if WireType(rawValue: frame.type) == .log { handleLog(frame.payload) } else {
                        if !handle(frame, channel: channel) {
                            kill(process, label: "protocol", text: "sent an unknown or malformed message (type \(frame.type))")
                        }
                    }
                    // A worker that ended may have left more frames (notes before a crash): read
                    // them all before its exit is handled. Otherwise on to the checks below: a
                    // frame may announce what they look for (`.drained`).
                    if fds[1].revents != 0 { continue }
                } catch {
                    channelOpen = false
                    // A worker that died closes (or resets) its end first: its exit is the reason.
                    if let status = process.wait(timeout: .milliseconds(200)) {
                        _ = drain(queue)
                        return status
                    }
                    if case .malformed(let why) = error { kill(process, label: "protocol", text: "broke the worker protocol (\(why))") }
                    if case .system = error { kill(process, label: "protocol", text: "left a message half-sent") }
                }
            }
            if fds[1].revents != 0 || !channelOpen {
                if let status = process.wait(timeout: channelOpen ? .zero : .seconds(2)) {
                    _ = drain(queue)  // what it queued before it ended
                    return status
                }
                if !channelOpen {
                    kill(process, label: "protocol", text: "closed its connection to the host")
                    if let status = process.wait(timeout: .seconds(5)) { return status }
                }
            }
            // The watchdog.
            let now = pbs_monotonic_ns()
            if let started = control.callbackStart {
                let limit = UInt64((spec.deadline ?? policy.defaultCallbackDeadline).nanoseconds)
                if now > started && now - started > limit {
                    let batch = control.batch
                    kill(process, label: "deadline",
                         text: "overran its deadline of \(limit / 1_000_000) ms" + (batch.map { _ in "" } ?? ""))
                    control.add(.overruns, 1)
                }
            }
            let cursor = control.cursor
            if cursor != lastCursor {
                lastCursor = cursor
                lastMove = clock.now
            } else if ring.published != cursor, control.callbackStart == nil, control.activity == .idle,
                      clock.now - lastMove > policy.stallTimeout {
                kill(process, label: "stalled", text: "read no event for \(policy.stallTimeout.shortText) while events waited")
                lastMove = clock.now
            }
            let (gate, sent) = st.withLock { ($0.gateOpen, $0.shutdownSent) }
            if gate && !sent && control.activity == .drained {
                st.withLock { $0.shutdownSent = true }
                try? channel.send(.shutdown)
            }
        }
    }

    /// Takes what the worker wrote to its standard output and error, a line at a time (4 KiB at
    /// most): stdout lines go to the daemon's stdout, stderr lines are logged as the plugin's
    /// messages (labelled, rate-limited); both escaped like a log record. `final`: the process
    /// ended, so a last line without its newline is taken too.
    /// How long the monitor waits, when only output woke it, before reading it (see `watch`).
    static let outputGather: Duration = .milliseconds(5)

    func drainOutput(final: Bool = false) { drainOutput(outputs, final: final) }

    func drainOutput(_ outputs: [CapturedStream], final: Bool = false) {
        for stream in outputs {
            while true {
                let n = Glibc.read(stream.fd.rawValue, stream.scratch.baseAddress, stream.scratch.count)
                if n <= 0 { break }
                stream.pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: stream.scratch[0..<n]))
                // The lines are taken by position and what they used is removed once per read:
                // removing each line from the front moved the rest of the buffer per line (the
                // relay's top cost with a line per event; docs/benchmarks.md, "The whole daemon
                // with the sample plugins").
                // One borrow of the buffer per read, lines found with memchr (indexing the class's
                // array per byte and per line cost more than the lines: usb-logger prints one per event).
                let kind = stream.kind
                let start = stream.pending.withUnsafeBufferPointer { buf -> Int in
                    guard let base = buf.baseAddress else { return 0 }
                    var start = 0
                    while start < buf.count {
                        if let nl = memchr(base + start, 10, buf.count - start) {
                            let newline = UnsafeRawPointer(nl).assumingMemoryBound(to: UInt8.self) - base
                            emit(UnsafeBufferPointer(rebasing: buf[start..<newline]), kind)
                            start = newline + 1
                        } else if buf.count - start >= 4096 {
                            emit(UnsafeBufferPointer(rebasing: buf[start..<start + 4096]), kind)
                            start += 4096
                        } else {
                            break
                        }
                    }
                    return start
                }
                if start > 0 { stream.pending.removeSubrange(0..<start) }
            }
            if final && !stream.pending.isEmpty {
                stream.pending.withUnsafeBufferPointer { emit($0, stream.kind) }
                stream.pending.removeAll()
            }
        }
    }

    func emit(_ line: UnsafeBufferPointer<UInt8>, _ kind: CapturedStream.Kind) {
        switch kind {
        case .errors:
            context.log(level: PB_LOG_WARNING, message: "(stderr) " + String(decoding: line, as: UTF8.self))
        case .output:
            // The plugin's own output, within the same per-plugin budget as its log: a plugin
            // flooding stdout cannot flood the daemon's (and the journal). A line over the
            // budget is not decoded at all.
            let (admitted, dropped) = context.admitLog()
            guard admitted else { return }
            let text = String(decoding: line, as: UTF8.self)
            if dropped > 0 {
                context.logger.warning("plugin output rate limit: \(dropped) lines or messages dropped (the limit is \(context.logLimits.perSecond) per second, plugins.log_rate)")
            }
            let record = Text.logRecord(text, limit: context.logLimits.messageBytes) + "\n"
            _ = record.withCString { Glibc.write(1, $0, strlen($0)) }
        }
    }

    /// Applies the worker's queued host calls. False when the queue is corrupt (kill the worker).
    func drain(_ queue: SharedQueue.Consumer) -> Bool {
        if queue.corruption != nil { return true }  // reported once; the worker is being killed
        let r = queue.drain { kind, payload in
            switch HostCallRecord.decode(kind: kind, payload) {
            case .publish(let topic, let data):
                tap.withLock { $0?.add(OutputRecord(plugin: spec.name, topic: topic, payload: data)) }
                if !shadow { _ = context.publish(topic: topic, payload: data) }
            case .mark(let cursor): tap.withLock { $0?.mark(cursor) }
            case .counter(let name, let delta): context.counterAdd(name, delta)
            case .gauge(let name, let value): context.gaugeSet(name, value)
            case .histogram(let name, let value): context.histogramObserve(name, value)
            case .log(let level, let message): context.log(level: level, message: message)
            case nil: break
            }
        }
        return !r.isCorrupt
    }

    func kill(_ process: ChildProcess, label: String, text: String) {
        st.withLock { if $0.killReason == nil { $0.killReason = (label, text) } }
        process.signal(SIGKILL)
    }

    func handleLog(_ payload: [UInt8]) {
        var r = WireReader(payload)
        guard let source = try? r.u8(), let level = try? r.u32(), let message = try? r.string() else { return }
        let lvl = Int32(bitPattern: level)
        if source == 1 {
            // The worker's own messages quote the plugin (dlerror, its name): escaped like its log.
            let clean = Text.logRecord(message, limit: context.logLimits.messageBytes)
            if lvl >= PB_LOG_ERROR { st.withLock { $0.lastError = clean } }
            var l = logger
            l[metadataKey: "plugin"] = "\(spec.name)"
            l.log(level: lvl >= PB_LOG_ERROR ? .error : lvl >= PB_LOG_WARNING ? .warning : .info, "\(clean)")
        } else {
            context.log(level: lvl, message: message)
        }
    }

    /// Handles one frame from the worker; false when it is unknown or malformed.
    @discardableResult
    func handle(_ frame: (type: UInt8, payload: [UInt8]), channel: WireChannel) -> Bool {
        var r = WireReader(frame.payload)
        switch WireType(rawValue: frame.type) {
        case .deviceTableRequest:
            var w = WireWriter()
            let records = deviceTable.records()
            w.u32(UInt32(records.count))
            for rec in records { w.data(rec.bytes) }
            try? channel.send(.deviceTable, w.bytes)
        case .state:
            guard let cursor = try? r.u64(), let has = try? r.u8() else { return false }
            let saved = has == 1 ? try? r.data() : nil
            st.withLock { $0.handover = (cursor, saved) }
            handoverSignal.signal()
        case .snapshot:
            guard let cursor = try? r.u64(), let has = try? r.u8() else { return false }
            let saved = has == 1 ? try? r.data() : nil
            st.withLock { $0.snapshot = (cursor, saved) }
            snapshotSignal.signal()
        case .done, .drained:
            break  // the frame woke the monitor; `watch` reads the activity it announces
        default:
            return false
        }
        return true
    }

    // MARK: Canary

    /// Starts taking this worker's output for a comparison: from the next mark on, each
    /// publish is kept in order with the marks that place it among the events.
    public func startTap(limit: Int) { tap.withLock { $0 = OutputTap(limit: limit) } }

    /// What the tap took so far (the tap goes on).
    public var tapped: OutputTap? { tap.withLock { $0 } }

    /// Stops the tap and the marks; returns what was taken.
    @discardableResult
    public func stopTap() -> OutputTap? {
        control.markToken = 0
        return tap.withLock { t in defer { t = nil }; return t }
    }

    /// Asks the running plugin for its state and the cursor it belongs to, between two batches,
    /// without stopping it; from then on it marks every batch in its host-call queue (see
    /// `OutputTap`). nil when it did not answer within `timeout`.
    public func snapshot(timeout: Duration) -> (cursor: UInt64, state: [UInt8]?)? {
        st.withLock { $0.snapshot = nil }
        requestMarks()
        guard snapshotSignal.wait(timeout: .now() + .nanoseconds(Int(timeout.nanoseconds))) == .success else { return nil }
        return st.withLock { $0.snapshot }
    }

    /// Asks for marks (and a snapshot) with a fresh token; the worker sees it between batches.
    public func requestMarks() {
        let token = control.markToken
        control.markToken = token == UInt32.max || token == 0 ? 1 : token + 1
        ring.wakeAll()
    }

    /// The canary's fence: the worker reads nothing past `sequence` (0 lifts it).
    public func fence(at sequence: UInt64) {
        control.readLimit = sequence
        ring.wakeAll()
    }

    /// The worker could not queue a mark: its tap cannot be trusted.
    public var markLost: Bool { control.markLost }
    /// Its own counters (not its predecessors').
    public func counter(_ c: WorkerControl.Counter) -> UInt64 { control[c] }

    // MARK: Stop

    public func openShutdownGate() {
        st.withLock { $0.gateOpen = true }
        try? monitorWake.signal()
    }

    public func requestStop() {
        let (p, starting, spare) = st.withLock { s -> (ChildProcess?, [ChildProcess], Launched?) in
            s.stopping = true
            defer { s.spare = nil }
            return (s.process, s.initializing, s.spare)
        }
        control.command = .stop
        ring.wakeAll()
        try? monitorWake.signal()
        p?.signal(SIGKILL)
        for c in starting { c.signal(SIGKILL) }
        spare?.discard()
        // A replacement held for its go (a reload or a canary that was given up) goes on to end.
        handoverSignal.signal()
    }

    // MARK: Pre-warmed spare (plugins.prewarm)

    /// The held spare, when it is still alive; nil otherwise (a dead one is released).
    func takeSpare() -> Launched? {
        guard let spare = st.withLock({ s -> Launched? in defer { s.spare = nil }; return s.spare }) else { return nil }
        if spare.process.wait(timeout: .zero) != nil {
            logger.warning("the pre-warmed worker process had ended before it was needed; starting a new one", metadata: ["plugin": "\(spec.name)"])
            spare.discard()
            return nil
        }
        return spare
    }

    /// Starts a spare worker process through load and init, on a thread of its own, unless one
    /// is held or on its way (`plugins.prewarm`): the next crash restart adopts it instead of
    /// waiting for spawn, `dlopen` and `init`.
    func prepareSpare() {
        guard policy.prewarm, !shadow else { return }
        let go = st.withLock { s -> Bool in
            if s.stopping || s.spare != nil || s.preparingSpare { return false }
            s.preparingSpare = true
            return true
        }
        guard go else { return }
        _ = NativeThread(name: "pb-spare-\(spec.name)") { [self] in
            let result = spawnReady(spare: true)
            let unused = st.withLock { s -> Launched? in
                s.preparingSpare = false
                guard case .success(let l) = result else { return nil }
                if s.stopping || s.spare != nil { return l }
                s.spare = l
                return nil
            }
            unused?.discard()
            if case .failure(let error) = result, !st.withLock({ $0.stopping }) {
                logger.warning("could not pre-warm a spare worker process; a restart will start one: \(error.description)",
                               metadata: ["plugin": "\(spec.name)"])
            }
        }
    }

    public func join(until deadline: ContinuousClock.Instant?) -> Bool {
        guard monitor != nil else { return true }
        if let deadline {
            let left = deadline - clock.now
            if finishedSignal.wait(timeout: .now() + .nanoseconds(Int(max(0, left.nanoseconds)))) == .success {
                finishedSignal.signal()
                return true
            }
            // Past the deadline: the process is killed, so it ends (its plugin did not finish).
            requestStop()
            _ = finishedSignal.wait(timeout: .now() + .seconds(5))
            finishedSignal.signal()
            return false
        }
        finishedSignal.wait()
        finishedSignal.signal()
        return true
    }

    /// Hot reload: asks the worker to stop after its batch and hand over its cursor and state.
    /// Returns them (nil state when the plugin has none), or nil when it did not answer in time.
    public func handOver(timeout: Duration) -> (cursor: UInt64, state: [UInt8]?)? {
        control.command = .handOver
        ring.wakeAll()
        guard handoverSignal.wait(timeout: .now() + .nanoseconds(Int(timeout.nanoseconds))) == .success else { return nil }
        return st.withLock { $0.handover }
    }

    /// Adds a predecessor's counters (a hot reload keeps a plugin's totals).
    public func inheritCounters(from old: ProcessWorker) {
        recycles.store(old.recycles.load(ordering: .relaxed), ordering: .relaxed)
        let theirs = old.inherited.withLock { $0 }
        inherited.withLock { mine in
            for k in WorkerControl.Counter.allCases { mine[k, default: 0] &+= old.control[k] &+ (theirs[k] ?? 0) }
        }
    }
}


/// One worker's output as a canary compares it: publishes in order, cut into segments by the
/// marks the worker queues after each batch, so each segment is known to belong to the events
/// between two cursors. Publishes before the first mark (init, or a batch under way when the
/// tap began) are not kept. Bounded: past `limit` records, `overflowed` is set and no more kept.
public struct OutputTap: Sendable {
    public struct Segment: Sendable {
        /// The cursor the worker had finished with when it marked this segment's end.
        public var upTo: UInt64
        public var records: [OutputRecord]
    }
    public let limit: Int
    /// The first mark's cursor: the segments cover the events after it.
    public private(set) var start: UInt64?
    public private(set) var segments: [Segment] = []
    public private(set) var overflowed = false
    var current: [OutputRecord] = []
    var kept = 0

    public init(limit: Int) { self.limit = limit }

    mutating func add(_ record: OutputRecord) {
        guard start != nil else { return }
        if kept >= limit {
            overflowed = true
            return
        }
        kept += 1
        current.append(record)
    }

    mutating func mark(_ cursor: UInt64) {
        if start == nil {
            start = cursor
            current = []
            return
        }
        segments.append(Segment(upTo: cursor, records: current))
        current = []
    }

    /// The last mark's cursor.
    public var reached: UInt64? { segments.last?.upTo ?? start }

    /// Whether a mark fell exactly on `cursor`.
    public func marked(_ cursor: UInt64) -> Bool { start == cursor || segments.contains { $0.upTo == cursor } }

    /// The records of the events after `from` up to and including `to`, in order; nil unless
    /// marks fall exactly on both.
    public func records(after from: UInt64, through to: UInt64) -> [OutputRecord]? {
        guard marked(from), marked(to) else { return nil }
        return segments.filter { $0.upTo > from && $0.upTo <= to }.flatMap(\.records)
    }
}
