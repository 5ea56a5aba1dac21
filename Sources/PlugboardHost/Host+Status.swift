import CPlugboard
import Foundation
import PlugboardCore

extension HostAssembly {
    /// A consistent-enough snapshot for /plugins, /devices, /readyz and /metrics: counters are
    /// read with relaxed atomics; no lock is taken that a worker holds per event.
    public func status() -> RuntimeStatus {
        let s = state.withLock { $0 }
        let report = pluginReport
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
            case .restarting: .restarting
            case .quarantined: .quarantined
            }
            var p = PluginStatus(name: st.name, version: st.version, state: state, events: st.events, errors: st.errors,
                                 lag: st.state == .stopped ? 0 : st.lag, laps: st.laps, lastError: st.lastError,
                                 callbackDuration: HistogramSnapshot(w.callbackDuration), loadTime: report.loadTimes[st.name])
            p.overruns = st.overruns
            p.isolation = st.isolation.rawValue
            p.pid = st.pid
            p.restarts = st.restarts
            p.recycles = st.recycles
            p.crashes = st.crashes
            p.skipped = st.skipped
            p.quarantineReason = st.quarantineReason
            p.lastCrash = st.lastCrash
            p.publishRefused = st.publishRefused
            p.logDropped = st.logDropped
            p.settleMilliseconds = Int((st.settleWindow?.nanoseconds ?? 0) / 1_000_000)
            p.settleCoalesced = st.settleCoalesced
            p.settleFlaps = st.settleFlaps
            p.settleOverflow = st.settleOverflow
            p.batchCeiling = st.batchSize
            p.batchSizes = w.batchSizes
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
            redis: publisherStats.map {
                var r = RedisStatus(connected: $0.connected, published: $0.published, spilled: $0.spilled, dropped: $0.dropped,
                                    reissued: $0.reissued, redirects: $0.redirects,
                                    publishLatency: redis.map { HistogramSnapshot($0.publisher.publishLatency) } ?? .empty)
                r.heldBytes = $0.heldBytes
                r.capacityBytes = $0.capacityBytes
                r.lapped = $0.lapped
                return r
            },
            startup: StartupTimings(manifestParse: [report.discovery], deviceEnumeration: nil,
                                    workerStart: workers.compactMap(\.startDuration)),
            manifestCache: CacheCounters(hits: UInt64(report.cacheHits), misses: UInt64(report.cacheMisses)))
        status.manifestCache.entries = UInt64(report.cacheEntries)
        status.manifestCache.capacity = UInt64(report.cacheCapacity)
        status.manifestCache.evictions = UInt64(report.cacheEvictions)
        let table = runtime.deviceTable, queue = runtime.outputQueue
        status.bounds.devices = UInt64(devices.count)
        status.bounds.maxDevices = UInt64(table.maxDevices)
        status.bounds.devicesRefused = table.refused
        status.bounds.outputRecords = UInt64(queue.count)
        status.bounds.outputBytes = UInt64(queue.bytes)
        status.bounds.outputMaxRecords = UInt64(queue.maxRecords)
        status.bounds.outputMaxBytes = UInt64(queue.maxBytes)
        status.bounds.outputFull = queue.fullRefusals
        for w in workers { status.pluginMetrics[w.name] = w.metricsSnapshot }
        return status
    }
}
