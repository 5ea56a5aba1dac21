#if canImport(Glibc)
import Glibc
#endif

/// Waiting for descriptors to become ready.
public enum Poll {
    /// Waits until one of `fds` is ready or `timeoutMilliseconds` pass (-1: no limit), retrying on
    /// `EINTR` (with the full timeout again: the callers' timeouts are settle delays and stop
    /// checks, where a longer wait after a signal is harmless).
    /// The corresponding C function is `poll`.
    /// - Returns: how many descriptors have events (0 on timeout); see each `revents`.
    /// - Throws: `Errno` with call `poll` (`ENOMEM`, `EINVAL`).
    @discardableResult
    public static func wait(_ fds: inout [pollfd], timeoutMilliseconds: Int32) throws(Errno) -> Int {
        let count = nfds_t(fds.count)
        let n = try retryOnInterrupt("poll") {
            fds.withUnsafeMutableBufferPointer { system_poll($0.baseAddress, count, timeoutMilliseconds) }
        }
        return Int(n)
    }

    /// A `pollfd` asking for readability of `fd`.
    public static func readable(_ fd: CInt) -> pollfd { pollfd(fd: fd, events: Int16(POLLIN), revents: 0) }
}
