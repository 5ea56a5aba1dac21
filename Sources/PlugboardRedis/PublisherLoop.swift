import CPlugboard
import Foundation
import Logging
import PlugboardCore
import PlugboardSystem

/// The publisher thread's state machine. Owned by that thread alone (see `LoopHandoff`).
///
/// Events move through one `RecordStore`, plugin output records through another; in each, a
/// `WindowPositions` says what is settled, answered, in flight and waiting to be sent. After a
/// reconnect the window is replayed with the same IDs; settled records are skipped.
///
/// The state is declared here; the work is in the extensions, one idea per file:
/// - `PublisherLoop+Connection.swift`: connecting, marking Redis down, reconnecting with backoff.
/// - `PublisherLoop+Redirects.swift`: Redis Cluster `MOVED` redirects.
/// - `PublisherLoop+Failover.swift`: Redis Cluster failover (another node when one is gone) and
///   `WAIT` for replicas (`redis.wait_replicas`).
/// - `PublisherLoop+Epochs.swift`: the ms part of the IDs, at connect and per record.
/// - `PublisherLoop+Intake.swift`: events and plugin output into the stores (spilling while down).
/// - `PublisherLoop+Pipeline.swift`: encoding batches and keeping two in flight.
/// - `PublisherLoop+Replies.swift`: reading a batch's replies and acknowledging its records
///   (what a reply means: `ReplyOutcome.swift`).
/// - `PublisherLoop+Reissue.swift`: records a later entry overtook, copied under a new epoch.
final class PublisherLoop {
    let config: RedisPublisher.Configuration
    let control: PublisherControl
    let logger: Logger
    let keys: StreamKeys
    let source: any EventBatchSource
    let pluginSource: (any PluginOutputSource)?
    /// Wakes this thread from its sleep on the ring for plugin output and for a stop; nil for a
    /// source that is not a ring consumer (then plugin output is polled every millisecond).
    let wakeup: ConsumerWakeup?
    let encoder: CommandEncoder
    /// The configured URL, redacted: for log lines and errors.
    let server: String

    let events: RecordStore
    var eventWindow = WindowPositions()
    let plugins: RecordStore
    var pluginWindow = WindowPositions()
    /// The pipelined batches sent and not read yet.
    var batches = BatchesInFlight()
    /// The first retryable error of the replies being read; once every reply in flight is read,
    /// the connection is dropped and the unsettled records are replayed after a backoff.
    var retryReason: String?
    /// Records whose XADD got a retryable error in the replies read since the last reconnect and
    /// are not resolved yet: events by position; plugin records by position and stream name.
    var failedEvents: [UInt64] = []
    var failedPlugins: [(position: UInt64, name: [UInt8])] = []
    /// The highest sequence first sent in the current epoch, events and plugin records.
    var lastEventSequenceSent: UInt64 = 0
    var lastPluginSequenceSent: UInt64 = 0
    var epochBumps = 0
    /// Redis Cluster: the node serving the stream's slot, when a MOVED said it is not the configured one.
    var clusterNode: RedisURL?
    /// Set while reading replies when one was a MOVED: followed once every reply in flight is read.
    var pendingRedirect: (node: RedisURL, text: String)?
    /// Redis Cluster: the nodes `CLUSTER NODES` listed at the last connect, tried in turn when the
    /// node to connect to is unreachable (a killed master); and the last node found unreachable.
    var knownNodes: [RedisURL] = []
    var unreachableNode: RedisURL?
    var pluginSequence: UInt64 = 0
    /// The highest event sequence taken into the store (kept in the state file, `state.dir`).
    var lastStoredSequence: UInt64 = 0

    var connection: RedisConnection?
    var connected = false
    /// The ms part of every ID sent in the current epoch; nil until the first connect.
    var epochMs: UInt64?
    var backoff: Backoff
    var nextAttemptNs: UInt64 = 0
    var failedAttempts = 0
    var sourceFinished = false
    var droppedThisOutage: UInt64 = 0
    var spilledThisOutage: UInt64 = 0
    var rejectedLogged: UInt64 = 0
    /// While a small batch lingers (`Configuration.linger`): when it is sent, CLOCK_MONOTONIC ns.
    var lingerUntil: UInt64?
    /// The source's batch of event pointers, allocated once.
    let batch: UnsafeMutablePointer<UnsafePointer<pb_event>?>

    init(configuration: RedisPublisher.Configuration, control: PublisherControl, logger: Logger,
         source: any EventBatchSource, pluginSource: (any PluginOutputSource)?, wakeup: ConsumerWakeup? = nil) {
        self.config = configuration
        self.control = control
        self.logger = logger
        self.keys = StreamKeys(host: configuration.host)
        self.source = source
        self.pluginSource = pluginSource
        self.wakeup = wakeup
        self.encoder = CommandEncoder(keys: keys, maxLength: configuration.maxLength,
                                      timeRetention: configuration.retentionAge != nil)
        self.server = configuration.url.redacted
        if let state = configuration.state {
            events = state.events.store
            plugins = state.plugins.store
            eventWindow = WindowPositions(acked: state.events.acked, stored: state.events.stored)
            pluginWindow = WindowPositions(acked: state.plugins.acked, stored: state.plugins.stored)
            lastStoredSequence = state.events.lastSequence
            pluginSequence = state.plugins.lastSequence
            control.lapped.add(state.lostAtRecovery, ordering: .relaxed)
        } else {
            events = RecordStore(capacity: configuration.spillBytes)
            plugins = RecordStore(capacity: max(configuration.pluginBytes, 2 * (configuration.pluginMaxRecord + 64)))
        }
        control.capacityBytes.store(UInt64(events.capacity), ordering: .relaxed)
        self.backoff = Backoff(base: configuration.backoffBase, max: configuration.backoffMax)
        self.knownNodes = configuration.clusterNodes
        let maxBatch = max(1, configuration.maxBatch)
        batch = .allocate(capacity: maxBatch)
        batch.initialize(repeating: nil, count: maxBatch)
    }

    deinit {
        batch.deallocate()
    }

    /// Writes where both windows stand into the state files (`state.dir`), when there are any:
    /// after every turn, and after each intake (docs/redis.md, "Crash safety").
    @inline(__always)
    func persistState() {
        guard let state = config.state else { return }
        state.events.persist(eventWindow, lastSequence: lastStoredSequence)
        state.plugins.persist(pluginWindow, lastSequence: pluginSequence)
    }

    // MARK: The loop

    func run() {
        // The ring wakes us (futex) when events come, and `wakeup` when plugin output comes or a
        // stop is asked for; without a wakeup, plugin output is polled each ms.
        let idleWaitNs: UInt64 = pluginSource == nil || wakeup != nil ? config.idleWait : 1_000_000
        while true {
            let stopping = control.stopRequested.load(ordering: .acquiring)
            let took = sourceFinished ? 0 : intake()
            let pluginTook = drainPlugins()
            var sent = false
            var held = false
            if connected {
                held = linger(stopping: stopping)
                if !held && (eventWindow.unsent > 0 || pluginWindow.unsent > 0 || batches.count > 0) {
                    pump()
                    sent = true
                }
            } else if monotonicNanos() >= nextAttemptNs {
                attemptReconnect()
            }
            persistState()
            let pending = eventWindow.unsettled + pluginWindow.unsettled
            control.pending.store(eventWindow.unsettled, ordering: .relaxed)
            control.heldBytes.store(eventWindow.bytesInUse, ordering: .relaxed)
            control.pluginPending.store(pluginWindow.unsettled, ordering: .relaxed)
            if pending == 0 && took == 0 && pluginTook == 0 {
                control.idleGeneration.add(1, ordering: .releasing)
                // A finished ring is not the end: plugins publish their last records while they
                // shut down, after the ring drained. Only `stop` ends the thread.
                if stopping { break }
            }
            if stopping && monotonicNanos() >= control.stopDeadlineNs.load(ordering: .acquiring) {
                if pending > 0 {
                    logger.error("stopping with events not delivered to Redis", metadata: [
                        "redis": "\(server)", "undelivered": "\(eventWindow.unsettled)",
                        "plugin_undelivered": "\(pluginWindow.unsettled)"])
                }
                break
            }
            if held {
                // Not asleep on the ring: the source does not wake this thread for each event
                // that joins the batch meanwhile. In steps of at most 1 ms, so that a batch that
                // fills up or a stop is not held for a long linger.
                let left = Int64(lingerUntil ?? 0) - Int64(monotonicNanos())
                if left > 0 { sleepThread(for: .nanoseconds(min(left, 1_000_000))) }
            } else if !sent && took == 0 && pluginTook == 0 {
                if sourceFinished {
                    sleepThread(for: .milliseconds(1))  // a closed ring's wait returns at once
                } else if connected {
                    if let wakeup {
                        // Sleeping is announced before the last look at plugin output and the
                        // stop flag: a record or a stop after the look finds us asleep and wakes us.
                        wakeup.willSleep()
                        if (pluginSource?.isEmpty ?? true) && !control.stopRequested.load(ordering: .sequentiallyConsistent) {
                            source.wait(timeoutNanoseconds: idleWaitNs)
                        }
                        wakeup.didWake()
                    } else {
                        source.wait(timeoutNanoseconds: idleWaitNs)
                    }
                } else {
                    let untilAttempt = Int64(nextAttemptNs) - Int64(monotonicNanos())
                    source.wait(timeoutNanoseconds: UInt64(max(100_000, min(untilAttempt, 20_000_000))))
                }
            }
        }
        persistState()
        control.connected.store(false, ordering: .releasing)
        control.exited.store(true, ordering: .releasing)
        connection = nil
    }
}

extension PublisherLoop {
    /// Whether to hold the records waiting to be sent a little longer (`Configuration.linger`):
    /// only a small batch with nothing in flight (a reply still to read means the batch waits
    /// anyway), never while stopping or after the source finished. The first such turn of a
    /// quiet spell starts the clock; later ones only wait out what is left of it.
    func linger(stopping: Bool) -> Bool {
        let waiting = eventWindow.unsent + pluginWindow.unsent
        guard config.linger > 0, waiting > 0, batches.count == 0, !stopping, !sourceFinished,
              eventWindow.unsent < UInt64(config.maxBatch), pluginWindow.unsent < UInt64(config.maxBatch) else {
            lingerUntil = nil
            return false
        }
        let now = monotonicNanos()
        guard let until = lingerUntil else {
            lingerUntil = now &+ config.linger
            return true
        }
        if now >= until {
            lingerUntil = nil
            return false
        }
        return true
    }
}

/// "64 MiB", "64 KiB", "512 B": for log lines.
func byteCount(_ n: Int) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 { return "\(n >> 20) MiB" }
    if n >= 1 << 10 { return "\(n >> 10) KiB" }
    return "\(n) B"
}
