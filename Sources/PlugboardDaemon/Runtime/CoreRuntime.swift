import CPlugboard
import Foundation
import Logging
import PlugboardCore
import PlugboardManifest
import PlugboardRedis
import PlugboardUdev
import Synchronization

/// `RuntimeControl` over PlugboardCore's `Runtime`: the real ring, loader, workers and sources.
///
/// What the core does not expose yet is said where it matters (per-action counters, separate
/// drain and plugin-shutdown steps, per-worker init times); see docs/operations.md, "Gaps".
public final class CoreRuntime: RuntimeControl {
    /// The assembled host (source, plugins, Redis publisher), shared with `plugboard run`.
    public let host: Host
    public var runtime: Runtime { host.runtime }
    let logger: Logger
    private let clock = ContinuousClock()

    private struct State {
        var initialised = false
        var sourceStarted = false
        var stopRequested = false
    }
    private let state = Mutex(State())

    /// Creates the ring, the source and the runtime from the daemon's configuration.
    /// - Parameters:
    ///   - pluginConfiguration: configuration per plugin name (`--plugin-config NAME.KEY=VALUE`),
    ///     over each manifest's `[config]`.
    ///   - lossy: let finite sources lap slow plugins instead of waiting (as a live source does).
    ///   - environment: where `STATE_DIRECTORY` (systemd) is looked up for the registry cache.
    public init(config: DaemonConfig, pluginConfiguration: [String: [String: String]] = [:], lossy: Bool = false,
                environment: [String: String] = ProcessInfo.processInfo.environment, logger: Logger) throws {
        host = try Host(settings: try Self.settings(config: config, pluginConfiguration: pluginConfiguration,
                                                    lossy: lossy, environment: environment), logger: logger)
        self.logger = logger
    }

    /// The host settings a configuration describes.
    public static func settings(config: DaemonConfig, pluginConfiguration: [String: [String: String]], lossy: Bool,
                                environment: [String: String]) throws -> HostSettings {
        var s = HostSettings()
        s.source = config.source
        s.pluginDirectories = config.plugins.dirs
        s.pluginConfiguration = pluginConfiguration
        s.ringSlots = config.performance.ringSlots
        s.batchSize = config.performance.batchSize
        s.lossy = lossy
        s.cpuAffinity = config.performance.cpuAffinity
        s.discovery = config.plugins.manifests
            ? .manifests(registryCache: config.plugins.registryCachePath(environment: environment) ?? ManifestRegistry.defaultCachePath(),
                         lruCapacity: config.plugins.cacheSize)
            : .allLibraries
        s.udev.mode = UdevMode(rawValue: config.udevMode) ?? .auto
        s.udev.receiveBufferBytes = config.udevReceiveBuffer
        if !config.redis.url.isEmpty {
            let url: RedisURL
            do { url = try RedisURL(parsing: config.redis.url) } catch {
                throw DaemonStartError("redis.url: \(error)")
            }
            var r = RedisPublisher.Configuration(url: url, host: config.redis.host)
            r.mode = RedisPublisher.Mode(rawValue: config.redis.mode) ?? .stream
            r.maxLength = config.redis.maxlen
            r.maxBatch = config.redis.batch
            s.redis = r
        }
        return s
    }

    public func start() throws {
        try host.startPlugins()
        state.withLock { $0.initialised = true }
        try host.startPublisher()
        host.startSource()
        state.withLock { $0.sourceStarted = true }
    }

    public func stopSource() {
        state.withLock { $0.stopRequested = true }
        runtime.sourceContext?.requestStop()
    }

    /// Drains and shuts the plugins down in one step: each core worker calls its plugin's shutdown
    /// as soon as it has read the closed ring to the end, so the two cannot be separated from here.
    public func drain(until deadline: ContinuousClock.Instant) -> [String] {
        runtime.stop(deadline: max(.zero, deadline - clock.now)).stuck
    }

    public func shutdownPlugins(until deadline: ContinuousClock.Instant) -> [String] {
        // Already done by the workers during `drain`; report any that did not stop.
        runtime.workers.filter { $0.state != .stopped && $0.state != .failed }.map { "plugin \($0.plugin.name)" }
    }

    public func flushOutputs(until deadline: ContinuousClock.Instant) -> [String] {
        host.stopPublisher(timeout: max(.milliseconds(10), deadline - clock.now)).map { [$0] } ?? []
    }

    public func status() -> RuntimeStatus {
        let s = state.withLock { $0 }
        let report = host.pluginReport
        let workers = runtime.workers
        var plugins: [PluginStatus] = []
        var latency = HistogramSnapshot.empty
        var resyncs: UInt64 = 0
        for w in workers {
            let st = w.stats
            let lat = HistogramSnapshot(w.latency)
            latency = latency.merged(with: lat)
            resyncs += st.resyncs
            let state: PluginStatus.State = switch st.state {
            case .starting: .loading
            case .running: s.stopRequested ? .draining : .running
            case .failed: .failed
            case .stopped: .stopped
            }
            var p = PluginStatus(name: st.name, version: st.version, state: state, events: st.events, errors: st.errors,
                                 lag: st.state == .stopped ? 0 : st.lag, laps: st.laps, lastError: st.lastError,
                                 callbackDuration: HistogramSnapshot(w.callbackDuration), loadTime: report.loadTimes[st.name])
            p.overruns = st.overruns
            plugins.append(p)
        }
        for f in runtime.failures {
            let name = URL(fileURLWithPath: f.path).deletingPathExtension().lastPathComponent
            plugins.append(PluginStatus(name: name, version: "", state: .failed, errors: 1, lastError: f.description))
        }
        let ring = runtime.ring
        let lags = ring.consumerLags.map(\.lag)
        let fill = min(UInt64(ring.window), lags.max() ?? 0)
        let devices = runtime.deviceTable.records().map { r in
            r.withEvent { e in
                DeviceInfo(syspath: e.string(.syspath), devnode: e.string(.devnode), vendorID: e.pointee.vendor_id,
                           productID: e.pointee.product_id, serial: e.string(.serial), manufacturer: e.string(.manufacturer),
                           product: e.string(.product), driver: e.string(.driver), busnum: e.pointee.busnum, devnum: e.pointee.devnum)
            }
        }
        // A finite source closes the ring when it ends: from then on nothing new arrives.
        let sourceLive = s.sourceStarted && !s.stopRequested && runtime.sourceError == nil && !ring.isClosed
        var status = RuntimeStatus(
            pluginsInitialised: s.initialised, sourceLive: sourceLive, plugins: plugins, devices: devices,
            ring: RingStatus(slots: ring.capacity, published: ring.published, fill: fill),
            eventsByAction: runtime.eventsByAction, resyncs: resyncs, eventLatency: latency,
            redis: host.publisherStats.map {
                RedisStatus(connected: $0.connected, published: $0.published, spilled: $0.spilled, dropped: $0.dropped,
                            reissued: $0.reissued, redirects: $0.redirects,
                            publishLatency: host.publishLatency.map(HistogramSnapshot.init) ?? .empty)
            },
            startup: StartupTimings(manifestParse: [report.discovery], deviceEnumeration: nil,
                                    workerStart: workers.compactMap(\.startDuration)),
            manifestCache: CacheCounters(hits: UInt64(report.cacheHits), misses: UInt64(report.cacheMisses)))
        for w in workers { status.pluginMetrics[w.plugin.name] = w.context.metricsSnapshot }
        return status
    }
}

/// The runtime could not start; the message says what to change.
public struct DaemonStartError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ message: String) { description = message }
}
