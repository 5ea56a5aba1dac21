#if canImport(Glibc)
import Glibc
#endif

/// The one conversion from `Duration` to the integer units C calls and counters use.
/// Conversions truncate toward zero and saturate at `Int64.min`/`Int64.max` nanoseconds
/// (about ±292 years).
extension Duration {
    /// The duration in whole nanoseconds.
    @inlinable
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        let (sum, overflow2) = whole.addingReportingOverflow(attoseconds / 1_000_000_000)
        if overflow2 { return seconds < 0 ? .min : .max }
        return sum
    }

    /// The duration in whole milliseconds (for `poll` timeouts and config values).
    @inlinable
    public var milliseconds: Int64 { nanoseconds / 1_000_000 }

    /// "5s", "250ms": how configuration files write durations, and how messages quote them.
    public var shortText: String {
        let ms = milliseconds
        return ms % 1000 == 0 ? "\(ms / 1000)s" : "\(ms)ms"
    }

    /// The duration in seconds, as a floating-point number (for metrics and messages).
    @inlinable
    public var inSeconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// The duration as a `timespec` (negative durations become zero), for `nanosleep`,
    /// `futex` and `clock_nanosleep`.
    @inlinable
    public var timespec: Glibc.timespec {
        let ns = Swift.max(0, nanoseconds)
        return Glibc.timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
    }

    /// The duration as a `timeval` (negative durations become zero), for socket timeouts.
    @inlinable
    public var timeval: Glibc.timeval {
        let ns = Swift.max(0, nanoseconds)
        return Glibc.timeval(tv_sec: Int(ns / 1_000_000_000), tv_usec: Int(ns % 1_000_000_000 / 1000))
    }

    /// A duration from a `timespec` (e.g. an `st_mtim` or a `clock_gettime` reading).
    @inlinable
    public init(_ ts: Glibc.timespec) {
        self = .seconds(Int64(ts.tv_sec)) + .nanoseconds(Int64(ts.tv_nsec))
    }
}

extension Glibc.timespec {
    /// The time in whole nanoseconds (e.g. an `st_mtim`, or a `CLOCK_MONOTONIC` reading).
    @inlinable
    public var nanoseconds: Int64 { Int64(tv_sec) &* 1_000_000_000 &+ Int64(tv_nsec) }
}

/// Sleeps the calling thread for `duration` (without retrying on a signal: a short sleep is
/// harmless where this is used). The corresponding C function is `nanosleep`.
public func sleepThread(for duration: Duration) {
    var ts = duration.timespec
    nanosleep(&ts, nil)
}
