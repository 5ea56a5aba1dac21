import Foundation
import Logging
import PlugboardCore
import PlugboardReplay
import PlugboardRedis
import PlugboardUdev
import Synchronization

/// The one host: the runtime, its source, its plugins and its sinks (the Redis publisher,
/// `monitor`'s printer), assembled from `HostSettings` the same way for `plugboard run`,
/// `serve` and `monitor`.
///
/// Start with `start()` (plugins, then sinks, then the source); stop with the shutdown steps of
/// `RuntimeControl` (`stopSource`, `drain`, `shutdownPlugins`, `flushOutputs`), which
/// `ShutdownCoordinator` runs in order under one deadline.
public final class HostAssembly: RuntimeControl {
    public let settings: HostSettings
    public let runtime: Runtime
    public let source: any EventSource
    /// Counters of the udev source, when it is the source.
    public let udevCounters: UdevSourceCounters?
    /// The Redis publisher, when `settings.redis` is set.
    public let redis: RedisSink?
    let logger: Logger
    let clock = ContinuousClock()

    /// What starting the plugins found.
    public struct PluginReport: Sendable {
        public var running = 0
        public var loadTimes: [String: Duration] = [:]
        /// Finding the plugins and reading their manifests (or listing the directories).
        public var discovery: Duration = .zero
        /// Manifests served from the registry cache or the LRU, and those parsed from disk.
        public var cacheHits = 0
        public var cacheMisses = 0
        /// The manifest LRU at the end of the start: entries, capacity (`plugins.cache_size`; 0
        /// without manifests) and evictions.
        public var cacheEntries = 0
        public var cacheCapacity = 0
        public var cacheEvictions = 0
    }

    struct State {
        var sinks: [any EventSink] = []
        var report = PluginReport()
        var initialised = false
        var sourceStarted = false
        var stopRequested = false
    }
    let state = Mutex(State())

    /// Creates the runtime and the source (a replay file is read and validated here).
    /// - Parameters:
    ///   - sinks: consumers besides the plugins (the Redis publisher is added from the settings).
    ///   - udevObserver: called by the udev source with each event's sequence and the device it
    ///     was built from, after publishing it (`monitor --properties`).
    /// - Throws: `PlugboardError` for a bad replay file or a ring that cannot be created.
    public init(settings: HostSettings, sinks: [any EventSink] = [],
                udevObserver: (@Sendable (UInt64, UdevDeviceView?) -> Void)? = nil, logger: Logger) throws {
        self.settings = settings
        self.logger = logger
        var options = RuntimeOptions()
        options.ringSlots = settings.ringSlots
        options.batchSize = settings.batchSize
        options.pluginConfiguration = settings.pluginConfiguration
        options.flowControlForFiniteSources = !settings.lossy
        options.cpuAffinity = settings.cpuAffinity
        options.processPolicy = settings.isolation.policy
        options.initDeadline = settings.isolation.policy.initDeadline
        options.maxRecordBytes = settings.maxRecordBytes
        options.maxDevices = settings.maxDevices
        options.outputQueueRecords = settings.outputQueueRecords
        options.logLimits = settings.logLimits
        options.recycle = settings.recycle
        var redisConfiguration = settings.redis
        do {
            try Self.recoverState(settings: settings, options: &options, redis: &redisConfiguration, logger: logger)
            runtime = try Runtime(options: options, logger: logger)
        } catch { throw settings.explain(error) }
        switch settings.source {
        case .replay(let path):
            do { source = try ReplaySource(path: path, pace: settings.replayPace) } catch { throw settings.explain(error) }
            udevCounters = nil
        case .synthetic(let n):
            source = SyntheticSource(count: UInt64(n))
            udevCounters = nil
        case .udev:
            let counters = UdevSourceCounters()
            source = UdevSource(options: settings.udev, counters: counters, onEvent: udevObserver)
            udevCounters = counters
        }
        redis = redisConfiguration.map { RedisSink(configuration: $0, logger: logger) }
        state.withLock { $0.sinks = (redis.map { [$0] } ?? []) + sinks }
    }

    /// Starts everything: the plugins (every init has returned when this returns), the sinks,
    /// then the source. Logs the settings on one line ("host settings: ...").
    /// - Throws: when a plugin directory cannot be read, the manifests' dependencies form a cycle,
    ///   or a sink cannot start.
    public func start() throws {
        logger.notice("host settings: \(settings.summaryLine)")
        for warning in settings.warnings { logger.warning("\(warning)") }
        do { try startPlugins() } catch { throw settings.explain(error) }
        state.withLock { $0.initialised = true }
        try startSinks()
        if runtime.startAborted {
            logger.notice("stop requested while plugins were initialising: the event source is not started")
            return
        }
        startSource()
    }

    /// A shutdown arrived during `start()`: worker processes still initialising are killed, and
    /// `start()` returns without starting the source.
    public func abortStart() { runtime.abortStart() }

    /// Starts the sinks, each as one more ring consumer (before the source, so each sees every event).
    func startSinks() throws {
        if redis == nil {
            logger.notice("Redis is not configured (--redis URL, or redis.url in the configuration): events are not published")
        }
        for sink in state.withLock({ $0.sinks }) {
            try sink.start(events: runtime.ring.makeConsumer(name: sink.name), pluginOutput: runtime.outputQueue)
        }
    }

    /// Starts the source on its own thread.
    func startSource() {
        runtime.start(source: source)
        state.withLock { $0.sourceStarted = true }
    }

    /// The publisher's counters, when publishing.
    public var publisherStats: RedisPublisherStats? { redis?.publisher.stats }

    /// What `startPlugins` found.
    public var pluginReport: PluginReport { state.withLock { $0.report } }

    /// Waits until a finite source has ended and every plugin has read all it published (the
    /// plugins are not shut down yet). Never returns for a live source that is not stopped.
    public func waitUntilSourceDrained() { runtime.waitUntilSourceDrained() }

    // MARK: The shutdown steps (RuntimeControl)

    public func stopSource(until deadline: ContinuousClock.Instant) -> [String] {
        state.withLock { $0.stopRequested = true }
        return runtime.stopSource(until: deadline)
    }

    public func drain(until deadline: ContinuousClock.Instant) -> [String] {
        runtime.drain(until: deadline)
    }

    public func shutdownPlugins(until deadline: ContinuousClock.Instant) -> [String] {
        runtime.shutdownPlugins(until: deadline)
    }

    public func flushOutputs(until deadline: ContinuousClock.Instant) -> [String] {
        state.withLock { $0.sinks }.compactMap { $0.stop(until: deadline) }
    }
}
