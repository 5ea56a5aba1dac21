import PlugboardCore

/// What the shutdown coordinator, the HTTP endpoints and the metrics need from the host.
///
/// `Host` is the implementation; the protocol keeps the HTTP and metrics code testable with a
/// fixed status. Every method is
/// called from a daemon thread, never from a plugin's worker thread; `status()` may be called at any
/// time from any thread (HTTP scrapes) and must not block on a plugin.
public protocol RuntimeControl: AnyObject, Sendable {
    /// Loads the plugins, starts one worker per plugin and starts the source.
    /// Returns once every plugin's init has returned and the source is live.
    /// - Throws: when the runtime cannot start at all (no source, no plugin directory...).
    func start() throws

    /// Stops the source: no event enters the ring after this returns, and the ring is closed so
    /// that consumers see `.finished` once they have read everything published.
    /// - Returns: `["source"]` when the source had not ended by `deadline`; empty otherwise.
    func stopSource(until deadline: ContinuousClock.Instant) -> [String]

    /// Waits until every consumer (plugin workers, the Redis publisher) has processed every event
    /// published before `stopSource()`, or until `deadline`.
    /// - Returns: the components still busy at the deadline, e.g. `plugin slow (in events callback, 12 events left)`; empty when drained.
    func drain(until deadline: ContinuousClock.Instant) -> [String]

    /// Calls every plugin's `shutdown` on its worker thread and joins the workers, until `deadline`.
    /// - Returns: the plugins whose shutdown had not returned by the deadline; empty when all did.
    func shutdownPlugins(until deadline: ContinuousClock.Instant) -> [String]

    /// Flushes outputs: the Redis publisher's unacknowledged window and the plugins' output queue.
    /// - Returns: the outputs still busy at the deadline (e.g. `redis (3 unacknowledged)`); empty when flushed.
    func flushOutputs(until deadline: ContinuousClock.Instant) -> [String]

    /// A consistent-enough snapshot for /plugins, /devices, /readyz and /metrics.
    /// Counters are read with relaxed atomics; no lock is taken that a worker holds per event.
    func status() -> RuntimeStatus
}

/// The runtime's state at one moment.
public struct RuntimeStatus: Sendable {
    /// Every plugin's init has returned (successfully or not).
    public var pluginsInitialised: Bool
    /// The source is delivering events (udev monitor bound, replay or synthetic running).
    public var sourceLive: Bool
    public var plugins: [PluginStatus]
    public var devices: [DeviceInfo]
    public var ring: RingStatus
    /// Events published into the ring, by `pb_action_name` ("add", "remove"...); nil when the
    /// runtime does not count them per action (the core does not yet).
    public var eventsByAction: [String: UInt64]?
    /// Resyncs sent to plugins (after a lap or a netlink overflow).
    public var resyncs: UInt64
    /// Receipt (`pb_event.timestamp_ns`) to the start of the plugin callback, over all plugins.
    public var eventLatency: HistogramSnapshot
    public var redis: RedisStatus?
    public var startup: StartupTimings
    public var manifestCache: CacheCounters
    /// The host's own bounded memory: the device table and the plugin output queue (the Redis
    /// spill is in `redis`, the manifest LRU in `manifestCache`).
    public var bounds = HostBounds()
    /// Metrics the plugins record through the host API (`counter_add`, `gauge_set`,
    /// `histogram_observe`), by plugin name.
    public var pluginMetrics: [String: PluginContext.Metrics] = [:]

    public init(pluginsInitialised: Bool = false, sourceLive: Bool = false, plugins: [PluginStatus] = [],
                devices: [DeviceInfo] = [], ring: RingStatus = RingStatus(slots: 0, published: 0, fill: 0),
                eventsByAction: [String: UInt64]? = nil, resyncs: UInt64 = 0, eventLatency: HistogramSnapshot = .empty,
                redis: RedisStatus? = nil, startup: StartupTimings = StartupTimings(), manifestCache: CacheCounters = CacheCounters()) {
        self.pluginsInitialised = pluginsInitialised
        self.sourceLive = sourceLive
        self.plugins = plugins
        self.devices = devices
        self.ring = ring
        self.eventsByAction = eventsByAction
        self.resyncs = resyncs
        self.eventLatency = eventLatency
        self.redis = redis
        self.startup = startup
        self.manifestCache = manifestCache
    }
}

/// One plugin, as /plugins shows it.
public struct PluginStatus: Sendable {
    public enum State: String, Sendable {
        case loading, running, failed, draining, stopped
        /// A worker process crashed and waits for its restart.
        case restarting
        /// Crashed too often; gets no events (see `quarantineReason`).
        case quarantined
    }
    public var name: String
    public var version: String
    public var state: State
    /// Events delivered to the plugin's callback.
    public var events: UInt64
    /// Callbacks that returned an error, plus refused loads.
    public var errors: UInt64
    /// Events published but not yet processed by this plugin (ring head minus its cursor).
    public var lag: UInt64
    /// Times this plugin fell a whole ring behind.
    public var laps: UInt64
    /// Callbacks that ran past the manifest's `[worker] deadline_ms`.
    public var overruns: UInt64 = 0
    public var lastError: String?
    /// Duration of the plugin's events callback, per call.
    public var callbackDuration: HistogramSnapshot
    /// dlopen + negotiation + init.
    public var loadTime: Duration?
    /// "process" or "thread".
    public var isolation: String = "thread"
    /// The worker process (0 in thread mode).
    public var pid: Int32 = 0
    public var restarts: UInt64 = 0
    /// Worker processes replaced on purpose (`plugins.recycle_after_*`).
    public var recycles: UInt64 = 0
    /// Crashes by reason ("SIGSEGV", "exit_3", "deadline"...).
    public var crashes: [String: UInt64] = [:]
    /// Poison events withheld from it.
    public var skipped: UInt64 = 0
    public var quarantineReason: String?
    public var lastCrash: String?
    /// Records its `publish` calls were refused (queue full, or larger than plugins.max_record_bytes).
    public var publishRefused: UInt64 = 0
    /// Log messages dropped by its rate limit (plugins.log_rate).
    public var logDropped: UInt64 = 0
    /// Its settle window in ms (0: none), and the window's counters (docs/operations.md, "Settle window").
    public var settleMilliseconds: Int = 0
    public var settleCoalesced: UInt64 = 0
    public var settleFlaps: UInt64 = 0
    public var settleOverflow: UInt64 = 0
    /// Most events per callback (the smaller of performance.batch_size and [worker] batch), and
    /// the sizes of the batches it was handed (docs/operations.md, "Memory and batching").
    public var batchCeiling: Int = 0
    public var batchSizes: BatchSizes.Snapshot = .empty

    public init(name: String, version: String, state: State, events: UInt64 = 0, errors: UInt64 = 0, lag: UInt64 = 0,
                laps: UInt64 = 0, lastError: String? = nil, callbackDuration: HistogramSnapshot = .empty, loadTime: Duration? = nil) {
        self.name = name
        self.version = version
        self.state = state
        self.events = events
        self.errors = errors
        self.lag = lag
        self.laps = laps
        self.lastError = lastError
        self.callbackDuration = callbackDuration
        self.loadTime = loadTime
    }
}

/// One present device (a row of the device table).
public struct DeviceInfo: Sendable, Equatable {
    public var syspath: String
    public var devnode: String
    public var vendorID: UInt16
    public var productID: UInt16
    public var serial: String
    public var manufacturer: String
    public var product: String
    public var driver: String
    public var busnum: UInt16
    public var devnum: UInt16

    public init(syspath: String, devnode: String = "", vendorID: UInt16, productID: UInt16, serial: String = "",
                manufacturer: String = "", product: String = "", driver: String = "", busnum: UInt16 = 0, devnum: UInt16 = 0) {
        self.syspath = syspath
        self.devnode = devnode
        self.vendorID = vendorID
        self.productID = productID
        self.serial = serial
        self.manufacturer = manufacturer
        self.product = product
        self.driver = driver
        self.busnum = busnum
        self.devnum = devnum
    }
}

public struct RingStatus: Sendable {
    public var slots: Int
    /// Events published since start (the producer's sequence).
    public var published: UInt64
    /// Slots holding events the slowest consumer has not read yet.
    public var fill: UInt64
    public init(slots: Int, published: UInt64, fill: UInt64) {
        self.slots = slots
        self.published = published
        self.fill = fill
    }
}

public struct RedisStatus: Sendable {
    public var connected: Bool
    public var published: UInt64
    public var spilled: UInt64
    public var dropped: UInt64
    /// Entries re-sent under a new ID epoch (docs/redis.md, "Exactly once").
    public var reissued: UInt64
    /// Redis Cluster MOVED redirects followed.
    public var redirects: UInt64
    /// XADD round trip, per pipelined batch.
    public var publishLatency: HistogramSnapshot
    /// Bytes of the event store in use (unacknowledged window + spill) and its size.
    public var heldBytes: UInt64 = 0
    public var capacityBytes: UInt64 = 0
    /// Events the ring overwrote before the publisher read them (with those a crashed daemon's
    /// ring no longer held at recovery).
    public var lapped: UInt64 = 0
    public init(connected: Bool, published: UInt64 = 0, spilled: UInt64 = 0, dropped: UInt64 = 0, reissued: UInt64 = 0,
                redirects: UInt64 = 0, publishLatency: HistogramSnapshot = .empty) {
        self.connected = connected
        self.published = published
        self.spilled = spilled
        self.dropped = dropped
        self.reissued = reissued
        self.redirects = redirects
        self.publishLatency = publishLatency
    }
}

/// Durations measured once at start-up (or per reload); exported as histograms.
public struct StartupTimings: Sendable {
    public var manifestParse: [Duration]
    public var deviceEnumeration: Duration?
    /// Per plugin: from thread creation to the worker waiting on the ring.
    public var workerStart: [Duration]
    public init(manifestParse: [Duration] = [], deviceEnumeration: Duration? = nil, workerStart: [Duration] = []) {
        self.manifestParse = manifestParse
        self.deviceEnumeration = deviceEnumeration
        self.workerStart = workerStart
    }
}

public struct CacheCounters: Sendable {
    public var hits: UInt64
    public var misses: UInt64
    /// Manifests held in memory, the most it holds (`plugins.cache_size`), and those dropped to stay within it.
    public var entries: UInt64 = 0
    public var capacity: UInt64 = 0
    public var evictions: UInt64 = 0
    public init(hits: UInt64 = 0, misses: UInt64 = 0) {
        self.hits = hits
        self.misses = misses
    }
}

/// The host's bounded tables: their sizes now, their bounds, and how often a bound was hit.
public struct HostBounds: Sendable {
    /// The device table: devices held, `performance.max_devices`, device events refused into it.
    public var devices: UInt64 = 0
    public var maxDevices: UInt64 = 0
    public var devicesRefused: UInt64 = 0
    /// The plugin output queue: records and payload bytes waiting, its bound in records
    /// (`plugins.output_queue_records`) and bytes, and publishes refused because it was full.
    public var outputRecords: UInt64 = 0
    public var outputBytes: UInt64 = 0
    public var outputMaxRecords: UInt64 = 0
    public var outputMaxBytes: UInt64 = 0
    public var outputFull: UInt64 = 0
    public init() {}
}
