import Synchronization
import Testing
@testable import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

/// Counts calls to a mocked function (mocks are `@Sendable`, so the count is atomic).
final class CallCount: Sendable {
    private let value = Atomic<Int>(0)
    /// Counts a call and returns its number (1 for the first).
    func next() -> Int { value.add(1, ordering: .relaxed).newValue }
    var count: Int { value.load(ordering: .relaxed) }
}

/// Runs `body` with `mocks` replacing the C functions they name (for this task only).
func withSyscalls<R>(_ mocks: Syscalls, _ body: () throws -> R) rethrows -> R {
    try Syscalls.$mocks.withValue(mocks, operation: body)
}

/// The `Errno` `body` throws, or nil (recording an issue) when it throws nothing or something else.
func thrownErrno<R>(sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R) -> Errno? {
    do {
        _ = try body()
        Issue.record("expected an Errno, nothing was thrown", sourceLocation: sourceLocation)
    } catch let e as Errno {
        return e
    } catch {
        Issue.record("expected an Errno, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// Fails with `code` (sets errno, returns -1), as a C call does.
func fail<T: SignedInteger>(_ code: CInt) -> T {
    errno = code
    return -1
}

/// A fresh temporary directory (removed by the system's tmp cleaning; tests write little).
func temporaryDirectory() -> String {
    var template = Array("/tmp/pbsys-XXXXXX".utf8CString)
    let made = mkdtemp(&template)!
    return String(cString: made)
}

/// Writes `bytes` to a new file in a temporary directory and returns its path.
func temporaryFile(_ bytes: [UInt8], name: String = "file") throws -> String {
    let path = temporaryDirectory() + "/" + name
    let fd = try FileDescriptor.open(path, [.writeOnly, .create, .truncate])
    defer { try? fd.close() }
    try bytes.withUnsafeBytes { try fd.writeAll($0) }
    return path
}
