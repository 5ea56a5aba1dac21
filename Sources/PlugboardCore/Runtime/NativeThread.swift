import CPlugboardSupport
import Dispatch

#if canImport(Glibc)
import Glibc
#endif

/// A dedicated OS thread for a blocking loop (a plugin worker, the udev monitor,
/// the Redis publisher). Joinable with a deadline.
public final class NativeThread: Sendable {
    public let name: String
    private let done = DispatchSemaphore(value: 0)
    // Written once by `start` before anyone can join; read only by `join`.
    nonisolated(unsafe) private var thread = pthread_t()

    private final class Box {
        let name: String
        let body: @Sendable () -> Void
        let done: DispatchSemaphore
        init(name: String, body: @escaping @Sendable () -> Void, done: DispatchSemaphore) {
            self.name = name
            self.body = body
            self.done = done
        }
    }

    /// Starts `body` on a new thread named `name` (first 15 bytes show in `top -H`).
    public init(name: String, _ body: @escaping @Sendable () -> Void) {
        self.name = name
        let box = Unmanaged.passRetained(Box(name: name, body: body, done: done)).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            pbs_set_thread_name(box.name)
            box.body()
            box.done.signal()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed for \(name): \(rc)")
        // Joined through `done` (which supports a timeout), so the pthread itself is detached.
        pthread_detach(thread)
    }

    /// Waits for the thread to finish, at most `timeout` (nil = forever).
    /// - Returns: true when it finished (and was joined), false on timeout.
    @discardableResult
    public func join(timeout: Duration? = nil) -> Bool {
        if let timeout {
            let ns = max(0, timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)
            guard done.wait(timeout: .now() + .nanoseconds(Int(ns))) == .success else { return false }
        } else {
            done.wait()
        }
        done.signal()  // let a later join return at once too
        return true
    }
}
