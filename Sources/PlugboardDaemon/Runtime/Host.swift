import Foundation
import Logging
import PlugboardCore
import PlugboardManifestHost
import PlugboardRedis
import PlugboardUdev
import Synchronization

/// How the host finds its plugins.
public enum PluginDiscovery: Sendable, Equatable {
    /// Only plugins with a valid `.pbm` manifest (docs/manifest.md); the registry cache at
    /// `registryCache` (nil: none) and an LRU of `lruCapacity` parsed manifests.
    case manifests(registryCache: String?, lruCapacity: Int)
    /// Every `*.so` in the directories, no manifests (for tests and plugin development).
    case allLibraries
}

/// What `plugboard run` and `plugboard serve` start, described once.
public struct HostSettings: Sendable {
    public var source: SourceSpec = .udev
    public var pluginDirectories: [String] = []
    public var pluginConfiguration: [String: [String: String]] = [:]
    public var ringSlots = 4096
    public var batchSize = 64
    /// Let finite sources lap slow plugins instead of waiting for them.
    public var lossy = false
    /// CPUs the source and the plugin workers are pinned to (empty: not pinned).
    public var cpuAffinity: CPUAffinity = .none
    public var discovery: PluginDiscovery = .manifests(registryCache: nil, lruCapacity: 200)
    public var udev = UdevSourceOptions()
    /// nil: events are not published.
    public var redis: RedisPublisher.Configuration?

    public init() {}
}

/// The assembled host: runtime, source, plugins and the Redis publisher, wired the same way
/// for the foreground `run` and the `serve` service. Each step is a method so that callers
/// can time it and report it (metrics, readiness); call them in this order:
/// `startPlugins`, `startPublisher`, `startSource`, then stop with `Runtime.stop` and
/// `stopPublisher`.
public final class Host: Sendable {
    public let settings: HostSettings
    public let runtime: Runtime
    public let source: any EventSource
    /// Counters of the udev source, when it is the source.
    public let udevCounters: UdevSourceCounters?
    let logger: Logger

    /// What starting the plugins found.
    public struct PluginReport: Sendable {
        public var running = 0
        public var loadTimes: [String: Duration] = [:]
        /// Finding the plugins and reading their manifests (or listing the directories).
        public var discovery: Duration = .zero
        /// Manifests served from the registry cache or the LRU, and those parsed from disk.
        public var cacheHits = 0
        public var cacheMisses = 0
    }

    private struct State {
        var publisher: RedisPublisher?
        var report = PluginReport()
    }
    private let state = Mutex(State())

    /// Creates the runtime and the source (a replay file is read and validated here).
    /// - Throws: `PlugboardError` for a bad replay file or a ring that cannot be created.
    public init(settings: HostSettings, logger: Logger) throws {
        self.settings = settings
        self.logger = logger
        var options = RuntimeOptions()
        options.pluginDirectories = settings.pluginDirectories
        options.ringSlots = settings.ringSlots
        options.batchSize = settings.batchSize
        options.pluginConfiguration = settings.pluginConfiguration
        options.flowControlForFiniteSources = !settings.lossy
        options.cpuAffinity = settings.cpuAffinity
        runtime = try Runtime(options: options, logger: logger)
        switch settings.source {
        case .replay(let path):
            source = try ReplaySource(path: path)
            udevCounters = nil
        case .synthetic(let n):
            source = SyntheticSource(count: UInt64(n))
            udevCounters = nil
        case .udev:
            let counters = UdevSourceCounters()
            source = UdevSource(options: settings.udev, counters: counters)
            udevCounters = counters
        }
    }

    /// Finds, opens and initialises the plugins (in dependency order with manifests).
    /// Rejected plugins are recorded in `runtime.failures`; they never stop the others.
    /// - Throws: when a plugin directory cannot be read, or the manifests' dependencies form a cycle.
    @discardableResult
    public func startPlugins() throws -> PluginReport {
        let clock = ContinuousClock()
        var report = PluginReport()
        switch settings.discovery {
        case .allLibraries:
            let t0 = clock.now
            let paths = try PluginLoader.discover(in: settings.pluginDirectories)
            report.discovery = clock.now - t0
            for path in paths {
                let t = clock.now
                do {
                    let plugin = try PluginLoader.open(path)
                    if runtime.addPlugin(plugin) { report.loadTimes[plugin.name] = clock.now - t }
                } catch {
                    runtime.recordFailure(path: path, error)
                }
            }
            report.running = runtime.startWorkers()
        case .manifests(let cache, let lru):
            let r = try runtime.loadAndStartFromManifests(directories: settings.pluginDirectories, registryCache: cache,
                                                          lruCapacity: lru, overrides: settings.pluginConfiguration)
            report.running = r.running
            report.loadTimes = r.loadTimes
            report.discovery = r.discovery
            report.cacheHits = r.registryStats.cacheDecodes + r.registryStats.lruHits
            report.cacheMisses = r.registryStats.manifestReads
        }
        if report.running == 0 { logger.warning("no plugin is running; events will be read and dropped") }
        state.withLock { $0.report = report }
        return report
    }

    /// Starts the Redis publisher as one more ring consumer (before the source, so it sees every
    /// event). Without Redis configured, says that events are not published.
    /// - Throws: `DaemonStartError` for a configuration error (wrong password, database...).
    public func startPublisher() throws {
        guard var config = settings.redis else {
            logger.notice("Redis is not configured (--redis URL, or redis.url in the configuration): events are not published")
            return
        }
        if config.host.isEmpty { config.host = StreamKeys.localHost }
        let publisher = RedisPublisher(configuration: config, logger: logger)
        do {
            try publisher.start(events: runtime.ring.makeConsumer(name: "redis"), pluginOutput: runtime.outputQueue)
        } catch {
            throw DaemonStartError("cannot publish to Redis: \(error)")
        }
        state.withLock { $0.publisher = publisher }
    }

    /// Starts the source on its own thread.
    public func startSource() { runtime.start(source: source) }

    /// The publisher's counters, when publishing.
    public var publisherStats: RedisPublisherStats? { state.withLock { $0.publisher }?.stats }

    /// The publisher's batch round-trip histogram, when publishing.
    public var publishLatency: LatencyHistogram? { state.withLock { $0.publisher }?.publishLatency }

    /// What `startPlugins` found.
    public var pluginReport: PluginReport { state.withLock { $0.report } }

    /// Delivers what the publisher still holds (up to `timeout`), stops it and logs its counters.
    /// - Returns: a description of what is still unpublished, or nil when everything was delivered.
    @discardableResult
    public func stopPublisher(timeout: Duration) -> String? {
        guard let publisher = state.withLock({ $0.publisher }) else { return nil }
        let stats = publisher.stop(timeout: timeout)
        let level: Logger.Level = stats.pending > 0 || stats.dropped > 0 || stats.rejected > 0 ? .warning : .info
        logger.log(level: level, "redis publisher stopped: \(stats)", metadata: ["stream": "\(publisher.streamKey)"])
        return stats.pending > 0 ? "redis (\(stats.pending) unacknowledged)" : nil
    }
}
