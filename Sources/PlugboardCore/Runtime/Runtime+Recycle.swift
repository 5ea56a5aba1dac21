import PlugboardSystem

/// When worker processes are replaced by fresh ones (daemon config `plugins.recycle_*`).
///
/// A worker that has delivered `afterEvents` events, or has run for `afterTime`, is recycled:
/// a fresh worker process starts and initialises while the old one still reads, then the old
/// one finishes its batch and hands over its cursor and saved state (the hot-reload swap,
/// `Runtime.reload`), runs its shutdown and exits. No event is lost or delivered twice, and the
/// plugin's delivery never waits for the new process's spawn, `dlopen` and `init`: they happen
/// before the old process stops. Thread plugins are not recycled (their image cannot be
/// released: docs/security.md).
public struct RecyclePolicy: Sendable, Equatable {
    /// Events a worker process delivers before it is recycled (0: no limit).
    public var afterEvents: UInt64
    /// How long a worker process runs before it is recycled (nil: no limit).
    public var afterTime: Duration?
    /// The plugins it applies to (empty: every process plugin).
    public var plugins: Set<String>

    public init(afterEvents: UInt64 = 0, afterTime: Duration? = nil, plugins: Set<String> = []) {
        self.afterEvents = afterEvents
        self.afterTime = afterTime
        self.plugins = plugins
    }

    var isActive: Bool { afterEvents > 0 || afterTime != nil }

    func applies(to name: String) -> Bool { plugins.isEmpty || plugins.contains(name) }
}

extension Runtime {
    /// The recycler thread: every 10 ms, recycles the process workers past a limit, one at a time.
    func recycleLoop(_ policy: RecyclePolicy) {
        var warned: Set<ObjectIdentifier> = []
        while !recyclerStop.load(ordering: .relaxed) {
            for w in workers {
                guard !recyclerStop.load(ordering: .relaxed) else { return }
                guard let p = w as? ProcessWorker, p.state == .running, !p.shadow, policy.applies(to: p.name) else { continue }
                let byEvents = policy.afterEvents > 0 && p.counter(.delivered) >= policy.afterEvents
                let byAge = policy.afterTime.map { ContinuousClock.now - p.createdAt >= $0 } ?? false
                guard byEvents || byAge else { continue }
                guard p.fileUnchanged else {
                    // Recycling would start another build than the one running: only an explicit
                    // reload may do that.
                    if !warned.contains(ObjectIdentifier(p)) {
                        warned.insert(ObjectIdentifier(p))
                        logger.warning("not recycled: \(p.spec.path) changed since this worker started, and a recycle starts the same build (fix: plugboard ctl reload \(p.name) to run the new one)",
                                       metadata: ["plugin": "\(p.name)"])
                    }
                    continue
                }
                do {
                    _ = try reload(p, from: p.spec.path, settings: nil, recycle: true)
                } catch {
                    // The old worker keeps running; tried again after the next pause.
                    logger.error("worker process recycle failed; the running one stays: \(error.description)",
                                 metadata: ["plugin": "\(p.name)"])
                    sleepThread(for: .seconds(1))
                }
            }
            sleepThread(for: .milliseconds(10))
        }
    }
}
