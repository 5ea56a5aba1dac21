import Foundation
import PlugboardCore
import PlugboardSystem
import Synchronization

/// How a graceful shutdown ended.
public struct ShutdownReport: Sendable, Equatable {
    /// Every step finished within the deadline.
    public var completed: Bool
    /// From the start of the shutdown to its end (or to the deadline when stuck).
    public var duration: Duration
    /// The step that was running when the deadline passed ("drain", "plugin shutdown"...); nil when completed.
    public var stuckPhase: String?
    /// The components still busy at the deadline, as the runtime named them.
    public var stuck: [String]

    public init(completed: Bool, duration: Duration, stuckPhase: String?, stuck: [String]) {
        self.completed = completed
        self.duration = duration
        self.stuckPhase = stuckPhase
        self.stuck = stuck
    }

    /// One line for the log and stderr.
    public var message: String {
        if completed { return "shutdown complete in \(Self.format(duration))" }
        let who = stuck.isEmpty ? "the \(stuckPhase ?? "shutdown") step" : stuck.joined(separator: ", ")
        return "shutdown deadline exceeded after \(Self.format(duration)) during \(stuckPhase ?? "shutdown"): stuck: \(who)"
    }

    static func format(_ d: Duration) -> String {
        let ms = d.inSeconds * 1000
        return ms < 1000 ? String(format: "%.1f ms", ms) : String(format: "%.2f s", ms / 1000)
    }
}

/// Runs the shutdown steps in order under one hard deadline.
///
/// Steps: stop the source, drain the ring to the plugins, call the plugins' shutdown, flush outputs
/// (the Redis window). They run on a dedicated thread because each may block in C (a plugin callback,
/// a hiredis round trip); the caller waits at most until the deadline, so a step that never returns
/// cannot hold the process. The thread left behind is abandoned; the caller is expected to exit.
public enum ShutdownCoordinator {
    /// The steps, in order, as named in reports and logs.
    public static let phases = ["stop source", "drain", "plugin shutdown", "flush outputs"]
    /// How long past the deadline a step may take to report who is busy (not to finish its work).
    static let graceMilliseconds = 100

    /// Shuts `runtime` down within `deadline` (from now).
    /// - Returns: the report; `completed == false` names the stuck phase and components.
    public static func shutdown(_ runtime: any RuntimeControl, deadline: Duration) -> ShutdownReport {
        let clock = ContinuousClock()
        let start = clock.now
        let end = start + deadline
        let progress = Progress()
        let done = DispatchSemaphore(value: 0)

        // Abandoned, not joined, when a step outlives the deadline (the caller exits).
        _ = NativeThread(name: "pb-shutdown") {
            progress.enter(phases[0])
            var busy = runtime.stopSource(until: end)
            if busy.isEmpty {
                progress.enter(phases[1])
                busy = runtime.drain(until: end)
            }
            if busy.isEmpty {
                progress.enter(phases[2])
                busy = runtime.shutdownPlugins(until: end)
            }
            if busy.isEmpty {
                progress.enter(phases[3])
                busy = runtime.flushOutputs(until: end)
            }
            progress.finish(busy: busy)
            done.signal()
        }

        // Wait on the wall clock equivalent of `end`: DispatchTime is monotonic too.
        let remaining = end - clock.now
        let waitNanos = max(0, remaining.nanoseconds)
        var timedOut = done.wait(timeout: .now() + .nanoseconds(Int(waitNanos))) == .timedOut
        if timedOut {
            // A step that honours the deadline returns right at it with the names of who is busy:
            // give it a moment to do so, for a precise message.
            timedOut = done.wait(timeout: .now() + .milliseconds(Int(graceMilliseconds))) == .timedOut
        }
        let state = progress.snapshot()
        if timedOut || !state.busy.isEmpty {
            // Still running past the deadline (or a step gave up at it): ask the runtime who is busy,
            // so the message names the plugin rather than only the step.
            var stuck = state.busy
            if stuck.isEmpty {
                stuck = runtime.status().plugins.filter { $0.lag > 0 }.map { "plugin \($0.name)" }
            }
            return ShutdownReport(completed: false, duration: min(clock.now - start, deadline), stuckPhase: state.phase, stuck: stuck)
        }
        return ShutdownReport(completed: true, duration: clock.now - start, stuckPhase: nil, stuck: [])
    }

    /// The shutdown thread's progress, read by the waiting thread.
    private final class Progress: Sendable {
        struct State: Sendable {
            var phase: String?
            var busy: [String] = []
            var finished = false
        }
        private let state = Mutex(State())
        func enter(_ phase: String) { state.withLock { $0.phase = phase } }
        func finish(busy: [String]) {
            state.withLock {
                $0.busy = busy
                $0.finished = true
            }
        }
        func snapshot() -> State { state.withLock { $0 } }
    }
}
