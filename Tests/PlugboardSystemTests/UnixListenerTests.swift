import Dispatch
import Synchronization
import Testing
@testable import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

@Suite("UnixListener")
struct UnixListenerTests {
    /// The control socket's stop: its accept loop waits with a timeout, and the daemon's exit
    /// joins that loop. Here the timeout is an hour; only the wake can end the wait before the
    /// test's own limit.
    @Test("an accept waiting with a long timeout ends at once, with nothing, when its wake descriptor is signalled")
    func acceptEndsOnWake() throws {
        let listener = try UnixListener(path: temporaryDirectory() + "/control.sock", mode: 0o600)
        defer { listener.close() }
        let wake = try EventFD()
        defer { try? wake.close() }
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<String>("not returned")
        DispatchQueue.global().async {
            let outcome: String
            do { outcome = try listener.accept(timeoutMilliseconds: 3_600_000, wake: wake) == nil ? "nothing" : "a connection" } catch {
                outcome = "an error: \(error)"
            }
            result.withLock { $0 = outcome }
            done.signal()
        }
        try wake.signal()
        #expect(done.wait(timeout: .now() + .seconds(60)) == .success, "accept slept through the wake")
        #expect(result.withLock { $0 } == "nothing")
    }

    @Test("a connection is still accepted while a wake descriptor is watched and unsignalled")
    func acceptTakesAConnection() throws {
        let path = temporaryDirectory() + "/control.sock"
        let listener = try UnixListener(path: path, mode: 0o600)
        defer { listener.close() }
        let wake = try EventFD()
        defer { try? wake.close() }
        let client = try UnixStream.connect(path)
        defer { try? client.close() }
        let accepted = try #require(try listener.accept(timeoutMilliseconds: 60_000, wake: wake))
        #expect(accepted.1.pid == getpid())
        try? accepted.0.close()
    }
}
