#if canImport(Glibc)
import Glibc
#endif

/// Futex wait and wake on a 32-bit word, which may live in memory shared with another process
/// (not `FUTEX_PRIVATE_FLAG`). On the ring's wakeup path: both are inlined into the caller, and in
/// release builds call the C helper directly (see Internals/Syscalls.swift).
public enum Futex {
    /// How a wait ended. Every case means "look at the word again".
    public enum WaitResult: Sendable, Equatable {
        /// Woken, or the word no longer held `expected` when the wait began.
        case woken
        /// `timeoutNanoseconds` passed.
        case timedOut
        /// A signal arrived. Not retried here: the caller rechecks its condition anyway.
        case interrupted
        /// Another failure (`EFAULT`, `EINVAL`, `ENOSYS`): a bug, or no futex support.
        case failed(Errno)
    }

    /// Sleeps while `*word == expected`, at most `timeoutNanoseconds` (0: no limit).
    /// The corresponding C function is `futex(FUTEX_WAIT)`.
    @inlinable @discardableResult
    public static func wait(_ word: UnsafeMutablePointer<UInt32>, expected: UInt32,
                            timeoutNanoseconds: UInt64 = 0) -> WaitResult {
        if system_futex_wait(word, expected, timeoutNanoseconds) == 0 { return .woken }
        switch errno {
        case ETIMEDOUT: return .timedOut
        case EINTR: return .interrupted
        case let code: return .failed(Errno(code: code, call: "futex(FUTEX_WAIT)"))
        }
    }

    /// Wakes up to `count` waiters on `word`. Returns how many were woken.
    /// The corresponding C function is `futex(FUTEX_WAKE)`.
    /// - Throws: `Errno` with call `futex(FUTEX_WAKE)` (`EFAULT`, `EINVAL`).
    @inlinable @discardableResult
    public static func wake(_ word: UnsafeMutablePointer<UInt32>, count: Int32 = .max) throws(Errno) -> Int {
        let r = system_futex_wake(word, count)
        if r >= 0 { return Int(r) }
        throw Errno(code: errno, call: "futex(FUTEX_WAKE)")
    }

    /// All bits: a waiter or a wake that matches every other (what `wait` and `wake` are).
    public static let allBits: UInt32 = .max

    /// `wait` as a waiter with `bits`: any plain `wake` wakes it, a `wake(_:count:bits:)` only
    /// when the two share a bit. The corresponding C function is `futex(FUTEX_WAIT_BITSET)`.
    @inlinable @discardableResult
    public static func wait(_ word: UnsafeMutablePointer<UInt32>, expected: UInt32, timeoutNanoseconds: UInt64 = 0,
                            bits: UInt32) -> WaitResult {
        if system_futex_wait_bits(word, expected, timeoutNanoseconds, bits) == 0 { return .woken }
        switch errno {
        case ETIMEDOUT: return .timedOut
        case EINTR: return .interrupted
        case let code: return .failed(Errno(code: code, call: "futex(FUTEX_WAIT_BITSET)"))
        }
    }

    /// Wakes up to `count` waiters on `word` whose bits share one with `bits`.
    /// The corresponding C function is `futex(FUTEX_WAKE_BITSET)`.
    @inlinable @discardableResult
    public static func wake(_ word: UnsafeMutablePointer<UInt32>, count: Int32 = .max, bits: UInt32) throws(Errno) -> Int {
        let r = system_futex_wake_bits(word, count, bits)
        if r >= 0 { return Int(r) }
        throw Errno(code: errno, call: "futex(FUTEX_WAKE_BITSET)")
    }
}
