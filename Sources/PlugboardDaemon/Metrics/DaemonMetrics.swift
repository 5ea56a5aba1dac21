import CoreMetrics
import Foundation
import PlugboardCore
import PlugboardHost
import PlugboardSystem
import Prometheus

/// Every metric the daemon exports, and how /metrics is produced.
///
/// Two kinds, so that the hot path never takes a lock per event:
/// - **Daemon-side** metrics (HTTP requests, watchdog pings, readiness, memory, the last shutdown)
///   are swift-prometheus collectors in `registry`, driven through swift-metrics' API. They change
///   rarely, off the event path.
/// - **Core-side** metrics (event latency, callback durations, per-plugin counters, lag, ring fill...)
///   are counted by the core's own threads in single-writer atomic counters and `LatencyHistogram`s,
///   and only *read* at scrape time from `RuntimeControl.status()`; they are written out here in the
///   Prometheus text format. No per-event swift-metrics call exists.
public final class DaemonMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    let residentMemory: Prometheus.Gauge
    let ready: Prometheus.Gauge
    let watchdogPings: CoreMetrics.Counter
    let lastShutdownDuration: Prometheus.Gauge
    let lastShutdownCompleted: Prometheus.Gauge
    let startTime: Prometheus.Gauge
    let buildInfo: Prometheus.Gauge

    /// Prometheus `le` bounds (seconds) for the exported latency histograms. The 0.08 bound is the
    /// operators' event-latency threshold, so the alert can be exact.
    public static let latencyBuckets: [Double] = [
        0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.08, 0.1,
        0.25, 0.5, 1, 2.5, 5, 10,
    ]
    public static let exportedQuantiles: [Double] = [0.5, 0.95, 0.99]

    public init(version: String) {
        registry = PrometheusCollectorRegistry()
        factory = PrometheusMetricsFactory(registry: registry)
        func d(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "plugboard", metricName: name, unitName: unit, helpText: help)
        }
        residentMemory = registry.makeGauge(descriptor: d("resident_memory", "bytes", "Resident set size of the daemon, from /proc/self/statm."))
        ready = registry.makeGauge(descriptor: d("ready", "", "1 when plugins are initialised and the source is live (what /readyz reports)."))
        watchdogPings = CoreMetrics.Counter(
            label: "plugboard_watchdog_pings_total", dimensions: [],
            handler: registry.makeCounter(descriptor: d("watchdog_pings", "total", "WATCHDOG=1 notifications sent to systemd.")),
            factory: factory)
        lastShutdownDuration = registry.makeGauge(descriptor: d(
            "last_shutdown_duration", "seconds", "Duration of the previous run's graceful shutdown (from the state file; 0 when unknown)."))
        lastShutdownCompleted = registry.makeGauge(descriptor: d(
            "last_shutdown_completed", "", "1 when the previous run's shutdown finished within the deadline, 0 when it was stuck or unknown."))
        startTime = registry.makeGauge(descriptor: d("start_time", "seconds", "Unix time the daemon started."))
        buildInfo = registry.makeGauge(descriptor: d("build_info", "", "Always 1; the version label says which build runs."),
                                       labels: [("version", version)])
        buildInfo.set(to: 1)
        startTime.set(to: Date().timeIntervalSince1970)
    }

    /// A swift-metrics counter of HTTP requests to `path`, in this registry.
    func httpRequests(path: String) -> CoreMetrics.Counter {
        CoreMetrics.Counter(
            label: "plugboard_http_requests_total", dimensions: [("path", path)],
            handler: registry.makeCounter(
                descriptor: MetricNameDescriptor(namespace: "plugboard", metricName: "http_requests", unitName: "total",
                                                 helpText: "HTTP requests served, by path."),
                labels: [("path", path)]),
            factory: factory)
    }

    /// Records what the previous run wrote to its state file.
    func recordLastShutdown(_ record: ShutdownRecord?) {
        lastShutdownDuration.set(to: record?.seconds ?? 0)
        lastShutdownCompleted.set(to: record?.completed == true ? 1 : 0)
    }

    /// The whole /metrics page: daemon-side collectors, then the core's counters read now.
    public func scrape(_ status: RuntimeStatus) -> String {
        residentMemory.set(to: Double(Self.residentBytes() ?? 0))
        ready.set(to: status.pluginsInitialised && status.sourceLive ? 1 : 0)
        var out = registry.emitToString()
        var w = PrometheusTextWriter()
        Self.writeCore(status, into: &w)
        out += w.text
        return out
    }

    /// Resident set size in bytes, from the second field of /proc/self/statm (pages).
    public static func residentBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    // MARK: Core-side metrics, read at scrape time

    /// The names, types and label sets written by `writeCore` (the docs' table and the tests use it).
    public static let coreFamilies: [(name: String, type: String, labels: [String], help: String)] = [
        ("plugboard_event_latency_seconds", "histogram", [], "Receipt (pb_event.timestamp_ns) to the start of the plugin callback, every plugin."),
        ("plugboard_event_latency_quantiles_seconds", "summary", ["quantile"], "p50/p95/p99 of event latency since start, from fine log-linear buckets (within 6.25%)."),
        ("plugboard_plugin_callback_duration_seconds", "histogram", ["plugin"], "Duration of one events callback, per plugin."),
        ("plugboard_plugin_callback_duration_quantiles_seconds", "summary", ["plugin", "quantile"], "p50/p95/p99 of callback duration since start, per plugin."),
        ("plugboard_plugin_load_duration_seconds", "histogram", [], "dlopen, negotiation and init, over all plugins."),
        ("plugboard_plugin_load_seconds", "gauge", ["plugin"], "dlopen, negotiation and init of each plugin."),
        ("plugboard_manifest_parse_duration_seconds", "histogram", [], "Parsing or mapping one plugin manifest."),
        ("plugboard_device_enumeration_seconds", "gauge", [], "The initial device enumeration (0 until done)."),
        ("plugboard_worker_start_duration_seconds", "histogram", [], "Worker start (thread creation, or process spawn and plugin load) until its plugin's init returned, one sample per plugin."),
        ("plugboard_redis_publish_duration_seconds", "histogram", [], "Redis XADD round trip, per pipelined batch."),
        ("plugboard_plugins_active", "gauge", [], "Plugins in state running."),
        ("plugboard_plugin_info", "gauge", ["plugin", "version", "state"], "Always 1 per plugin; labels carry version and state."),
        ("plugboard_manifest_cache_hits_total", "counter", [], "Manifest registry cache hits."),
        ("plugboard_manifest_cache_misses_total", "counter", [], "Manifest registry cache misses (parsed again)."),
        ("plugboard_manifest_cache_hit_ratio", "gauge", [], "hits / (hits + misses); 0 before any lookup."),
        ("plugboard_ring_slots", "gauge", [], "Slots in the event ring (a power of two)."),
        ("plugboard_ring_fill_ratio", "gauge", [], "Share of ring slots the slowest consumer has not read yet (1 means the next event laps it)."),
        ("plugboard_plugin_lag_events", "gauge", ["plugin"], "Events published but not yet processed, per plugin (consumer)."),
        ("plugboard_plugin_laps_total", "counter", ["plugin"], "Times a plugin fell a whole ring behind."),
        ("plugboard_plugin_deadline_overruns_total", "counter", ["plugin"], "Callbacks that ran past the plugin's [worker] deadline_ms."),
        ("plugboard_plugin_crashes_total", "counter", ["plugin", "reason"], "Worker process crashes and kills, by reason (SIGSEGV, memory_limit, exit_3, deadline, init_deadline, stalled, protocol)."),
        ("plugboard_plugin_restarts_total", "counter", ["plugin"], "Worker processes started again after a crash."),
        ("plugboard_plugin_recycles_total", "counter", ["plugin"], "Worker processes replaced by a fresh one on purpose (plugins.recycle_after_events / _seconds)."),
        ("plugboard_plugin_quarantined", "gauge", ["plugin"], "1 when the plugin crashed more than plugins.crash_burst times within plugins.crash_interval and gets no events."),
        ("plugboard_plugin_poison_events_total", "counter", ["plugin"], "Events withheld from a plugin because it crashed on each twice."),
        ("plugboard_plugin_process", "gauge", ["plugin", "isolation"], "The plugin's worker process id (0 in thread mode or while none runs)."),
        ("plugboard_plugin_publish_refused_total", "counter", ["plugin"], "Records a plugin's publish calls were refused (output queue full, or larger than plugins.max_record_bytes)."),
        ("plugboard_plugin_log_dropped_total", "counter", ["plugin"], "Log messages dropped by the per-plugin rate limit (plugins.log_rate)."),
        ("plugboard_plugin_settle_coalesced_total", "counter", ["plugin"], "Events a plugin's settle window did not deliver as themselves: replaced by a later event of the device, dropped in a flap, or superseded by a resync."),
        ("plugboard_plugin_settle_flaps_total", "counter", ["plugin"], "Settle windows in which a device was added and removed again: delivered to the plugin as nothing."),
        ("plugboard_plugin_settle_overflow_total", "counter", ["plugin"], "Events delivered at once, unsettled, because the plugin's settle window held performance.settle_devices devices."),
        ("plugboard_plugin_batch_size", "histogram", ["plugin"], "Events per events callback: 1 while events come one at a time, up to the ceiling under load (_count: callbacks, _sum: events)."),
        ("plugboard_plugin_batch_ceiling", "gauge", ["plugin"], "Most events per callback: the smaller of performance.batch_size and the manifest's [worker] batch."),
        ("plugboard_plugin_batch_size_max", "gauge", ["plugin"], "The largest batch handed to the plugin so far (never above its ceiling)."),
        ("plugboard_device_table_capacity", "gauge", [], "Most devices the device table holds (performance.max_devices)."),
        ("plugboard_device_table_refused_total", "counter", [], "Device events of a new device left out of the full device table (the events still reach plugins and Redis)."),
        ("plugboard_output_queue_records", "gauge", [], "Plugin output records waiting for the Redis publisher."),
        ("plugboard_output_queue_bytes", "gauge", [], "Payload bytes of the plugin output records waiting."),
        ("plugboard_output_queue_capacity_records", "gauge", [], "Most records the plugin output queue holds (plugins.output_queue_records)."),
        ("plugboard_output_queue_capacity_bytes", "gauge", [], "Most payload bytes the plugin output queue holds."),
        ("plugboard_output_queue_full_total", "counter", [], "Publish calls refused with PB_ERR_FULL because the output queue was full, over all plugins."),
        ("plugboard_manifest_cache_entries", "gauge", [], "Parsed manifests in the in-memory LRU."),
        ("plugboard_manifest_cache_capacity", "gauge", [], "Most parsed manifests the LRU holds (plugins.cache_size)."),
        ("plugboard_manifest_cache_evictions_total", "counter", [], "Manifests dropped from the LRU to stay within plugins.cache_size."),
        ("plugboard_redis_spill_bytes", "gauge", [], "Bytes of the Redis publisher's event store in use: the unacknowledged window and, while Redis is down, the spill."),
        ("plugboard_redis_spill_capacity_bytes", "gauge", [], "Size of that store: past it, events are dropped (plugboard_redis_dropped_total)."),
        ("plugboard_resyncs_total", "counter", [], "Resyncs sent to plugins (after a lap or a netlink overflow)."),
        ("plugboard_events_published_total", "counter", [], "Events published into the ring (the producer's sequence)."),
        ("plugboard_events_total", "counter", ["action"], "Events published into the ring, by action."),
        ("plugboard_plugin_events_total", "counter", ["plugin"], "Events delivered to each plugin."),
        ("plugboard_plugin_errors_total", "counter", ["plugin"], "Plugin callbacks that returned an error, and refused loads."),
        ("plugboard_source_live", "gauge", [], "1 while the event source is delivering."),
        ("plugboard_devices_present", "gauge", [], "Devices in the device table."),
        ("plugboard_redis_up", "gauge", [], "1 while connected to Redis; absent when Redis is not configured."),
        ("plugboard_redis_published_total", "counter", [], "Events acknowledged by Redis."),
        ("plugboard_redis_spilled_total", "counter", [], "Events held in the spill buffer while Redis was down."),
        ("plugboard_redis_dropped_total", "counter", [], "Events dropped because the spill buffer was full."),
        ("plugboard_redis_lapped_total", "counter", [], "Events the ring overwrote before the Redis publisher read them (a live source, a publisher a whole ring behind), including those a crashed daemon's ring no longer held at recovery."),
        ("plugboard_redis_reissued_total", "counter", [], "Entries re-sent under a new ID epoch: Redis refused them with a retryable error after storing a later one."),
        ("plugboard_redis_redirects_total", "counter", [], "Redis Cluster MOVED redirects followed."),
        ("plugboard_plugin_metric_total", "counter", ["plugin", "name"], "A plugin's own counter (host API counter_add)."),
        ("plugboard_plugin_metric", "gauge", ["plugin", "name"], "A plugin's own gauge (host API gauge_set)."),
        ("plugboard_plugin_observation", "summary", ["plugin", "name", "quantile"], "A plugin's own histogram (host API histogram_observe): p50/p95/p99 over its last 4096 observations."),
    ]

    static func writeCore(_ s: RuntimeStatus, into w: inout PrometheusTextWriter) {
        let help = Dictionary(uniqueKeysWithValues: coreFamilies.map { ($0.name, ($0.type, $0.help)) })
        func header(_ name: String) {
            let (type, text) = help[name]!
            w.header(name, type: type, help: text)
        }
        func histogram(_ name: String, _ h: HistogramSnapshot, _ labels: [(String, String)] = []) {
            let cumulative = h.cumulative(upperBounds: latencyBuckets)
            for (bound, c) in zip(latencyBuckets, cumulative) {
                w.sample(name + "_bucket", labels + [("le", PrometheusTextWriter.format(bound))], Double(c))
            }
            w.sample(name + "_bucket", labels + [("le", "+Inf")], Double(h.count))
            w.sample(name + "_sum", labels, Double(h.sumNanoseconds) / 1e9)
            w.sample(name + "_count", labels, Double(h.count))
        }
        func quantiles(_ name: String, _ h: HistogramSnapshot, _ labels: [(String, String)] = []) {
            for q in exportedQuantiles {
                w.sample(name, labels + [("quantile", PrometheusTextWriter.format(q))], h.quantile(q).map { $0 / 1e9 } ?? .nan)
            }
            w.sample(name + "_sum", labels, Double(h.sumNanoseconds) / 1e9)
            w.sample(name + "_count", labels, Double(h.count))
        }
        func seconds(_ d: Duration) -> Double { d.inSeconds }
        func nanos(_ d: Duration) -> UInt64 { UInt64(max(0, d.nanoseconds)) }

        header("plugboard_event_latency_seconds")
        histogram("plugboard_event_latency_seconds", s.eventLatency)
        header("plugboard_event_latency_quantiles_seconds")
        quantiles("plugboard_event_latency_quantiles_seconds", s.eventLatency)

        header("plugboard_plugin_callback_duration_seconds")
        for p in s.plugins { histogram("plugboard_plugin_callback_duration_seconds", p.callbackDuration, [("plugin", p.name)]) }
        header("plugboard_plugin_callback_duration_quantiles_seconds")
        for p in s.plugins { quantiles("plugboard_plugin_callback_duration_quantiles_seconds", p.callbackDuration, [("plugin", p.name)]) }

        header("plugboard_plugin_load_duration_seconds")
        histogram("plugboard_plugin_load_duration_seconds", HistogramSnapshot(values: s.plugins.compactMap(\.loadTime).map(nanos)))
        header("plugboard_plugin_load_seconds")
        for p in s.plugins { if let t = p.loadTime { w.sample("plugboard_plugin_load_seconds", [("plugin", p.name)], seconds(t)) } }
        header("plugboard_manifest_parse_duration_seconds")
        histogram("plugboard_manifest_parse_duration_seconds", HistogramSnapshot(values: s.startup.manifestParse.map(nanos)))
        header("plugboard_device_enumeration_seconds")
        w.sample("plugboard_device_enumeration_seconds", [], s.startup.deviceEnumeration.map(seconds) ?? 0)
        header("plugboard_worker_start_duration_seconds")
        histogram("plugboard_worker_start_duration_seconds", HistogramSnapshot(values: s.startup.workerStart.map(nanos)))
        header("plugboard_redis_publish_duration_seconds")
        histogram("plugboard_redis_publish_duration_seconds", s.redis?.publishLatency ?? .empty)

        header("plugboard_plugins_active")
        w.sample("plugboard_plugins_active", [], Double(s.plugins.filter { $0.state == .running }.count))
        header("plugboard_plugin_info")
        for p in s.plugins {
            w.sample("plugboard_plugin_info", [("plugin", p.name), ("version", p.version), ("state", p.state.rawValue)], 1)
        }
        header("plugboard_manifest_cache_hits_total")
        w.sample("plugboard_manifest_cache_hits_total", [], Double(s.manifestCache.hits))
        header("plugboard_manifest_cache_misses_total")
        w.sample("plugboard_manifest_cache_misses_total", [], Double(s.manifestCache.misses))
        header("plugboard_manifest_cache_hit_ratio")
        let lookups = s.manifestCache.hits + s.manifestCache.misses
        w.sample("plugboard_manifest_cache_hit_ratio", [], lookups == 0 ? 0 : Double(s.manifestCache.hits) / Double(lookups))

        header("plugboard_ring_slots")
        w.sample("plugboard_ring_slots", [], Double(s.ring.slots))
        header("plugboard_ring_fill_ratio")
        // Against the ring's window (slots - 1): at 1 the next event laps the slowest consumer.
        w.sample("plugboard_ring_fill_ratio", [], s.ring.slots < 2 ? 0 : Double(s.ring.fill) / Double(s.ring.slots - 1))
        header("plugboard_plugin_lag_events")
        for p in s.plugins { w.sample("plugboard_plugin_lag_events", [("plugin", p.name)], Double(p.lag)) }
        header("plugboard_plugin_laps_total")
        for p in s.plugins { w.sample("plugboard_plugin_laps_total", [("plugin", p.name)], Double(p.laps)) }
        header("plugboard_plugin_deadline_overruns_total")
        for p in s.plugins { w.sample("plugboard_plugin_deadline_overruns_total", [("plugin", p.name)], Double(p.overruns)) }
        header("plugboard_plugin_crashes_total")
        for p in s.plugins {
            for (reason, n) in p.crashes.sorted(by: { $0.key < $1.key }) {
                w.sample("plugboard_plugin_crashes_total", [("plugin", p.name), ("reason", reason)], Double(n))
            }
        }
        header("plugboard_plugin_restarts_total")
        for p in s.plugins { w.sample("plugboard_plugin_restarts_total", [("plugin", p.name)], Double(p.restarts)) }
        header("plugboard_plugin_recycles_total")
        for p in s.plugins { w.sample("plugboard_plugin_recycles_total", [("plugin", p.name)], Double(p.recycles)) }
        header("plugboard_plugin_quarantined")
        for p in s.plugins { w.sample("plugboard_plugin_quarantined", [("plugin", p.name)], p.state == .quarantined ? 1 : 0) }
        header("plugboard_plugin_poison_events_total")
        for p in s.plugins { w.sample("plugboard_plugin_poison_events_total", [("plugin", p.name)], Double(p.skipped)) }
        header("plugboard_plugin_process")
        for p in s.plugins { w.sample("plugboard_plugin_process", [("plugin", p.name), ("isolation", p.isolation)], Double(p.pid)) }
        header("plugboard_plugin_publish_refused_total")
        for p in s.plugins { w.sample("plugboard_plugin_publish_refused_total", [("plugin", p.name)], Double(p.publishRefused)) }
        header("plugboard_plugin_log_dropped_total")
        for p in s.plugins { w.sample("plugboard_plugin_log_dropped_total", [("plugin", p.name)], Double(p.logDropped)) }
        // Only plugins with a settle window have these series.
        let settled = s.plugins.filter { $0.settleMilliseconds > 0 }
        header("plugboard_plugin_settle_coalesced_total")
        for p in settled { w.sample("plugboard_plugin_settle_coalesced_total", [("plugin", p.name)], Double(p.settleCoalesced)) }
        header("plugboard_plugin_settle_flaps_total")
        for p in settled { w.sample("plugboard_plugin_settle_flaps_total", [("plugin", p.name)], Double(p.settleFlaps)) }
        header("plugboard_plugin_settle_overflow_total")
        for p in settled { w.sample("plugboard_plugin_settle_overflow_total", [("plugin", p.name)], Double(p.settleOverflow)) }
        header("plugboard_plugin_batch_size")
        for p in s.plugins where p.batchCeiling > 0 {
            let labels = [("plugin", p.name)]
            var cumulative: UInt64 = 0
            for (bound, n) in zip(BatchSizes.upperBounds, p.batchSizes.buckets) {
                cumulative &+= n
                w.sample("plugboard_plugin_batch_size_bucket", labels + [("le", "\(bound)")], Double(cumulative))
            }
            w.sample("plugboard_plugin_batch_size_bucket", labels + [("le", "+Inf")], Double(p.batchSizes.batches))
            w.sample("plugboard_plugin_batch_size_sum", labels, Double(p.batchSizes.events))
            w.sample("plugboard_plugin_batch_size_count", labels, Double(p.batchSizes.batches))
        }
        header("plugboard_plugin_batch_ceiling")
        for p in s.plugins where p.batchCeiling > 0 { w.sample("plugboard_plugin_batch_ceiling", [("plugin", p.name)], Double(p.batchCeiling)) }
        header("plugboard_plugin_batch_size_max")
        for p in s.plugins where p.batchCeiling > 0 { w.sample("plugboard_plugin_batch_size_max", [("plugin", p.name)], Double(p.batchSizes.largest)) }
        header("plugboard_device_table_capacity")
        w.sample("plugboard_device_table_capacity", [], Double(s.bounds.maxDevices))
        header("plugboard_device_table_refused_total")
        w.sample("plugboard_device_table_refused_total", [], Double(s.bounds.devicesRefused))
        header("plugboard_output_queue_records")
        w.sample("plugboard_output_queue_records", [], Double(s.bounds.outputRecords))
        header("plugboard_output_queue_bytes")
        w.sample("plugboard_output_queue_bytes", [], Double(s.bounds.outputBytes))
        header("plugboard_output_queue_capacity_records")
        w.sample("plugboard_output_queue_capacity_records", [], Double(s.bounds.outputMaxRecords))
        header("plugboard_output_queue_capacity_bytes")
        w.sample("plugboard_output_queue_capacity_bytes", [], Double(s.bounds.outputMaxBytes))
        header("plugboard_output_queue_full_total")
        w.sample("plugboard_output_queue_full_total", [], Double(s.bounds.outputFull))
        header("plugboard_manifest_cache_entries")
        w.sample("plugboard_manifest_cache_entries", [], Double(s.manifestCache.entries))
        header("plugboard_manifest_cache_capacity")
        w.sample("plugboard_manifest_cache_capacity", [], Double(s.manifestCache.capacity))
        header("plugboard_manifest_cache_evictions_total")
        w.sample("plugboard_manifest_cache_evictions_total", [], Double(s.manifestCache.evictions))
        header("plugboard_redis_spill_bytes")
        if let r = s.redis { w.sample("plugboard_redis_spill_bytes", [], Double(r.heldBytes)) }
        header("plugboard_redis_spill_capacity_bytes")
        if let r = s.redis { w.sample("plugboard_redis_spill_capacity_bytes", [], Double(r.capacityBytes)) }
        header("plugboard_resyncs_total")
        w.sample("plugboard_resyncs_total", [], Double(s.resyncs))
        header("plugboard_events_published_total")
        w.sample("plugboard_events_published_total", [], Double(s.ring.published))
        header("plugboard_events_total")
        if let byAction = s.eventsByAction {
            // Every action is always present, so rate() works from the first scrape.
            for action in ["add", "remove", "change", "bind", "unbind", "resync", "unknown"] {
                w.sample("plugboard_events_total", [("action", action)], Double(byAction[action] ?? 0))
            }
        }
        header("plugboard_plugin_events_total")
        for p in s.plugins { w.sample("plugboard_plugin_events_total", [("plugin", p.name)], Double(p.events)) }
        header("plugboard_plugin_errors_total")
        for p in s.plugins { w.sample("plugboard_plugin_errors_total", [("plugin", p.name)], Double(p.errors)) }
        header("plugboard_source_live")
        w.sample("plugboard_source_live", [], s.sourceLive ? 1 : 0)
        header("plugboard_devices_present")
        w.sample("plugboard_devices_present", [], Double(s.devices.count))

        // Declared always; samples only when Redis is configured (so "Redis down" cannot fire without it).
        header("plugboard_redis_up")
        if let r = s.redis { w.sample("plugboard_redis_up", [], r.connected ? 1 : 0) }
        header("plugboard_redis_published_total")
        if let r = s.redis { w.sample("plugboard_redis_published_total", [], Double(r.published)) }
        header("plugboard_redis_spilled_total")
        if let r = s.redis { w.sample("plugboard_redis_spilled_total", [], Double(r.spilled)) }
        header("plugboard_redis_dropped_total")
        if let r = s.redis { w.sample("plugboard_redis_dropped_total", [], Double(r.dropped)) }
        header("plugboard_redis_reissued_total")
        if let r = s.redis { w.sample("plugboard_redis_reissued_total", [], Double(r.reissued)) }
        header("plugboard_redis_lapped_total")
        if let r = s.redis { w.sample("plugboard_redis_lapped_total", [], Double(r.lapped)) }
        header("plugboard_redis_redirects_total")
        if let r = s.redis { w.sample("plugboard_redis_redirects_total", [], Double(r.redirects)) }
        let plugins = s.pluginMetrics.sorted { $0.key < $1.key }
        header("plugboard_plugin_metric_total")
        for (plugin, m) in plugins {
            for (name, v) in m.counters.sorted(by: { $0.key < $1.key }) {
                w.sample("plugboard_plugin_metric_total", [("plugin", plugin), ("name", name)], Double(v))
            }
        }
        header("plugboard_plugin_metric")
        for (plugin, m) in plugins {
            for (name, v) in m.gauges.sorted(by: { $0.key < $1.key }) {
                w.sample("plugboard_plugin_metric", [("plugin", plugin), ("name", name)], v)
            }
        }
        header("plugboard_plugin_observation")
        for (plugin, m) in plugins {
            for (name, values) in m.histograms.sorted(by: { $0.key < $1.key }) where !values.isEmpty {
                let sorted = values.sorted()
                for q in [0.5, 0.95, 0.99] {
                    let v = sorted[min(sorted.count - 1, Int((Double(sorted.count) * q).rounded(.up)) - 1)]
                    w.sample("plugboard_plugin_observation", [("plugin", plugin), ("name", name), ("quantile", "\(q)")], v)
                }
                w.sample("plugboard_plugin_observation_sum", [("plugin", plugin), ("name", name)], values.reduce(0, +))
                w.sample("plugboard_plugin_observation_count", [("plugin", plugin), ("name", name)], Double(values.count))
            }
        }
    }
}

/// Writes the Prometheus text exposition format (version 0.0.4).
struct PrometheusTextWriter {
    private(set) var text = ""

    mutating func header(_ name: String, type: String, help: String) {
        text += "# HELP \(name) \(help.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n"))\n"
        text += "# TYPE \(name) \(type)\n"
    }

    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: Double) {
        text += name
        if !labels.isEmpty {
            text += "{" + labels.map { "\($0.0)=\"\(Self.escape($0.1))\"" }.joined(separator: ",") + "}"
        }
        text += " " + Self.format(value) + "\n"
    }

    static func escape(_ v: String) -> String {
        v.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }
}
