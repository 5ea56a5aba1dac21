import CPlugboardSupport
import Dispatch
import PlugboardSystem
import Synchronization

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
    private let box: Box

    private final class Box: Sendable {
        let tid = Atomic<Int32>(0)
        let name: String
        let cpus: CPUAffinity
        /// Taken out (and so released) by the thread when it runs: what the closure captured
        /// must not live on with this object. An owner that keeps its thread (a runtime keeps
        /// its source's to join it) and is captured by the closure would otherwise never be freed,
        /// nor anything it holds: the ring, and every worker process's descriptors.
        let body: Mutex<(@Sendable () -> Void)?>
        let done: DispatchSemaphore
        init(name: String, cpus: CPUAffinity, body: @escaping @Sendable () -> Void, done: DispatchSemaphore) {
            self.name = name
            self.cpus = cpus
            self.body = Mutex(body)
            self.done = done
        }

        /// Runs the body once and lets it go before `done` is signalled.
        func run() {
            let body = self.body.withLock { b -> (@Sendable () -> Void)? in
                defer { b = nil }
                return b
            }
            body?()
        }
    }

    /// Starts `body` on a new thread named `name` (first 15 bytes show in `top -H`), pinned
    /// to `cpus` unless that is empty (validate it first: see `CPUAffinity.validate`).
    public init(name: String, cpus: CPUAffinity = .none, _ body: @escaping @Sendable () -> Void) {
        self.name = name
        box = Box(name: name, cpus: cpus, body: body, done: done)
        let rc = pthread_create(&thread, nil, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            box.tid.store(pbs_thread_id(), ordering: .releasing)
            pbs_set_thread_name(box.name)
            box.cpus.pinCurrentThread()
            box.run()
            box.done.signal()
            return nil
        }, Unmanaged.passRetained(box).toOpaque())
        precondition(rc == 0, "pthread_create failed for \(name): \(rc)")
        // Joined through `done` (which supports a timeout), so the pthread itself is detached.
        pthread_detach(thread)
    }

    /// The thread's kernel id (for `taskset -p`, `perf -t`, /proc/self/task/ID); 0 until it runs.
    public var threadID: Int32 { box.tid.load(ordering: .acquiring) }

    /// Waits for the thread to finish, at most `timeout` (nil = forever).
    /// - Returns: true when it finished (and was joined), false on timeout.
    @discardableResult
    public func join(timeout: Duration? = nil) -> Bool {
        if let timeout {
            let ns = max(0, timeout.nanoseconds)
            guard done.wait(timeout: .now() + .nanoseconds(Int(ns))) == .success else { return false }
        } else {
            done.wait()
        }
        done.signal()  // let a later join return at once too
        return true
    }
}
