/// Words a worker's crash in terms of its memory limit (`plugins.memory_limit`, RLIMIT_AS).
///
/// A process at its address-space limit does not get a signal of its own: `mmap` and `brk` fail,
/// `malloc` returns NULL, and the plugin (or the Swift runtime, or C++'s `new`) then aborts or
/// dereferences NULL. So the crash alone says SIGABRT or SIGSEGV. The worker's crash handler
/// (`pbs_crash_recorder_install`) writes the process's VmPeak into its control page as it dies;
/// a peak within 10 % of the limit names the limit as the likely cause, and the crash is counted
/// under the reason `memory_limit` instead of the signal.
///
/// Not covered, and so not claimed: one allocation larger than the room left (the peak stays low:
/// the text gives the peak and the limit, without "likely"); a plugin that installs its own
/// SIGSEGV/SIGABRT handler; a process killed by SIGKILL (the kernel's OOM killer; RLIMIT_AS
/// itself never sends one).
public struct MemoryLimitReport: Sendable, Equatable {
    /// The process's peak address space (bytes), as its crash handler read it.
    public var peak: UInt64
    /// Its RLIMIT_AS (bytes).
    public var limit: UInt64

    /// nil when there is no limit, or the handler recorded nothing (not a signal it catches).
    public init?(peak: UInt64, limit: UInt64) {
        guard limit > 0, peak > 0 else { return nil }
        self.peak = peak
        self.limit = limit
    }

    /// Within 10 % of the limit: the failed allocation most likely hit it.
    public var likely: Bool { peak >= limit - limit / 10 }

    /// The crash reason's label on /metrics when `likely`.
    public static let label = "memory_limit"

    /// Appended to the crash text.
    public var text: String {
        let numbers = "the worker's address space peaked at \(Self.mebibytes(peak)) of its \(Self.mebibytes(limit)) limit (plugins.memory_limit)"
        return likely
            ? "; \(numbers): the memory limit is the likely cause (fix: raise plugins.memory_limit, or find what the plugin keeps allocating)"
            : "; \(numbers)"
    }

    static func mebibytes(_ bytes: UInt64) -> String {
        let tenths = (bytes * 10 + (1 << 19)) >> 20
        return "\(tenths / 10).\(tenths % 10) MiB"
    }
}
