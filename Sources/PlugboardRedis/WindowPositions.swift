/// Where the publisher stands in one `RecordStore`: four positions that split the records
/// into what is settled, answered, in flight and waiting (docs/redis.md, "Exactly once").
///
///     acked <= read <= sent <= stored
///
/// - `[acked, read)`: answered, kept only because an older record is not settled yet (a retryable error).
/// - `[read, sent)`: commands sent, replies not read yet (the window in flight).
/// - `[sent, stored)`: waiting to be sent: the next pipeline while connected, the spill buffer while
///   Redis is down.
///
/// Each position is a byte offset into the store (offsets only grow; see `RecordStore`) and the
/// number of records before it. Invariants, checked with `precondition` after every move:
/// the order above holds for bytes and for counts, and two positions have equal bytes exactly
/// when they have equal counts (every record takes at least a header's bytes). A broken
/// invariant would make the publisher read a record that is not there, so it stops the process.
struct WindowPositions: Equatable {
    /// One position: the byte offset of a record boundary and the number of records before it.
    struct Position: Equatable {
        var byte: UInt64 = 0
        var count: UInt64 = 0
    }

    private(set) var acked = Position()
    private(set) var read = Position()
    private(set) var sent = Position()
    private(set) var stored = Position()

    /// Records held: not settled, or behind one that is not (window + spill).
    var unsettled: UInt64 { stored.count - acked.count }
    /// Records sent and not acknowledged, replayed after a reconnect.
    var unacknowledgedSent: UInt64 { sent.count - acked.count }
    /// Records stored and not sent yet.
    var unsent: UInt64 { stored.count - sent.count }
    /// Records answered but not acknowledged yet (the ack pointer may move up to `read`).
    var hasAnsweredUnacked: Bool { acked.count < read.count }
    /// Bytes of the store in use, from the oldest record needed to the end of the newest.
    var bytesInUse: UInt64 { stored.byte - acked.byte }

    init() {}

    /// A window read back from a state file: nothing in flight, `[acked, stored)` to be sent
    /// (records already settled are skipped by their flags).
    init(acked: Position, stored: Position) {
        self.acked = acked
        read = acked
        sent = acked
        self.stored = stored
        check()
    }

    /// A record was stored at `stored`; the next one goes at `next`.
    mutating func didStore(next: UInt64) {
        stored = Position(byte: next, count: stored.count + 1)
        check()
    }

    /// Forgets the records stored after `position` (a batch torn by the ring's producer); nothing
    /// of them may have been sent.
    mutating func dropStored(after position: Position) {
        stored = position
        check()
    }

    /// `count` records from `sent` were queued for the socket; the one after them starts at `next`.
    mutating func didSend(count: UInt64, next: UInt64) {
        sent = Position(byte: next, count: sent.count + count)
        check()
    }

    /// The replies of the record at `read` were read; the next record starts at `next`.
    mutating func didRead(next: UInt64) {
        read = Position(byte: next, count: read.count + 1)
        check()
    }

    /// The record at `acked` is settled; the oldest record still needed starts at `next`.
    mutating func didAck(next: UInt64) {
        acked = Position(byte: next, count: acked.count + 1)
        check()
    }

    /// After a reconnect: nothing is in flight, and every unacknowledged record is sent again
    /// (settled ones are skipped by their flags).
    mutating func rewindToAcked() {
        sent = acked
        read = acked
        check()
    }

    private func check() {
        precondition(Self.ordered(acked, read) && Self.ordered(read, sent) && Self.ordered(sent, stored),
                     "publisher window out of order: \(self)")
    }

    /// `a <= b` in bytes and in counts, and equal bytes exactly when equal counts.
    private static func ordered(_ a: Position, _ b: Position) -> Bool {
        a.byte <= b.byte && a.count <= b.count && (a.byte == b.byte) == (a.count == b.count)
    }
}
