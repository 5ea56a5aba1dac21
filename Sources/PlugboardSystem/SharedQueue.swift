import CPlugboardSupport

#if canImport(Glibc)
import Glibc
#endif

/// A single-producer, single-consumer queue of variable-length records in a shared memfd: the
/// way back from a worker process (which runs one untrusted plugin) to the host, for publishes,
/// metrics and logs.
///
/// The host creates the queue (`create(capacity:)`), keeps the `Consumer`, and hands the memfd
/// and the consumer's `wakeup` eventfd to the worker, which attaches a `Producer` to them.
///
/// ## Layout
///
///     offset 0      magic (UInt64, `SharedQueue.magic`)      written once by the host
///     offset 8      capacity (UInt64, bytes of data area)    written once by the host
///     offset 64     head (UInt64): bytes ever written        the producer's
///     offset 128    tail (UInt64): bytes ever consumed       the consumer's
///     offset 192    consumerSleeping (UInt32): 1 = waking needed
///     offset 4096   data area: `capacity` bytes, a power of two
///
/// `head` and `tail` count bytes since creation and are never reduced modulo the capacity;
/// a byte's place in the data area is its count `& (capacity - 1)`. Each record is an 8-byte
/// header — payload length (UInt32, little-endian), kind (UInt8), three zero bytes — then the
/// payload, padded to a multiple of 8. A record never crosses the end of the data area: when
/// it would, the producer first writes a *padding record* (kind `SharedQueue.paddingKind`)
/// whose length covers exactly the bytes left to the end, and the record starts at offset 0.
/// So the consumer can hand out each record as one contiguous buffer.
///
/// ## Trust
///
/// The producer is an untrusted process that may write anything anywhere in the mapping, at
/// any time. The consumer therefore keeps its own `tail` and capacity (the copies in the
/// header are for the producer), reads `head` once per drain, reads each record header with
/// one load, checks it against that `head` and the capacity before using it, and copies the
/// payload out of the mapping before the caller sees it (no double fetch). Anything that does
/// not fit the layout makes the queue *corrupt* — for good: the host should end the worker.
/// It never reads outside the mapping, never loops more than once per 8 bytes of capacity,
/// and never traps on the mapping's content.
///
/// The memfd is sealed against shrinking and growing, so the worker cannot truncate it and make
/// the host's next access fault with SIGBUS.
///
/// ## Wakeups
///
/// Pushing costs no system call while the consumer is busy: before sleeping, the consumer
/// sets `consumerSleeping`, fences, and looks once more whether the queue is empty
/// (`Consumer.prepareToSleep()`); after publishing a record, the producer fences and writes
/// the eventfd only when the flag is set, clearing it first, so a burst of records costs one
/// wakeup. A producer that lies about the flag only delays its own records: the host should
/// poll with a timeout, or beside another descriptor that reports the worker's death.
public enum SharedQueue {
    /// `"PBSQueue"` read as a little-endian UInt64: the first 8 bytes of every queue.
    public static let magic: UInt64 = 0x6575_6575_5153_4250
    /// Bytes before the data area (one page: the header).
    public static let headerSize = 4096
    /// The capacity `create` uses when given none: 256 KiB of records.
    public static let defaultCapacity = 256 * 1024
    /// The smallest and largest capacities `create` accepts.
    public static let capacityRange = 4096...(1 << 30)
    /// The kind of a padding record (skipped by the consumer); not available to `push`.
    public static let paddingKind: UInt8 = 0xFF
    /// Bytes of a record header.
    public static let recordHeaderSize = 8

    // Header offsets (bytes); head, tail and the flag each on their own cache line.
    static let magicOffset = 0
    static let capacityOffset = 8
    static let headOffset = 64
    static let tailOffset = 128
    static let sleepingOffset = 192

    /// The largest payload a queue of `capacity` bytes accepts: half the capacity less a
    /// header, so that an empty queue takes any record whatever padding it needs first.
    public static func maximumPayload(capacity: Int) -> Int { capacity / 2 - recordHeaderSize }

    /// Creates a queue: a sealed memfd of `headerSize + capacity` bytes with the header written,
    /// a non-blocking eventfd for wakeups, and the consumer's view.
    ///
    /// Give the worker `memoryFile` and `consumer.wakeup.descriptor` (both are close-on-exec:
    /// pass them explicitly), then close `memoryFile` here; the consumer keeps its mapping.
    /// - Parameter capacity: bytes of records, a power of two in `capacityRange`.
    /// - Throws: `Errno` from `memfd_create`, `ftruncate`, `fcntl(F_ADD_SEALS)`, `mmap` or
    ///   `eventfd`; nothing is left open when it throws.
    public static func create(capacity: Int = defaultCapacity) throws(Errno) -> (memoryFile: FileDescriptor, consumer: Consumer) {
        precondition(capacityRange.contains(capacity) && capacity & (capacity - 1) == 0,
                     "a shared queue's capacity is a power of two in \(capacityRange), not \(capacity)")
        let fd = try MemoryFile.create(name: "plugboard-queue", size: headerSize + capacity)
        do {
            let region = try MappedRegion(fd: fd, count: headerSize + capacity, protection: [.read, .write], shared: true)
            let base = region.baseAddress
            base.storeBytes(of: magic.littleEndian, toByteOffset: magicOffset, as: UInt64.self)
            base.storeBytes(of: UInt64(capacity).littleEndian, toByteOffset: capacityOffset, as: UInt64.self)
            let wakeup = try EventFD()
            return (fd, Consumer(region: region, capacity: capacity, wakeup: wakeup))
        } catch {
            try? fd.close()
            throw error
        }
    }

    /// Bytes a record with `payload` bytes takes: header plus payload, up to a multiple of 8.
    @inline(__always)
    static func recordSize(payload: Int) -> Int { (recordHeaderSize + payload + 7) & ~7 }

    @inline(__always)
    static func word(_ base: UnsafeMutableRawPointer, _ offset: Int) -> UnsafeMutablePointer<UInt64> {
        (base + offset).assumingMemoryBound(to: UInt64.self)
    }

    @inline(__always)
    static func flag(_ base: UnsafeMutableRawPointer) -> UnsafeMutablePointer<UInt32> {
        (base + sleepingOffset).assumingMemoryBound(to: UInt32.self)
    }
}

extension SharedQueue {
    /// What one `drain` did.
    public struct DrainResult: Sendable, Equatable, CustomStringConvertible {
        /// Records handed to the body (padding records are not counted).
        public var records: Int
        /// Why the queue is corrupt, or nil when it is sound. Records before the damage were
        /// still handed out; nothing after it will be.
        public var corruption: String?

        public init(records: Int, corruption: String? = nil) {
            self.records = records
            self.corruption = corruption
        }

        /// True when the producer broke the layout (see `corruption`).
        public var isCorrupt: Bool { corruption != nil }

        public var description: String {
            "\(records) records" + (corruption.map { ", corrupt: \($0)" } ?? "")
        }
    }

    /// The host's side: reads records, treating the whole mapping as hostile. Use it from one
    /// thread at a time (it is not `Sendable`).
    public final class Consumer {
        private let region: MappedRegion
        private let data: UnsafeMutableRawPointer
        /// Bytes of the data area (the host's own copy; the header's is the producer's).
        public let capacity: Int
        private let mask: UInt64
        /// The largest payload a record may have (`maximumPayload(capacity:)`).
        public let maximumPayload: Int
        /// Bytes consumed since creation: the truth, whatever the header's `tail` says now.
        private var tail: UInt64 = 0
        /// Each record's payload is copied here before the body sees it.
        private let scratch: UnsafeMutableRawBufferPointer
        /// Why the queue is corrupt, once it is (then every drain returns it and reads nothing).
        public private(set) var corruption: String?
        /// Readable when the producer has pushed after `prepareToSleep()` returned true. Owned by
        /// the consumer (closed on deinit); give its descriptor to the worker.
        public let wakeup: EventFD

        init(region: MappedRegion, capacity: Int, wakeup: EventFD) {
            self.region = region
            self.data = region.baseAddress + SharedQueue.headerSize
            self.capacity = capacity
            self.mask = UInt64(capacity - 1)
            self.maximumPayload = SharedQueue.maximumPayload(capacity: capacity)
            self.wakeup = wakeup
            self.scratch = .allocate(byteCount: maximumPayload, alignment: 8)
        }

        deinit {
            scratch.deallocate()
            try? wakeup.close()
        }

        /// Hands up to `max` records, oldest first, to `body`, then gives their space back to
        /// the producer. Checks every record against the layout first; the first thing that
        /// does not fit makes the queue corrupt (see `SharedQueue`'s trust section).
        /// - Parameters:
        ///   - max: the most records to hand out (padding records are free).
        ///   - body: called with each record's kind and payload. The payload is a private copy,
        ///     valid only during the call; its bytes are still the untrusted producer's.
        /// - Returns: how many records were handed out, and the corruption if any.
        @discardableResult
        public func drain(max: Int = .max, _ body: (_ kind: UInt8, _ payload: UnsafeRawBufferPointer) -> Void) -> DrainResult {
            if let corruption { return DrainResult(records: 0, corruption: corruption) }
            let base = region.baseAddress
            let magic = UInt64(littleEndian: pbs_load_relaxed_u64(SharedQueue.word(base, SharedQueue.magicOffset)))
            let declared = UInt64(littleEndian: pbs_load_relaxed_u64(SharedQueue.word(base, SharedQueue.capacityOffset)))
            guard magic == SharedQueue.magic, declared == UInt64(capacity) else {
                return fail(0, "the header was overwritten: magic \(hex(magic)), capacity \(declared) " +
                               "(expected \(hex(SharedQueue.magic)), \(capacity))")
            }
            let head = pbs_load_acquire_u64(SharedQueue.word(base, SharedQueue.headOffset))
            let used = head &- tail
            guard used <= UInt64(capacity) else {
                return fail(0, "head \(head) is \(Int64(bitPattern: used)) bytes from tail \(tail), " +
                               "outside the \(capacity)-byte capacity")
            }
            var records = 0
            while records < max && tail != head {
                let available = Int(head &- tail)
                let offset = Int(tail & mask)
                guard available >= SharedQueue.recordHeaderSize else {
                    return fail(records, "only \(available) bytes between tail \(tail) and head \(head): " +
                                         "not even a record header")
                }
                // One load: the producer may change the header between two.
                let header = UInt64(littleEndian: pbs_load_relaxed_u64(SharedQueue.word(data, offset)))
                let length = Int(header & 0xFFFF_FFFF)
                let kind = UInt8(truncatingIfNeeded: header >> 32)
                guard header >> 40 == 0 else {
                    return fail(records, "the record header at offset \(offset) has non-zero reserved bytes (\(hex(header)))")
                }
                if kind == SharedQueue.paddingKind {
                    let toEnd = capacity - offset
                    guard length == toEnd - SharedQueue.recordHeaderSize else {
                        return fail(records, "a padding record at offset \(offset) of \(length) bytes, " +
                                             "where exactly \(toEnd - SharedQueue.recordHeaderSize) reach the end of the ring")
                    }
                    guard toEnd <= available else {
                        return fail(records, "a padding record at offset \(offset) runs \(toEnd) bytes, past head (\(available) bytes)")
                    }
                    tail &+= UInt64(toEnd)
                    continue
                }
                guard length <= maximumPayload else {
                    return fail(records, "a record at offset \(offset) claims \(length) bytes, more than the " +
                                         "largest record (\(maximumPayload) bytes)")
                }
                let size = SharedQueue.recordSize(payload: length)
                guard size <= available else {
                    return fail(records, "a record at offset \(offset) of \(size) bytes overruns head " +
                                         "(\(available) bytes written)")
                }
                guard offset + size <= capacity else {
                    return fail(records, "a record at offset \(offset) of \(size) bytes crosses the end of the " +
                                         "\(capacity)-byte ring without padding")
                }
                scratch.baseAddress!.copyMemory(from: data + offset + SharedQueue.recordHeaderSize, byteCount: length)
                body(kind, UnsafeRawBufferPointer(start: scratch.baseAddress, count: length))
                tail &+= UInt64(size)
                records += 1
            }
            pbs_store_release_u64(SharedQueue.word(base, SharedQueue.tailOffset), tail)
            return DrainResult(records: records)
        }

        /// Call before sleeping on `wakeup`: sets `consumerSleeping`, fences, and looks again.
        /// - Returns: true when the queue is still empty (sleep now: the producer will write
        ///   the eventfd); false when records came in (the flag is cleared: drain instead).
        ///   False too when the queue is corrupt, so the next drain reports it.
        public func prepareToSleep() -> Bool {
            guard corruption == nil else { return false }
            let base = region.baseAddress
            pbs_store_release_u32(SharedQueue.flag(base), 1)
            pbs_fence_seqcst()
            if pbs_load_seqcst_u64(SharedQueue.word(base, SharedQueue.headOffset)) == tail { return true }
            pbs_store_release_u32(SharedQueue.flag(base), 0)
            return false
        }

        /// Call after waking (the eventfd was readable, or the poll timed out): clears
        /// `consumerSleeping` and resets the eventfd, so the producer stops writing it.
        public func awake() {
            pbs_store_release_u32(SharedQueue.flag(region.baseAddress), 0)
            _ = try? wakeup.drain()
        }

        /// Sleeps until the producer pushes or `timeoutMilliseconds` pass (-1: no limit), with
        /// the protocol above: `prepareToSleep()`, `poll` on `wakeup`, `awake()`. For a consumer
        /// that waits on nothing else; a host loop polling many descriptors calls the two itself.
        /// - Returns: true when there may be records (woken, or they came before sleeping),
        ///   false on timeout.
        /// - Throws: `Errno` from `poll`.
        @discardableResult
        public func wait(timeoutMilliseconds: Int32) throws(Errno) -> Bool {
            guard prepareToSleep() else { return true }
            defer { awake() }
            var fds = [Poll.readable(wakeup.rawValue)]
            return try Poll.wait(&fds, timeoutMilliseconds: timeoutMilliseconds) > 0
        }

        private func fail(_ records: Int, _ reason: String) -> DrainResult {
            corruption = reason
            pbs_store_release_u64(SharedQueue.word(region.baseAddress, SharedQueue.tailOffset), tail)
            return DrainResult(records: records, corruption: reason)
        }
    }
}

extension SharedQueue {
    /// The worker's side: appends records without blocking. Use it from one thread at a time
    /// (it is not `Sendable`); it trusts nothing the consumer could not have written either,
    /// so a scribbled `tail` only makes it refuse records.
    public final class Producer {
        private let region: MappedRegion
        private let data: UnsafeMutableRawPointer
        /// Bytes of the data area, from the header (checked against the file's size).
        public let capacity: Int
        private let mask: UInt64
        /// The largest payload `push` accepts (`maximumPayload(capacity:)`).
        public let maximumPayload: Int
        /// Bytes written since creation: the producer's own truth, published as `head`.
        private var head: UInt64
        private let wakeup: EventFD
        /// Times `push` wrote the eventfd (the consumer was asleep): for metrics and tests.
        public private(set) var wakeupsSent = 0

        /// Maps the queue in `memoryFile` (from `SharedQueue.create`, passed to this process)
        /// and will write `wakeup` (the consumer's) when the consumer sleeps. Neither is closed
        /// by the producer.
        ///
        /// Checks the file's size (`fstat`) before mapping it, and the header's magic and
        /// capacity against it after, so a short or foreign file is an error, not a SIGBUS.
        /// - Throws: `Errno` with call `mmap` and code `EINVAL` (with a detail) when the file is
        ///   not a queue, or what `fstat`/`mmap` report.
        public init(attaching memoryFile: FileDescriptor, wakeup: EventFD) throws(Errno) {
            let size = try memoryFile.status().size
            guard size > SharedQueue.headerSize else {
                throw Errno(code: EINVAL, call: "mmap", path: memoryFile.path,
                            detail: "the file is \(size) bytes, too short for a shared queue (header \(SharedQueue.headerSize) bytes)")
            }
            let region = try MappedRegion(fd: memoryFile, count: size, protection: [.read, .write], shared: true)
            let base = region.baseAddress
            let magic = UInt64(littleEndian: pbs_load_relaxed_u64(SharedQueue.word(base, SharedQueue.magicOffset)))
            let declared = UInt64(littleEndian: pbs_load_relaxed_u64(SharedQueue.word(base, SharedQueue.capacityOffset)))
            guard magic == SharedQueue.magic else {
                throw Errno(code: EINVAL, call: "mmap", path: memoryFile.path,
                            detail: "not a shared queue: magic \(hex(magic)), expected \(hex(SharedQueue.magic))")
            }
            guard declared == UInt64(size - SharedQueue.headerSize), SharedQueue.capacityRange.contains(Int(declared)),
                  declared & (declared - 1) == 0 else {
                throw Errno(code: EINVAL, call: "mmap", path: memoryFile.path,
                            detail: "the header says \(declared) bytes of records, the file holds \(size - SharedQueue.headerSize)")
            }
            self.region = region
            self.data = base + SharedQueue.headerSize
            self.capacity = Int(declared)
            self.mask = declared - 1
            self.maximumPayload = SharedQueue.maximumPayload(capacity: capacity)
            self.head = pbs_load_acquire_u64(SharedQueue.word(base, SharedQueue.headOffset))
            self.wakeup = wakeup
        }

        /// Appends one record whose payload is `parts`, one after the other; never blocks.
        /// Writes the eventfd only when the consumer said it sleeps.
        /// - Parameters:
        ///   - kind: the caller's record type; any value but `SharedQueue.paddingKind`.
        ///   - parts: the payload's pieces (e.g. a topic and the data), `maximumPayload` bytes
        ///     in all at most.
        /// - Returns: false, writing nothing, when the queue has no room (the caller counts the
        ///   record as refused) or the payload is larger than `maximumPayload`.
        @discardableResult
        public func push(kind: UInt8, _ parts: UnsafeRawBufferPointer...) -> Bool {
            precondition(kind != SharedQueue.paddingKind, "kind \(SharedQueue.paddingKind) marks padding records")
            var length = 0
            for part in parts { length += part.count }
            guard length <= maximumPayload else { return false }
            let size = SharedQueue.recordSize(payload: length)
            let base = region.baseAddress
            let tail = pbs_load_acquire_u64(SharedQueue.word(base, SharedQueue.tailOffset))
            let used = head &- tail
            // A scribbled tail or head (this process's own doing): refuse rather than overwrite
            // unread records or write a header across the end of the mapping.
            guard used <= UInt64(capacity), head & 7 == 0 else { return false }
            let free = capacity - Int(used)
            var offset = Int(head & mask)
            let toEnd = capacity - offset
            let padding = size > toEnd ? toEnd : 0
            guard padding + size <= free else { return false }
            if padding > 0 {
                writeHeader(at: offset, length: toEnd - SharedQueue.recordHeaderSize, kind: SharedQueue.paddingKind)
                offset = 0
            }
            writeHeader(at: offset, length: length, kind: kind)
            var at = data + offset + SharedQueue.recordHeaderSize
            for part in parts where part.count > 0 {
                at.copyMemory(from: part.baseAddress!, byteCount: part.count)
                at += part.count
            }
            head &+= UInt64(padding + size)
            pbs_store_release_u64(SharedQueue.word(base, SharedQueue.headOffset), head)
            // Dekker with prepareToSleep(): either the consumer sees this head, or we see its flag.
            pbs_fence_seqcst()
            if pbs_load_seqcst_u32(SharedQueue.flag(base)) != 0 {
                pbs_store_release_u32(SharedQueue.flag(base), 0)
                try? wakeup.signal()
                wakeupsSent += 1
            }
            return true
        }

        @inline(__always)
        private func writeHeader(at offset: Int, length: Int, kind: UInt8) {
            let header = UInt64(UInt32(length)) | UInt64(kind) << 32
            (data + offset).storeBytes(of: header.littleEndian, as: UInt64.self)
        }
    }
}

extension EventFD {
    /// An eventfd this process received from another (inherited, or passed over a socket):
    /// for `SharedQueue.Producer` in a worker process.
    public init(adopting descriptor: FileDescriptor) {
        self.descriptor = descriptor
    }
}

private func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
