import CPlugboardSupport
import Foundation
import Synchronization
import Testing
@testable import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

// The producer here is a second mapping of the same memfd in this process (MAP_SHARED: the
// same pages a worker process would map). No test forks: fork is unsafe in a test process with
// threads, and no helper executable links PlugboardSystem yet, so the cross-process case is
// left to the worker tests.

@Suite("SharedQueue")
struct SharedQueueTests {
    /// A queue with its producer attached through the memfd, as a worker would.
    struct Pair {
        let memoryFile: FileDescriptor
        let consumer: SharedQueue.Consumer
        let producer: SharedQueue.Producer

        init(capacity: Int = 4096) throws {
            let (fd, consumer) = try SharedQueue.create(capacity: capacity)
            memoryFile = fd
            self.consumer = consumer
            producer = try SharedQueue.Producer(attaching: fd, wakeup: consumer.wakeup)
        }

        /// A third mapping, for a test playing the hostile producer.
        func scribbler() throws -> MappedRegion {
            try MappedRegion(fd: memoryFile, count: try memoryFile.status().size, protection: [.read, .write], shared: true)
        }

        /// Pushes `bytes`, cut in two at `split` when given (a multi-part record).
        @discardableResult
        func push(kind: UInt8, _ bytes: [UInt8], split: Int? = nil) -> Bool {
            bytes.withUnsafeBytes { raw in
                if let split {
                    return producer.push(kind: kind, UnsafeRawBufferPointer(rebasing: raw[..<split]),
                                         UnsafeRawBufferPointer(rebasing: raw[split...]))
                }
                return producer.push(kind: kind, raw)
            }
        }

        func drain(max: Int = .max) -> (records: [Record], result: SharedQueue.DrainResult) {
            var records: [Record] = []
            let result = consumer.drain(max: max) { kind, payload in records.append(Record(kind: kind, bytes: Array(payload))) }
            return (records, result)
        }
    }

    struct Record: Equatable, CustomStringConvertible {
        var kind: UInt8
        var bytes: [UInt8]
        var description: String { "kind \(kind), \(bytes.count) bytes" }
    }

    /// Deterministic payload bytes for record number `index`.
    static func payload(_ index: Int, length: Int) -> [UInt8] {
        (0..<length).map { UInt8(truncatingIfNeeded: index &* 131 &+ $0 &* 7 &+ 1) }
    }

    // MARK: Round trips

    @Test func recordsOfVaryingSizesRoundTripInOrderAcrossManyWrapArounds() throws {
        let q = try Pair(capacity: 4096)
        var rng = SplitMix64(seed: 7)
        var sent: [Record] = []
        var received: [Record] = []
        var bytesPushed = 0
        var index = 0
        while bytesPushed < 60 * q.producer.capacity {
            // Fill until refused, with lengths from 0 to the largest, some in two parts.
            while true {
                let length = rng.next() % 4 == 0 ? Int(rng.next() % UInt64(q.producer.maximumPayload + 1)) : Int(rng.next() % 200)
                let record = Record(kind: UInt8(index % 255), bytes: Self.payload(index, length: length))
                let split = length > 1 && rng.next() % 2 == 0 ? Int(rng.next() % UInt64(length)) : nil
                guard q.push(kind: record.kind, record.bytes, split: split) else { break }
                sent.append(record)
                bytesPushed += SharedQueue.recordSize(payload: length)
                index += 1
            }
            let (records, result) = q.drain(max: 1 + Int(rng.next() % 40))
            #expect(!result.isCorrupt, "\(result)")
            #expect(result.records == records.count)
            received += records
            if result.isCorrupt { break }   // nothing will be drained again: the pushes would be refused forever
        }
        received += q.drain().records
        #expect(received.count == sent.count)
        #expect(received == sent)
        #expect(sent.count > 200)
    }

    @Test func aFullQueueRefusesWithoutLosingWhatItAccepted() throws {
        let q = try Pair(capacity: 4096)
        var accepted = 0
        while q.push(kind: 1, Self.payload(accepted, length: 100)) { accepted += 1 }
        #expect(accepted == 4096 / SharedQueue.recordSize(payload: 100))
        #expect(!q.push(kind: 1, Self.payload(99, length: 100)))
        let (records, result) = q.drain()
        #expect(result == SharedQueue.DrainResult(records: accepted))
        #expect(records == (0..<accepted).map { Record(kind: 1, bytes: Self.payload($0, length: 100)) })
        #expect(q.push(kind: 2, [1, 2, 3]), "the space is given back after a drain")
        #expect(q.drain().records == [Record(kind: 2, bytes: [1, 2, 3])])
    }

    @Test func theLargestRecordFitsAnEmptyQueueWhereverTheRingStandsAndALargerOneIsRefused() throws {
        let q = try Pair(capacity: 4096)
        let largest = q.producer.maximumPayload
        #expect(largest == 2040)
        for shift in stride(from: 0, through: 4096, by: 8 * 37) {
            #expect(q.push(kind: 3, Self.payload(shift, length: shift % 2000)))   // moves head and tail along
            _ = q.drain()
            #expect(!q.push(kind: 4, Self.payload(0, length: largest + 1)))
            #expect(q.push(kind: 4, Self.payload(shift, length: largest)), "at offset \(shift)")
            let (records, result) = q.drain()
            #expect(!result.isCorrupt && records == [Record(kind: 4, bytes: Self.payload(shift, length: largest))])
        }
    }

    // MARK: A hostile producer

    /// Writes a record header (length, kind, reserved) at data offset `offset`.
    static func writeHeader(_ region: MappedRegion, offset: Int, length: UInt32, kind: UInt8, reserved: UInt32 = 0) {
        let header = UInt64(length) | UInt64(kind) << 32 | UInt64(reserved) << 40
        region.baseAddress.storeBytes(of: header.littleEndian, toByteOffset: SharedQueue.headerSize + offset, as: UInt64.self)
    }

    static func setHead(_ region: MappedRegion, _ head: UInt64) {
        region.baseAddress.storeBytes(of: head, toByteOffset: SharedQueue.headOffset, as: UInt64.self)
    }

    @Test func aHeadFarAheadOfTailIsCorruptAndNothingIsRead() throws {
        let q = try Pair(capacity: 4096)
        let raw = try q.scribbler()
        Self.setHead(raw, 4096 * 4)
        var called = 0
        let result = q.consumer.drain { _, _ in called += 1 }
        #expect(called == 0 && result.records == 0)
        #expect(result.corruption == "head 16384 is 16384 bytes from tail 0, outside the 4096-byte capacity")
    }

    @Test func aHeadBehindTailIsCorrupt() throws {
        let q = try Pair(capacity: 4096)
        q.push(kind: 1, [1])
        _ = q.drain()
        Self.setHead(try q.scribbler(), 0)
        #expect(q.drain().result.corruption == "head 0 is -16 bytes from tail 16, outside the 4096-byte capacity")
    }

    @Test func aRecordLengthLargerThanTheCapacityIsCorrupt() throws {
        let q = try Pair(capacity: 4096)
        let raw = try q.scribbler()
        Self.writeHeader(raw, offset: 0, length: 1 << 30, kind: 1)
        Self.setHead(raw, 16)
        let result = q.drain().result
        #expect(result.corruption == "a record at offset 0 claims 1073741824 bytes, more than the largest record (2040 bytes)")
    }

    @Test func aRecordLengthThatOverrunsHeadIsCorrupt() throws {
        let q = try Pair(capacity: 4096)
        let raw = try q.scribbler()
        Self.writeHeader(raw, offset: 0, length: 100, kind: 1)
        Self.setHead(raw, 16)
        #expect(q.drain().result.corruption == "a record at offset 0 of 112 bytes overruns head (16 bytes written)")
    }

    @Test func aHeadInsideARecordHeaderIsCorrupt() throws {
        let q = try Pair(capacity: 4096)
        Self.setHead(try q.scribbler(), 5)
        #expect(q.drain().result.corruption == "only 5 bytes between tail 0 and head 5: not even a record header")
    }

    @Test func aPaddingRecordThatDoesNotReachTheEndOfTheRingIsCorrupt() throws {
        let q = try Pair(capacity: 4096)
        let raw = try q.scribbler()
        Self.writeHeader(raw, offset: 0, length: 8, kind: SharedQueue.paddingKind)
        Self.setHead(raw, 16)
        #expect(q.drain().result.corruption ==
                "a padding record at offset 0 of 8 bytes, where exactly 4088 reach the end of the ring")
    }

    @Test func aPaddingRecordPastHeadIsCorrupt() throws {
        let q = try Pair(capacity: 4096)
        let raw = try q.scribbler()
        Self.writeHeader(raw, offset: 0, length: 4088, kind: SharedQueue.paddingKind)
        Self.setHead(raw, 16)
        #expect(q.drain().result.corruption == "a padding record at offset 0 runs 4096 bytes, past head (16 bytes)")
    }

    @Test func nonZeroReservedBytesAreCorrupt() throws {
        let q = try Pair(capacity: 4096)
        let raw = try q.scribbler()
        Self.writeHeader(raw, offset: 0, length: 0, kind: 1, reserved: 1)
        Self.setHead(raw, 8)
        #expect(q.drain().result.corruption == "the record header at offset 0 has non-zero reserved bytes (0x10100000000)")
    }

    @Test func anOverwrittenMagicOrCapacityIsCorrupt() throws {
        let q = try Pair(capacity: 4096)
        let raw = try q.scribbler()
        raw.baseAddress.storeBytes(of: UInt64(1 << 20), toByteOffset: SharedQueue.capacityOffset, as: UInt64.self)
        #expect(q.drain().result.corruption ==
                "the header was overwritten: magic 0x6575657551534250, capacity 1048576 (expected 0x6575657551534250, 4096)")
    }

    @Test func recordsBeforeTheDamageAreDeliveredAndCorruptionIsForGood() throws {
        let q = try Pair(capacity: 4096)
        for i in 0..<3 { q.push(kind: 1, Self.payload(i, length: 10)) }
        let raw = try q.scribbler()
        Self.writeHeader(raw, offset: 3 * 24, length: 5000, kind: 1)
        Self.setHead(raw, 3 * 24 + 16)
        let first = q.drain()
        #expect(first.records == (0..<3).map { Record(kind: 1, bytes: Self.payload($0, length: 10)) })
        #expect(first.result.records == 3 && first.result.isCorrupt)
        // Repairing the header does not make the consumer trust the queue again.
        Self.writeHeader(raw, offset: 3 * 24, length: 0, kind: 1)
        let second = q.drain()
        #expect(second.records.isEmpty && second.result.corruption == first.result.corruption)
        #expect(q.consumer.corruption == first.result.corruption)
        #expect(!q.consumer.prepareToSleep(), "a corrupt queue is not slept on")
    }

    @Test func randomBytesOverTheDataAreaAndHeadNeverCrashTheConsumer() throws {
        var rng = SplitMix64(seed: 42)
        var corrupt = 0
        for round in 0..<300 {
            let q = try Pair(capacity: 4096)
            let raw = try q.scribbler()
            // Some rounds start from real records, so that part of what the consumer reads parses.
            for i in 0..<Int(rng.next() % 20) { q.push(kind: UInt8(i), Self.payload(i, length: Int(rng.next() % 300))) }
            let data = raw.baseAddress + SharedQueue.headerSize
            for _ in 0..<(round % 3 == 0 ? 4096 / 8 : Int(rng.next() % 8)) {
                (data + Int(rng.next() % 512) * 8).storeBytes(of: rng.next(), as: UInt64.self)
            }
            switch rng.next() % 4 {
            case 0: Self.setHead(raw, rng.next())
            case 1: Self.setHead(raw, rng.next() % 8192)
            default: break
            }
            var delivered = 0
            var largest = 0
            let result = q.consumer.drain { _, payload in
                delivered += 1
                largest = max(largest, payload.count)
            }
            #expect(result.records == delivered && delivered <= 4096 / 8)
            #expect(largest <= q.consumer.maximumPayload)
            if result.isCorrupt { corrupt += 1 }
        }
        #expect(corrupt > 50, "random bytes are found corrupt (\(corrupt) of 300 rounds)")
    }

    // MARK: Attaching

    @Test func attachingAFileTooShortForAQueueThrowsInsteadOfFaulting() throws {
        let fd = try MemoryFile.create(name: "pbsys-short", size: 100)
        let wakeup = try EventFD()
        defer { try? fd.close(); try? wakeup.close() }
        let e = thrownErrno { try SharedQueue.Producer(attaching: fd, wakeup: wakeup) }
        #expect(e?.code == EINVAL && e?.call == "mmap")
        #expect(e?.detail == "the file is 100 bytes, too short for a shared queue (header 4096 bytes)")
    }

    @Test func aHeaderClaimingMoreThanTheFileHoldsIsRefused() throws {
        let (fd, consumer) = try SharedQueue.create(capacity: 4096)
        defer { try? fd.close() }
        let raw = try MappedRegion(fd: fd, count: 8192, protection: [.read, .write], shared: true)
        raw.baseAddress.storeBytes(of: UInt64(1 << 20), toByteOffset: SharedQueue.capacityOffset, as: UInt64.self)
        let e = thrownErrno { try SharedQueue.Producer(attaching: fd, wakeup: consumer.wakeup) }
        #expect(e?.code == EINVAL && e?.detail == "the header says 1048576 bytes of records, the file holds 4096")
    }

    @Test func aFileThatIsNotAQueueIsRefused() throws {
        let fd = try MemoryFile.create(name: "pbsys-foreign", size: 8192)
        let wakeup = try EventFD()
        defer { try? fd.close(); try? wakeup.close() }
        let e = thrownErrno { try SharedQueue.Producer(attaching: fd, wakeup: wakeup) }
        #expect(e?.detail == "not a shared queue: magic 0x0, expected 0x6575657551534250")
    }

    // MARK: Wakeups

    /// True when the eventfd is readable now.
    static func signalled(_ fd: EventFD) throws -> Bool {
        var fds = [Poll.readable(fd.rawValue)]
        return try Poll.wait(&fds, timeoutMilliseconds: 0) > 0
    }

    @Test func theProducerWritesTheEventFDOnlyAfterTheConsumerSaidItSleeps() throws {
        let q = try Pair(capacity: 4096)
        q.push(kind: 1, [1])
        #expect(q.producer.wakeupsSent == 0, "an awake consumer costs no write")
        #expect(try !Self.signalled(q.consumer.wakeup))
        #expect(!q.consumer.prepareToSleep(), "records are waiting: no sleep")
        q.push(kind: 1, [2])
        #expect(q.producer.wakeupsSent == 0, "prepareToSleep cleared the flag when it found records")
        #expect(q.drain().result.records == 2)

        #expect(q.consumer.prepareToSleep())
        q.push(kind: 1, [3])
        #expect(q.producer.wakeupsSent == 1)
        #expect(try Self.signalled(q.consumer.wakeup))
        q.push(kind: 1, [4])
        q.push(kind: 1, [5])
        #expect(q.producer.wakeupsSent == 1, "one wakeup for a burst")
        q.consumer.awake()
        #expect(try !Self.signalled(q.consumer.wakeup), "awake() resets the eventfd")
        #expect(q.drain().result.records == 3)
    }

    @Test func waitReturnsAtOnceWhenRecordsAreWaitingAndTimesOutWhenNoneCome() throws {
        let q = try Pair(capacity: 4096)
        #expect(try q.consumer.wait(timeoutMilliseconds: 10) == false)
        q.push(kind: 1, [1])
        #expect(try q.consumer.wait(timeoutMilliseconds: -1) == true)
        #expect(q.producer.wakeupsSent == 0)
    }

    /// What the producer thread reports, and the consumer's request to stop it.
    final class ProducerThread: Sendable {
        let done = Atomic<Bool>(false)
        let stop = Atomic<Bool>(false)
        let wakeupsSent = Atomic<Int>(0)
    }

    @Test func aProducerOnAnotherThreadWithAnAdoptedEventFDWakesASleepingConsumerWithoutLosingARecord() throws {
        let (fd, consumer) = try SharedQueue.create(capacity: 4096)
        defer { try? fd.close() }
        // As in a worker: the eventfd arrives as a bare descriptor number.
        let wakeupCopy = EventFD(adopting: FileDescriptor(rawValue: dup(consumer.wakeup.rawValue)))
        let total = 20_000
        let thread = ProducerThread()
        Thread.detachNewThread {
            defer { thread.done.store(true, ordering: .releasing); try? wakeupCopy.close() }
            guard let producer = try? SharedQueue.Producer(attaching: fd, wakeup: wakeupCopy) else { return }
            for i in 0..<total {
                let bytes = Self.payload(i, length: i % 97)
                // Now and then, pause so that the consumer really goes to sleep.
                if i % 2500 == 0 { usleep(10_000) }
                while !(bytes.withUnsafeBytes { producer.push(kind: UInt8(i % 200), $0) }) {
                    if thread.stop.load(ordering: .relaxed) { return }
                    sched_yield()
                }
                thread.wakeupsSent.store(producer.wakeupsSent, ordering: .relaxed)
            }
        }
        defer {
            thread.stop.store(true, ordering: .relaxed)
            while !thread.done.load(ordering: .acquiring) { usleep(1000) }
        }
        var received = 0
        var mismatches = 0
        var prepares = 0
        var timeouts = 0
        while received < total && timeouts == 0 {
            let result = consumer.drain(max: 64) { kind, payload in
                if kind != UInt8(received % 200) || Array(payload) != Self.payload(received, length: received % 97) { mismatches += 1 }
                received += 1
            }
            #expect(!result.isCorrupt, "\(result)")
            if result.isCorrupt { break }
            if result.records > 0 { continue }
            prepares += 1
            guard consumer.prepareToSleep() else { continue }
            var fds = [Poll.readable(consumer.wakeup.rawValue)]
            // A lost wakeup shows as a timeout: the producer pauses 10 ms at most.
            if try Poll.wait(&fds, timeoutMilliseconds: 5000) == 0 { timeouts += 1 }
            consumer.awake()
        }
        #expect(received == total && mismatches == 0)
        #expect(timeouts == 0, "a lost wakeup")
        let wakeups = thread.wakeupsSent.load(ordering: .relaxed)
        #expect(wakeups >= 1, "the consumer slept at least once during the pauses")
        #expect(wakeups <= prepares, "the producer wrote the eventfd \(wakeups) times, the consumer prepared to sleep \(prepares) times")
    }
}

/// A small seeded generator, so a failing round can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
