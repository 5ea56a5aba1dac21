import Synchronization

/// One record a plugin published through the host API.
public struct OutputRecord: Sendable, Equatable {
    /// The publishing plugin's name.
    public var plugin: String
    /// The plugin's topic.
    public var topic: String
    /// The payload bytes (copied).
    public var payload: [UInt8]

    public init(plugin: String, topic: String, payload: [UInt8]) {
        self.plugin = plugin
        self.topic = topic
        self.payload = payload
    }
}

/// The bounded queue between plugins' `publish` host calls (many worker threads)
/// and the publisher that drains it (Redis, or the run summary).
///
/// Bounded in records and in bytes; a publish past either bound is refused with
/// `PB_ERR_FULL` and counted, never silently dropped. Plugin output is low-volume
/// (summaries, alerts), so a mutex is the simple, honest choice here; the event
/// path does not go through it.
public final class OutputQueue: Sendable {
    public let maxRecords: Int
    public let maxBytes: Int
    /// Largest single payload accepted (`plugins.max_record_bytes`).
    public let maxRecordBytes: Int
    /// Longest topic, and longest publishing plugin name, accepted (bytes). With
    /// `maxRecordBytes` they bound what the Redis publisher must carry for one record.
    public static let maxTopicBytes = 256
    public static let maxNameBytes = 256

    private struct State {
        var records: [OutputRecord] = []
        var head = 0
        var bytes = 0
        var accepted: UInt64 = 0
        var rejected: UInt64 = 0
        /// Publishes refused because the queue was full (a subset of `rejected`).
        var full: UInt64 = 0
        /// Called after each record queued (outside the lock): wakes the sleeping publisher.
        var onPush: (@Sendable () -> Void)?
    }
    private let state = Mutex(State())
    /// Called once, outside the lock, the first time a publish finds the queue full (the host logs
    /// it with the fix; the count on /metrics says how often since).
    private let onFirstFull: (@Sendable (_ records: Int, _ bytes: Int) -> Void)?

    public init(maxRecords: Int = 4096, maxBytes: Int = 8 << 20, maxRecordBytes: Int = 64 << 10,
                onFirstFull: (@Sendable (_ records: Int, _ bytes: Int) -> Void)? = nil) {
        self.maxRecords = maxRecords
        self.maxBytes = maxBytes
        self.maxRecordBytes = maxRecordBytes
        self.onFirstFull = onFirstFull
    }

    /// Why a record was refused.
    public enum Refusal: Error, Equatable { case tooLarge, full }

    /// Queues a record.
    public func push(_ record: OutputRecord) -> Result<Void, Refusal> {
        if record.payload.count > maxRecordBytes || record.topic.utf8.count > Self.maxTopicBytes
            || record.plugin.utf8.count > Self.maxNameBytes {
            state.withLock { $0.rejected += 1 }
            return .failure(.tooLarge)
        }
        let (result, first, held, hook) = state.withLock { s -> (Result<Void, Refusal>, Bool, (Int, Int), (@Sendable () -> Void)?) in
            if s.records.count - s.head >= maxRecords || s.bytes + record.payload.count > maxBytes {
                s.rejected += 1
                s.full += 1
                return (.failure(.full), s.full == 1, (s.records.count - s.head, s.bytes), nil)
            }
            s.records.append(record)
            s.bytes += record.payload.count
            s.accepted += 1
            return (.success(()), false, (0, 0), s.onPush)
        }
        if first { onFirstFull?(held.0, held.1) }
        hook?()
        return result
    }

    /// Sets what runs after each record is queued (the publisher's `ConsumerWakeup.signal`).
    public func setPushHook(_ hook: (@Sendable () -> Void)?) {
        state.withLock { $0.onPush = hook }
    }

    /// Removes and returns up to `max` records, oldest first.
    public func drain(max: Int = .max) -> [OutputRecord] {
        state.withLock { s in
            let n = min(max, s.records.count - s.head)
            let out = Array(s.records[s.head..<(s.head + n)])
            s.head += n
            for r in out { s.bytes -= r.payload.count }
            if s.head == s.records.count {
                s.records.removeAll(keepingCapacity: true)
                s.head = 0
            } else if s.head > 1024 {
                s.records.removeFirst(s.head)
                s.head = 0
            }
            return out
        }
    }

    /// Puts records back at the front (a publisher that could not deliver them).
    public func requeueFront(_ records: [OutputRecord]) {
        guard !records.isEmpty else { return }
        state.withLock { s in
            s.records.replaceSubrange(s.head..<s.head, with: records)
            s.bytes += records.reduce(0) { $0 + $1.payload.count }
        }
    }

    /// Records waiting.
    public var count: Int { state.withLock { $0.records.count - $0.head } }
    /// No record waiting.
    public var isEmpty: Bool { count == 0 }
    /// Records accepted so far.
    public var accepted: UInt64 { state.withLock { $0.accepted } }
    /// Records refused (full or too large) so far.
    public var rejected: UInt64 { state.withLock { $0.rejected } }
    /// Records refused because the queue was full, so far.
    public var fullRefusals: UInt64 { state.withLock { $0.full } }
    /// Payload bytes waiting.
    public var bytes: Int { state.withLock { $0.bytes } }
}
