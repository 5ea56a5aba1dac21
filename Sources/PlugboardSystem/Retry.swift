#if canImport(Glibc)
import Glibc
#endif

/// Runs a system call, repeating it while it fails with `EINTR`; turns any other failure into
/// `Errno`. The one place in Plugboard that retries `EINTR`.
///
/// `body` follows the C convention: it returns -1 (or any negative value) and sets `errno` on
/// failure.
/// - Parameters:
///   - call: the C function's name, for the error.
///   - path: the path the call works on, for the error.
/// - Returns: what `body` returned on success.
/// - Throws: `Errno` naming `call` and `path`.
@inlinable
public func retryOnInterrupt<T: FixedWidthInteger>(
    _ call: String, path: String? = nil, _ body: () -> T
) throws(Errno) -> T {
    while true {
        let r = body()
        if r >= 0 { return r }
        let code = errno
        if code == EINTR { continue }
        throw Errno(code: code, call: call, path: path)
    }
}

/// Like `retryOnInterrupt`, but without retrying: for calls that must not be repeated after a
/// signal (`close`: Linux releases the descriptor even when it reports `EINTR`).
@inlinable
public func valueOrErrno<T: FixedWidthInteger>(
    _ call: String, path: String? = nil, _ body: () -> T
) throws(Errno) -> T {
    let r = body()
    if r >= 0 { return r }
    throw Errno(code: errno, call: call, path: path)
}
