#if canImport(Glibc)
import Glibc
#endif

/// A non-blocking, close-on-exec eventfd: a counter another thread can make readable, to wake a
/// `poll` loop (stop requests).
public struct EventFD: Sendable, Hashable {
    public let descriptor: FileDescriptor

    /// The corresponding C function is `eventfd` (`EFD_CLOEXEC | EFD_NONBLOCK`).
    /// - Throws: `Errno` with call `eventfd` (`EMFILE`, `ENFILE`, `ENOMEM`).
    public init() throws(Errno) {
        let raw = try valueOrErrno("eventfd") { system_eventfd() }
        descriptor = FileDescriptor(rawValue: raw)
    }

    /// The descriptor number, for `poll`.
    public var rawValue: CInt { descriptor.rawValue }

    /// Adds one to the counter, making the descriptor readable. A full counter (`EAGAIN`) is
    /// already readable, so that is not an error. The corresponding C function is `write`.
    public func signal() throws(Errno) {
        var one: UInt64 = 1
        do {
            _ = try withUnsafeBytes(of: &one) { (raw) throws(Errno) -> Int in try descriptor.write(raw) }
        } catch where error.code == EAGAIN {
            return
        }
    }

    /// Reads and resets the counter; 0 when it was not signalled. The corresponding C function is `read`.
    public func drain() throws(Errno) -> UInt64 {
        var value: UInt64 = 0
        do {
            _ = try withUnsafeMutableBytes(of: &value) { (raw) throws(Errno) -> Int in try descriptor.read(into: raw) }
        } catch where error.code == EAGAIN {
            return 0
        }
        return value
    }

    /// The corresponding C function is `close`.
    public func close() throws(Errno) { try descriptor.close() }
}
