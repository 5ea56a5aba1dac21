import Logging
import PlugboardCore
import PlugboardManifest

extension HostSettings {
    /// The most events one callback of this plugin gets: the smaller of the daemon's ceiling
    /// (`performance.batch_size`) and the plugin's own (`[worker] batch`). Either side can only
    /// lower it: an operator caps every plugin, a plugin that wants small batches gets them.
    /// A batch is never waited for: it is what is waiting, up to this (docs/operations.md,
    /// "Memory and batching").
    public func batchCeiling(for worker: WorkerSettings) -> Int {
        max(1, min(batchSize, Int(worker.batch)))
    }

    /// The settle window a manifest's `[worker] settle_ms` asks for: nil for none, and for
    /// `"default"` while `performance.debounce_ms` is 0.
    public func settle(for worker: WorkerSettings) -> SettleOptions? {
        let window: Duration
        switch worker.settle {
        case .off: return nil
        case .daemonDefault: window = settleDefault
        case .milliseconds(let ms): window = .milliseconds(Int(ms))
        }
        return window > .zero ? SettleOptions(window: window, maxDevices: settleDevices) : nil
    }

    /// The priority a manifest's `[worker] nice` and `cpu_affinity` ask for. A CPU list this
    /// daemon may not use is logged as a warning naming the manifest and the fix, and left out:
    /// placement is a matter of speed, so the plugin still runs (a nice the daemon may not set is
    /// warned about by the worker that tries).
    func priority(for worker: WorkerSettings, plugin: String, manifestPath: String?, logger: Logger) -> WorkerPriority {
        var p = WorkerPriority(nice: worker.nice.map(Int32.init))
        if !worker.cpuAffinity.isEmpty {
            do {
                let cpus = try CPUAffinity.parse(worker.cpuAffinity).get()
                try cpus.validate()
                p.cpus = cpus
            } catch {
                logger.warning("\(manifestPath ?? plugin): worker.cpu_affinity: \(error); the plugin runs unpinned",
                               metadata: ["plugin": "\(plugin)"])
            }
        }
        return p
    }
}
