import CPlugboardSupport

#if canImport(Glibc)
import Glibc
#endif

/// A plugin worker's priority (manifest `[worker] nice` and `cpu_affinity`), applied to the
/// worker before its plugin's code loads: in a worker process before privileges are dropped, on a
/// worker thread before `init`. Threads the plugin starts inherit both.
public struct WorkerPriority: Sendable, Equatable {
    /// -20...19; nil leaves the daemon's.
    public var nice: Int32?
    /// Empty: the daemon's placement (`performance.cpu_affinity` for threads, none for processes).
    public var cpus: CPUAffinity

    public init(nice: Int32? = nil, cpus: CPUAffinity = .none) {
        self.nice = nice
        self.cpus = cpus
    }

    public var isDefault: Bool { nice == nil && cpus.isEmpty }

    /// Sets the calling thread's nice value.
    /// - Returns: nil, or why it was not applied, with the fix (for a warning: the plugin still runs).
    public static func applyNice(_ nice: Int32) -> String? {
        let rc = pbs_set_thread_nice(nice)
        if rc == 0 { return nil }
        if rc == EACCES || rc == EPERM {
            return "nice \(nice) is below the daemon's own, which needs CAP_SYS_NICE (fix: grant the daemon CAP_SYS_NICE, e.g. AmbientCapabilities=CAP_SYS_NICE in its unit, or use a nice of 0 or more)"
        }
        return "setpriority(\(nice)): \(String(cString: strerror(rc))) (errno \(rc))"
    }

    /// Pins the calling thread to `cpus`.
    /// - Returns: nil, or why it was not applied, with the fix.
    public static func applyAffinity(_ cpus: CPUAffinity) -> String? {
        if cpus.isEmpty { return nil }
        let rc = cpus.pinCurrentThread()
        if rc == 0 { return nil }
        return "cpu_affinity \(cpus) cannot be applied: sched_setaffinity: \(String(cString: strerror(rc))) (fix: list CPUs from \(CPUAffinity.allowed), the ones the daemon may use)"
    }
}
