import Foundation
import PlugboardCore
import PlugboardDaemon
import PlugboardSystem
import Synchronization

/// A small runtime with real worker threads that really sleep, for testing the lifecycle
/// logic on its own (the process tests use the real core and real plugins).
///
/// Each "plugin" is a thread taking work items from its queue; an item sleeps `perEvent`. Its
/// shutdown sleeps `shutdownTime`. The "redis" flush sleeps `flushTime`. `start` blocks until
/// `releaseStart()` when `holdStart` is set (to observe /readyz before readiness).
final class ThreadedRuntime: RuntimeControl, @unchecked Sendable {
    // @unchecked: every mutable field is guarded by `cond` (an NSCondition, i.e. a mutex).
    struct PluginSpec {
        var name: String
        var perEvent: Duration
        var shutdownTime: Duration = .zero
    }

    private let cond = NSCondition()
    private var queues: [[UInt64]]
    private var inCallback: [Bool]
    private var processed: [[UInt64]]
    private var shutdownRequested = false
    private var shutdownDone: [Bool]
    private var sourceStopped = false
    private var started = false
    private var startReleased: Bool
    private var published: UInt64 = 0
    let specs: [PluginSpec]
    let flushTime: Duration
    let calls = Mutex<[String]>([])

    init(plugins: [PluginSpec], flushTime: Duration = .zero, holdStart: Bool = false) {
        specs = plugins
        self.flushTime = flushTime
        queues = Array(repeating: [], count: plugins.count)
        inCallback = Array(repeating: false, count: plugins.count)
        processed = Array(repeating: [], count: plugins.count)
        shutdownDone = Array(repeating: false, count: plugins.count)
        startReleased = !holdStart
    }

    func releaseStart() {
        cond.lock()
        startReleased = true
        cond.broadcast()
        cond.unlock()
    }

    /// Puts `n` events in every plugin's queue (the "ring").
    func publish(_ n: Int) {
        cond.lock()
        for _ in 0..<n {
            published += 1
            for i in queues.indices { queues[i].append(published) }
        }
        cond.broadcast()
        cond.unlock()
    }

    var processedCounts: [Int] {
        cond.lock()
        defer { cond.unlock() }
        return processed.map(\.count)
    }

    func start() throws {
        calls.withLock { $0.append("start") }
        cond.lock()
        while !startReleased { cond.wait() }
        started = true
        cond.unlock()
        for i in specs.indices {
            _ = NativeThread(name: "test-\(specs[i].name)") { [self] in worker(i) }
        }
    }

    private func worker(_ i: Int) {
        while true {
            cond.lock()
            while queues[i].isEmpty && !shutdownRequested { cond.wait() }
            if queues[i].isEmpty && shutdownRequested {
                cond.unlock()
                sleepThread(for: specs[i].shutdownTime)
                cond.lock()
                shutdownDone[i] = true
                cond.broadcast()
                cond.unlock()
                return
            }
            let seq = queues[i].removeFirst()
            inCallback[i] = true
            cond.unlock()
            sleepThread(for: specs[i].perEvent)  // the "callback"
            cond.lock()
            inCallback[i] = false
            processed[i].append(seq)
            cond.broadcast()
            cond.unlock()
        }
    }

    func stopSource() {
        calls.withLock { $0.append("stopSource") }
        cond.lock()
        sourceStopped = true
        cond.unlock()
    }

    func drain(until deadline: ContinuousClock.Instant) -> [String] {
        calls.withLock { $0.append("drain") }
        cond.lock()
        defer { cond.unlock() }
        while queues.contains(where: { !$0.isEmpty }) || inCallback.contains(true) {
            if !cond.wait(until: date(deadline)) { break }
        }
        return specs.indices.filter { !queues[$0].isEmpty || inCallback[$0] }
            .map { "plugin \(specs[$0].name) (\(queues[$0].count + (inCallback[$0] ? 1 : 0)) events left)" }
    }

    func shutdownPlugins(until deadline: ContinuousClock.Instant) -> [String] {
        calls.withLock { $0.append("shutdownPlugins") }
        cond.lock()
        defer { cond.unlock() }
        shutdownRequested = true
        cond.broadcast()
        while shutdownDone.contains(false) {
            if !cond.wait(until: date(deadline)) { break }
        }
        return specs.indices.filter { !shutdownDone[$0] }.map { "plugin \(specs[$0].name) (in shutdown)" }
    }

    func flushOutputs(until deadline: ContinuousClock.Instant) -> [String] {
        calls.withLock { $0.append("flushOutputs") }
        // A flush that cannot be interrupted (a blocking hiredis round trip): it ignores the deadline.
        sleepThread(for: flushTime)
        return []
    }

    func status() -> RuntimeStatus {
        cond.lock()
        defer { cond.unlock() }
        let plugins = specs.indices.map { i in
            PluginStatus(name: specs[i].name, version: "1.0.0",
                         state: shutdownDone[i] ? .stopped : (sourceStopped ? .draining : .running),
                         events: UInt64(processed[i].count), lag: UInt64(queues[i].count))
        }
        return RuntimeStatus(pluginsInitialised: started, sourceLive: started && !sourceStopped, plugins: plugins,
                             ring: RingStatus(slots: 64, published: published, fill: UInt64(queues.map(\.count).max() ?? 0)))
    }

    private func date(_ instant: ContinuousClock.Instant) -> Date {
        Date(timeIntervalSinceNow: (instant - ContinuousClock.now).inSeconds)
    }
}
