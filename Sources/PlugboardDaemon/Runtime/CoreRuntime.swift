import CPlugboard
import Foundation
import Logging
import PlugboardCore
import Synchronization

/// `RuntimeControl` over PlugboardCore's `Runtime`: the real ring, loader, workers and sources.
///
/// What the core does not expose yet is said where it matters (per-action counters, separate
/// drain and plugin-shutdown steps, per-worker init times); see docs/operations.md, "Gaps".
public final class CoreRuntime: RuntimeControl {
    public let runtime: Runtime
    let source: SourceSpec
    let logger: Logger
    private let clock = ContinuousClock()

    private struct State {
        var loadTimes: [String: Duration] = [:]
        var workersStart: Duration?
        var initialised = false
        var sourceStarted = false
        var stopRequested = false
    }
    private let state = Mutex(State())

    /// Creates the ring and the runtime from the daemon's configuration.
    /// - Parameters:
    ///   - pluginConfiguration: configuration per plugin name (`--plugin-config NAME.KEY=VALUE`).
    ///   - lossy: let finite sources lap slow plugins instead of waiting (as a live source does).
    public init(config: DaemonConfig, pluginConfiguration: [String: [String: String]] = [:], lossy: Bool = false,
                logger: Logger) throws {
        var options = RuntimeOptions()
        options.pluginDirectories = config.plugins.dirs
        options.ringSlots = config.performance.ringSlots
        options.batchSize = config.performance.batchSize
        options.pluginConfiguration = pluginConfiguration
        options.flowControlForFiniteSources = !lossy
        runtime = try Runtime(options: options, logger: logger)
        source = config.source
        self.logger = logger
    }

    public func start() throws {
        let eventSource: any EventSource
        switch source {
        case .replay(let path): eventSource = try ReplaySource(path: path)
        case .synthetic(let n): eventSource = SyntheticSource(count: UInt64(n))
        case .udev:
            throw DaemonStartError(
                "source = \"udev\": the udev source is not in this build yet; set source to \"replay:FILE\" or \"synthetic:N\"")
        }
        // Load one by one (what Runtime.loadPlugins does) to time each dlopen + negotiation.
        for path in try PluginLoader.discover(in: runtime.options.pluginDirectories) {
            let t0 = clock.now
            do {
                let plugin = try PluginLoader.open(path)
                let elapsed = clock.now - t0
                if runtime.addPlugin(plugin) { state.withLock { $0.loadTimes[plugin.name] = elapsed } }
            } catch {
                runtime.recordFailure(path: path, error)
            }
        }
        let t0 = clock.now
        let running = runtime.startWorkers()
        let workersStart = clock.now - t0
        state.withLock {
            $0.workersStart = workersStart
            $0.initialised = true
        }
        if running == 0 { logger.warning("no plugin is running; events will be read and dropped") }
        runtime.start(source: eventSource)
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
        // No Redis publisher in the core yet: the plugins' output queue is left for the caller.
        []
    }

    public func status() -> RuntimeStatus {
        let s = state.withLock { $0 }
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
            plugins.append(PluginStatus(name: st.name, version: st.version, state: state, events: st.events, errors: st.errors,
                                        lag: st.state == .stopped ? 0 : st.lag, laps: st.laps, lastError: st.lastError,
                                        callbackDuration: HistogramSnapshot(w.callbackDuration), loadTime: s.loadTimes[st.name]))
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
        return RuntimeStatus(
            pluginsInitialised: s.initialised, sourceLive: sourceLive, plugins: plugins, devices: devices,
            ring: RingStatus(slots: ring.capacity, published: ring.published, fill: fill),
            eventsByAction: nil, resyncs: resyncs, eventLatency: latency, redis: nil,
            startup: StartupTimings(manifestParse: [], deviceEnumeration: nil, workerStart: s.workersStart.map { [$0] } ?? []),
            manifestCache: CacheCounters())
    }
}

/// The runtime could not start; the message says what to change.
public struct DaemonStartError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ message: String) { description = message }
}
