import CPlugboard
import CPlugboardSupport
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Where a plugin's host calls go when the plugin runs in a worker process: back to the host
/// (PlugboardCore's `WorkerRunner` implements it over the worker's channel).
public protocol RemoteHost: AnyObject, Sendable {
    func log(level: Int32, message: String)
    func publish(topic: String, payload: UnsafeRawBufferPointer) -> Int32
    func counterAdd(_ name: String, _ delta: UInt64)
    func gaugeSet(_ name: String, _ value: Double)
    func histogramObserve(_ name: String, _ value: Double)
    /// Asks the host for its device table and stores it in `table`.
    func refreshDeviceTable(into table: DeviceTable)
}

/// What one plugin may send through the host API's `log` (docs/abi.md, docs/security.md):
/// a plugin's output is data, never control of the host's log.
public struct PluginLogLimits: Sendable, Equatable {
    /// Longest message kept, in UTF-8 bytes; a longer one is cut and says how much was cut.
    public var messageBytes = 4096
    /// Messages per second each plugin may log (a token bucket holding `burst`); 0: no limit.
    /// Messages past it are dropped and counted (`plugboard_plugin_log_dropped_total`), and the
    /// next message that passes is preceded by one line saying how many were dropped.
    public var perSecond = 100
    public var burst = 200

    public init(messageBytes: Int = 4096, perSecond: Int = 100, burst: Int = 200) {
        self.messageBytes = messageBytes
        self.perSecond = perSecond
        self.burst = burst
    }
}

/// The host side of one loaded plugin: what `pb_host *` points to.
///
/// It owns the plugin's configuration (as C strings), its logger, its metrics and
/// its link to the output queue and the device table. It lives as long as the
/// plugin can call the host (until `shutdown` returns).
public final class PluginContext: Sendable {
    /// The plugin's name (from its table).
    public let name: String
    public let logger: Logger
    /// The configuration, in the order init receives it (`pb_config.entries`).
    public let configuration: PluginConfiguration
    let outputQueue: OutputQueue
    let deviceTable: DeviceTable
    /// Set in a worker process: host calls travel back to the host.
    let remote: (any RemoteHost)?

    // C copies of the configuration, handed to init and config_get; freed in deinit.
    // Written once in init, read-only afterwards.
    nonisolated(unsafe) let cEntries: UnsafeMutablePointer<pb_config_entry>
    nonisolated(unsafe) let cConfig: UnsafeMutablePointer<pb_config>
    let entryCount: Int

    /// Plugin-defined metrics, by kind and name.
    public struct Metrics: Sendable {
        public var counters: [String: UInt64] = [:]
        public var gauges: [String: Double] = [:]
        public var histograms: [String: [Double]] = [:]
    }
    let metrics = Mutex(Metrics())
    let lastMessage = Mutex<String?>(nil)
    let published = Atomic<UInt64>(0)
    let publishRefused = Atomic<UInt64>(0)
    let logLimits: PluginLogLimits
    /// The token bucket of `logLimits`: tokens left, when last filled, drops not yet reported.
    /// `filled` is CLOCK_MONOTONIC nanoseconds: this runs per log message and per line a worker
    /// process's plugin prints, where `ContinuousClock`'s 128-bit `Duration` arithmetic was most
    /// of the cost of a dropped line.
    private struct LogBucket { var tokens: Double; var filled: UInt64; var unreported: UInt64 = 0 }
    private let logBucket: Mutex<LogBucket>
    let logDroppedCount = Atomic<UInt64>(0)

    public init(name: String, configuration: PluginConfiguration, outputQueue: OutputQueue,
                deviceTable: DeviceTable, logger: Logger, remote: (any RemoteHost)? = nil,
                logLimits: PluginLogLimits = PluginLogLimits()) {
        self.name = name
        self.logLimits = logLimits
        logBucket = Mutex(LogBucket(tokens: Double(logLimits.burst), filled: pbs_monotonic_ns()))
        self.remote = remote
        self.configuration = configuration
        self.outputQueue = outputQueue
        self.deviceTable = deviceTable
        var l = logger
        l[metadataKey: "plugin"] = "\(name)"
        self.logger = l
        // In the configuration's order (manifest [config] order, then new override keys):
        // docs/manifest.md promises init sees the entries in file order.
        let ordered = configuration.entries
        entryCount = ordered.count
        cEntries = .allocate(capacity: max(ordered.count, 1))
        for (i, kv) in ordered.enumerated() {
            cEntries[i] = pb_config_entry(key: UnsafePointer(strdup(kv.key)), value: UnsafePointer(strdup(kv.value)))
        }
        cConfig = .allocate(capacity: 1)
        cConfig.initialize(to: pb_config(size: UInt32(MemoryLayout<pb_config>.size), count: UInt32(ordered.count),
                                         entries: UnsafePointer(cEntries)))
    }

    deinit {
        for i in 0..<entryCount {
            free(UnsafeMutablePointer(mutating: cEntries[i].key))
            free(UnsafeMutablePointer(mutating: cEntries[i].value))
        }
        cEntries.deallocate()
        cConfig.deallocate()
    }

    /// The opaque `pb_host *` handed to the plugin.
    var hostPointer: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    static func from(_ host: OpaquePointer?) -> PluginContext? {
        guard let host else { return nil }
        return Unmanaged<PluginContext>.fromOpaque(UnsafeRawPointer(host)).takeUnretainedValue()
    }

    /// A copy of the plugin's metrics.
    public var metricsSnapshot: Metrics { metrics.withLock { $0 } }
    /// Records the plugin published, and refused (queue full or too large).
    public var publishCounts: (accepted: UInt64, refused: UInt64) {
        (published.load(ordering: .relaxed), publishRefused.load(ordering: .relaxed))
    }
    /// The last warning or error the plugin logged, escaped (used in init-failure messages).
    public var lastWarningOrError: String? { lastMessage.withLock { $0 } }
    /// Log messages dropped by the rate limit so far.
    public var logDropped: UInt64 { logDroppedCount.load(ordering: .relaxed) }

    /// Logs for the plugin (also what a worker process's log records become on the host): one
    /// record per call, escaped and cut to `logLimits.messageBytes`, within the rate limit.
    public func log(level: Int32, message: String) {
        let text = Text.logRecord(message, limit: logLimits.messageBytes)
        if level >= PB_LOG_WARNING { lastMessage.withLock { $0 = text } }
        if let remote {
            // The host escapes and limits what arrives; the worker only forwards.
            remote.log(level: level, message: message)
            return
        }
        let l: Logger.Level = switch level {
        case PB_LOG_TRACE: .trace
        case PB_LOG_DEBUG: .debug
        case PB_LOG_INFO: .info
        case PB_LOG_WARNING: .warning
        default: .error
        }
        // Below the logger's level the message costs nothing and is not counted against the limit.
        guard l >= logger.logLevel else { return }
        let (admitted, dropped) = admitLog()
        guard admitted else { return }
        if dropped > 0 {
            logger.warning("plugin log rate limit: \(dropped) messages dropped (the limit is \(logLimits.perSecond) per second, plugins.log_rate)")
        }
        logger.log(level: l, "\(text)")
    }

    /// Takes a token from the log bucket: whether the message may be logged, and how many were
    /// dropped since the last one that was (to report once).
    func admitLog() -> (Bool, UInt64) {
        guard logLimits.perSecond > 0 else { return (true, 0) }
        return logBucket.withLock { b in
            let now = pbs_monotonic_ns()
            let elapsed = Double(now &- b.filled) / 1e9
            b.filled = now
            b.tokens = min(Double(max(logLimits.burst, 1)), b.tokens + elapsed * Double(logLimits.perSecond))
            guard b.tokens >= 1 else {
                b.unreported += 1
                logDroppedCount.add(1, ordering: .relaxed)
                return (false, 0)
            }
            b.tokens -= 1
            defer { b.unreported = 0 }
            return (true, b.unreported)
        }
    }

    /// Queues a record for the publisher (also what a worker process's publish records become).
    public func publish(topic: String, payload: [UInt8]) -> Int32 {
        switch outputQueue.push(OutputRecord(plugin: name, topic: topic, payload: payload)) {
        case .success:
            published.add(1, ordering: .relaxed)
            return PB_OK
        case .failure(.full):
            publishRefused.add(1, ordering: .relaxed)
            return PB_ERR_FULL
        case .failure(.tooLarge):
            publishRefused.add(1, ordering: .relaxed)
            return PB_ERR_INVALID
        }
    }

    public func counterAdd(_ key: String, _ delta: UInt64) {
        if let remote { return remote.counterAdd(key, delta) }
        metrics.withLock { $0.counters[key, default: 0] &+= delta }
    }

    public func gaugeSet(_ key: String, _ value: Double) {
        if let remote { return remote.gaugeSet(key, value) }
        metrics.withLock { $0.gauges[key] = value }
    }

    public func histogramObserve(_ key: String, _ value: Double) {
        if let remote { return remote.histogramObserve(key, value) }
        metrics.withLock { m in
            // Keep a bounded reservoir of recent observations per histogram.
            var values = m.histograms[key, default: []]
            if values.count >= 4096 { values.removeFirst(values.count - 4095) }
            values.append(value)
            m.histograms[key] = values
        }
    }

    /// The device table as the plugin sees it (fetched from the host first in a worker process).
    func deviceSnapshot() -> DeviceSnapshot {
        remote?.refreshDeviceTable(into: deviceTable)
        return deviceTable.snapshot()
    }

    func configValue(_ key: UnsafePointer<CChar>) -> UnsafePointer<CChar>? {
        for i in 0..<entryCount where strcmp(cEntries[i].key, key) == 0 { return cEntries[i].value }
        return nil
    }
}
