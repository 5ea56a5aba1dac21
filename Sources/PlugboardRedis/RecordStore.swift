import CPlugboard

/// A byte ring allocated once: the publisher's window of unacknowledged commands and its spill
/// buffer are ranges of it. Records are variable-sized (an event takes its `total_size`, typically
/// a few hundred bytes, not a whole 2 KiB ring slot), 16-byte aligned, each behind a 16-byte header.
///
/// Positions are byte offsets that only grow (`position % capacity` is where the bytes are). The
/// owner keeps three of them, `acked <= sent <= stored`, and walks them forward with `next(after:)`.
/// A record never wraps: when it does not fit before the end, a skip marker sends readers to the start.
///
/// Header: the payload length (UInt32), the record's `RecordFlags` (one byte at offset 4), and the
/// epoch its Redis IDs were first sent with (UInt64 at offset 8; 0 until sent), so a replay
/// repeats exactly the IDs of the first send.
final class RecordStore {
    static let headerSize = 16
    private static let skipMarker: UInt32 = 0xffff_ffff

    let capacity: Int
    let base: UnsafeMutableRawPointer
    /// The memory is the store's own (freed with it), or a state file's mapping (`StateFile`).
    private let owned: Bool

    /// - Parameter capacity: bytes; rounded up to a multiple of 16, at least 4 KiB.
    init(capacity: Int) {
        self.capacity = RecordStore.roundedCapacity(capacity)
        base = .allocate(byteCount: self.capacity, alignment: 16)
        owned = true
    }

    /// A store in memory someone else owns and keeps mapped for the store's lifetime: a state
    /// file's data area (docs/redis.md, "Crash safety"). `capacity` must be rounded already.
    init(mapped base: UnsafeMutableRawPointer, capacity: Int) {
        precondition(capacity == RecordStore.roundedCapacity(capacity))
        self.capacity = capacity
        self.base = base
        owned = false
    }

    static func roundedCapacity(_ n: Int) -> Int { (max(n, 4096) + 15) & ~15 }

    deinit { if owned { base.deallocate() } }

    /// Walks the records from `from` to `to`, as `record(at:)` would, but trusting nothing: every
    /// length is checked by `valid` and against the store's end, and exactly `count` records must
    /// end exactly at `to`. For a state file left by a previous run. Returns why not, or nil.
    func verify(from: UInt64, to: UInt64, count: UInt64, valid: (UnsafeRawPointer, Int) -> Bool) -> String? {
        guard from <= to, to - from <= UInt64(capacity) else { return "its positions \(from)...\(to) do not fit its \(capacity) bytes" }
        var at = from
        var n: UInt64 = 0
        while at < to {
            guard n < count else { return "it holds more records than the \(count) its header counts" }
            var offset = Int(at % UInt64(capacity))
            guard offset % 16 == 0, capacity - offset >= RecordStore.headerSize else { return "a record at \(at) is misaligned" }
            if (base + offset).load(as: UInt32.self) == RecordStore.skipMarker {
                at += UInt64(capacity - offset)
                offset = 0
                guard at < to else { return "a wrap marker at the end of its records" }
            }
            let length = Int((base + offset).load(as: UInt32.self))
            let size = RecordStore.footprint(length)
            guard length > 0, offset + size <= capacity, at + UInt64(size) <= to,
                  valid(UnsafeRawPointer(base + offset + RecordStore.headerSize), length) else {
                return "the record at byte \(at) (\(length) bytes) is not sound"
            }
            at += UInt64(size)
            n += 1
        }
        guard n == count, at == to else { return "its records do not end where its header says (\(n) of \(count) records)" }
        return nil
    }

    @inline(__always) private static func footprint(_ length: Int) -> Int {
        (headerSize + length + 15) & ~15
    }

    /// Reserves room for a record of `length` bytes written at `stored`, given the oldest record
    /// still needed starts at `acked`. Returns where its payload goes and the new `stored`, or nil
    /// when the ring is full.
    @inline(__always)
    func reserve(length: Int, stored: UInt64, acked: UInt64) -> (payload: UnsafeMutableRawPointer, newStored: UInt64)? {
        let size = RecordStore.footprint(length)
        guard size <= capacity else { return nil }
        var at = stored
        let offset = Int(at % UInt64(capacity))
        if offset + size > capacity {
            // Does not fit before the end: mark the tail as skipped and start at the next lap.
            at += UInt64(capacity - offset)
        }
        guard at + UInt64(size) - acked <= UInt64(capacity) else { return nil }
        if at != stored {
            (base + offset).storeBytes(of: RecordStore.skipMarker, as: UInt32.self)
        }
        let p = base + Int(at % UInt64(capacity))
        p.storeBytes(of: UInt32(length), as: UInt32.self)
        p.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: UInt64(0), toByteOffset: 8, as: UInt64.self)
        return (p + RecordStore.headerSize, at + UInt64(size))
    }

    /// The record at `position` (skipping a wrap marker): its payload, its length and the position
    /// of the record after it. Only valid for positions in `[acked, stored)`.
    @inline(__always)
    func record(at position: UInt64) -> (payload: UnsafeRawPointer, length: Int, next: UInt64) {
        var at = position
        var p = base + Int(at % UInt64(capacity))
        if p.load(as: UInt32.self) == RecordStore.skipMarker {
            at += UInt64(capacity) - at % UInt64(capacity)
            p = base + Int(at % UInt64(capacity))
        }
        let length = Int(p.load(as: UInt32.self))
        return (UnsafeRawPointer(p + RecordStore.headerSize), length, at + UInt64(RecordStore.footprint(length)))
    }

    /// The flags of the record whose payload is `payload`.
    @inline(__always)
    static func flags(_ payload: UnsafeRawPointer) -> RecordFlags {
        RecordFlags(rawValue: payload.load(fromByteOffset: 4 - headerSize, as: UInt8.self))
    }

    @inline(__always)
    static func setFlags(_ payload: UnsafeRawPointer, _ flags: RecordFlags) {
        UnsafeMutableRawPointer(mutating: payload).storeBytes(of: flags.rawValue, toByteOffset: 4 - headerSize, as: UInt8.self)
    }

    /// The epoch the record's IDs were first sent with; 0 before its first send.
    @inline(__always)
    static func epoch(_ payload: UnsafeRawPointer) -> UInt64 {
        payload.load(fromByteOffset: 8 - headerSize, as: UInt64.self)
    }

    @inline(__always)
    static func setEpoch(_ payload: UnsafeRawPointer, _ epoch: UInt64) {
        UnsafeMutableRawPointer(mutating: payload).storeBytes(of: epoch, toByteOffset: 8 - headerSize, as: UInt64.self)
    }

    /// Copies one event (its `total_size` bytes, clamped to a valid event). Returns the new `stored`.
    @inline(__always)
    func storeEvent(_ e: UnsafePointer<pb_event>, stored: UInt64, acked: UInt64) -> UInt64? {
        let n = min(max(Int(e.pointee.total_size), MemoryLayout<pb_event>.size), Int(PB_EVENT_MAX_SIZE))
        guard let (payload, next) = reserve(length: n, stored: stored, acked: acked) else { return nil }
        payload.copyMemory(from: e, byteCount: n)
        return next
    }
}

/// What the publisher knows of one record (docs/redis.md, "Exactly once").
struct RecordFlags: OptionSet {
    let rawValue: UInt8
    /// Its XADD needs no more sending: applied, a true duplicate of a replay, or refused for good.
    static let streamSettled = RecordFlags(rawValue: 1)
    /// Its PUBLISH needs no more sending (mode publish or both).
    static let channelSettled = RecordFlags(rawValue: 2)
    /// Redis refused a part of it for good (counted in `rejected`, not `published`).
    static let refused = RecordFlags(rawValue: 4)
    /// The original of a reissued record: settled, counted through its copy.
    static let moved = RecordFlags(rawValue: 32)
}

/// One plugin output record in a `RecordStore`: a 16-byte header, then the plugin name, the topic
/// and the payload back to back.
struct PluginRecord {
    static let headerSize = 16
    var sequence: UInt64
    var name: (UnsafePointer<CChar>, Int)
    var topic: (UnsafePointer<CChar>, Int)
    var data: (UnsafePointer<CChar>, Int)

    static func size(name: Int, topic: Int, data: Int) -> Int { headerSize + name + topic + data }

    static func write(into slot: UnsafeMutableRawPointer, sequence: UInt64,
                      name: UnsafeRawBufferPointer, topic: UnsafeRawBufferPointer, data: UnsafeRawBufferPointer) {
        slot.storeBytes(of: sequence, as: UInt64.self)
        slot.storeBytes(of: UInt16(name.count), toByteOffset: 8, as: UInt16.self)
        slot.storeBytes(of: UInt16(topic.count), toByteOffset: 10, as: UInt16.self)
        slot.storeBytes(of: UInt32(data.count), toByteOffset: 12, as: UInt32.self)
        var at = headerSize
        func put(_ part: UnsafeRawBufferPointer) {
            if let base = part.baseAddress, part.count > 0 { (slot + at).copyMemory(from: base, byteCount: part.count) }
            at += part.count
        }
        put(name)
        put(topic)
        put(data)
    }

    init(reading slot: UnsafeRawPointer) {
        sequence = slot.load(as: UInt64.self)
        let n = Int(slot.load(fromByteOffset: 8, as: UInt16.self))
        let t = Int(slot.load(fromByteOffset: 10, as: UInt16.self))
        let d = Int(slot.load(fromByteOffset: 12, as: UInt32.self))
        let p = (slot + PluginRecord.headerSize).assumingMemoryBound(to: CChar.self)
        name = (p, n)
        topic = (p + n, t)
        data = (p + n + t, d)
    }
}
