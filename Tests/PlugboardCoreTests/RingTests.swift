import CPlugboard
import CPlugboardSupport
import Foundation
import PlugboardCore
import Synchronization
import Testing

/// Fills an event whose fields are all derived from its sequence, so a reader can check it.
func fillChecked(_ w: inout EventWriter) {
    let s = w.event.pointee.sequence
    w.action = .add
    w.event.pointee.vendor_id = UInt16(truncatingIfNeeded: s)
    w.event.pointee.product_id = UInt16(truncatingIfNeeded: s >> 16)
    w.event.pointee.kernel_seqnum = s &* 31
    w.setString(.serial, "S\(s)")
}

/// True when the event's fields match its sequence (see `fillChecked`).
func isIntact(_ e: UnsafePointer<pb_event>) -> Bool {
    let s = e.pointee.sequence
    return e.pointee.vendor_id == UInt16(truncatingIfNeeded: s) && e.pointee.product_id == UInt16(truncatingIfNeeded: s >> 16)
        && e.pointee.kernel_seqnum == s &* 31 && e.string(.serial) == "S\(s)"
}

/// A consumer thread that checks order, completeness and content of what it reads.
final class CheckingReader: Sendable {
    let consumer: RingConsumer
    let thread: NativeThread

    /// - Parameters:
    ///   - jitter: sleep up to 200 µs after about one batch in 64 (random stalls).
    ///   - stallMicroseconds: sleep this long after every batch, before committing it (a slow
    ///     consumer: lapped between polls and during batches).
    init(_ consumer: RingConsumer, jitter: Bool = false, stallMicroseconds: UInt32 = 0) {
        self.consumer = consumer
        let box = Box(consumer: consumer)
        let counters = Counters()
        self.counters = counters
        thread = NativeThread(name: "pb-test-reader") {
            let c = box.consumer
            let buf = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: 64)
            defer { buf.deallocate() }
            var expected = c.cursor + 1
            var rng = SystemRandomNumberGenerator()
            loop: while true {
                switch c.poll(max: 64, into: buf) {
                case .events(let n):
                    var ok = true, inOrder = true
                    for i in 0..<n {
                        let e = buf[i]!
                        if e.pointee.sequence != expected { inOrder = false }
                        if !isIntact(e) { ok = false }
                        expected += 1
                    }
                    if jitter, UInt8.random(in: 0...255, using: &rng) < 4 { usleep(UInt32.random(in: 0...200, using: &rng)) }
                    if stallMicroseconds > 0 { usleep(stallMicroseconds) }
                    if c.commit() {
                        counters.count.add(UInt64(n), ordering: .relaxed)
                        if !inOrder { counters.outOfOrder.add(1, ordering: .relaxed) }
                        if !ok { counters.corrupt.add(1, ordering: .relaxed) }
                    } else {
                        counters.laps.add(1, ordering: .relaxed)
                        expected = c.cursor + 1
                    }
                case .lapped:
                    counters.laps.add(1, ordering: .relaxed)
                    expected = c.cursor + 1
                case .empty:
                    c.wait(timeoutNanoseconds: 10_000_000)
                case .finished:
                    break loop
                }
            }
            counters.last.store(c.cursor, ordering: .relaxed)
        }
    }

    final class Box: @unchecked Sendable {
        // Handed to exactly one thread.
        let consumer: RingConsumer
        init(consumer: RingConsumer) { self.consumer = consumer }
    }
    final class Counters: Sendable {
        let count = Atomic<UInt64>(0), outOfOrder = Atomic<UInt64>(0), corrupt = Atomic<UInt64>(0)
        let laps = Atomic<UInt64>(0), last = Atomic<UInt64>(0)
    }
    let counters: Counters
}

@Suite("Event ring")
struct RingTests {
    @Test("the ring lives in a memfd sealed against shrinking, growing and resealing")
    func sealedMemfd() throws {
        let ring = try EventRing(slotCount: 1000)
        #expect(ring.capacity == 1024)
        let seals = ring.seals
        #expect(seals & pbs_seal_shrink() != 0)
        #expect(seals & pbs_seal_grow() != 0)
        #expect(seals & pbs_seal_seal() != 0)
        #expect(ftruncate(ring.fd, 0) != 0, "shrinking a sealed ring must fail")
    }

    @Test("1,000,000 events reach every keeping-up consumer in order, intact, none missing")
    func millionEventsInOrder() throws {
        let ring = try EventRing(slotCount: 4096)
        let producer = ring.makeProducer()
        producer.flowControl = true
        let readers = (0..<3).map { CheckingReader(ring.makeConsumer(name: "r\($0)")) }
        let total: UInt64 = 1_000_000
        for i in 0..<total {
            producer.publishWithoutWake(fillChecked)
            if i & 63 == 0 { producer.flush() }
        }
        producer.close()
        for r in readers {
            r.thread.join()
            #expect(r.counters.count.load(ordering: .relaxed) == total)
            #expect(r.counters.outOfOrder.load(ordering: .relaxed) == 0)
            #expect(r.counters.corrupt.load(ordering: .relaxed) == 0)
            #expect(r.counters.laps.load(ordering: .relaxed) == 0)
            #expect(r.counters.last.load(ordering: .relaxed) == total)
        }
    }

    @Test("a stalled consumer is lapped and counted while a keeping-up one misses nothing")
    func stalledConsumerIsLapped() throws {
        let ring = try EventRing(slotCount: 64)
        let producer = ring.makeProducer()
        let fast = ring.makeConsumer(name: "fast")
        let stalled = ring.makeConsumer(name: "stalled")
        let buf = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: 64)
        defer { buf.deallocate() }
        var seen: [UInt64] = []
        for _ in 0..<100 {  // 1,600 events, the fast reader keeping up in steps of 16
            for _ in 0..<16 { producer.publish(fillChecked) }
            guard case .events(let n) = fast.poll(max: 64, into: buf) else { Issue.record("fast reader got no events"); return }
            for i in 0..<n { seen.append(buf[i]!.pointee.sequence) }
            #expect(fast.commit())
        }
        #expect(seen == Array(1...1600))
        #expect(fast.laps == 0)

        let result = stalled.poll(max: 64, into: buf)
        #expect(result == .lapped(missed: 1600))
        #expect(stalled.laps == 1)
        #expect(stalled.missed == 1600)
        #expect(stalled.cursor == 1600, "a lapped consumer resumes at the newest event")
        // After the lap it reads new events normally.
        producer.publish(fillChecked)
        #expect(stalled.poll(max: 64, into: buf) == .events(1))
        #expect(buf[0]!.pointee.sequence == 1601)
        #expect(stalled.commit())
    }

    @Test("a consumer overwritten while it reads a batch learns so at commit")
    func lappedDuringBatch() throws {
        let ring = try EventRing(slotCount: 16)
        let producer = ring.makeProducer()
        let c = ring.makeConsumer(name: "slow")
        let buf = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: 16)
        defer { buf.deallocate() }
        for _ in 0..<8 { producer.publish(fillChecked) }
        #expect(c.poll(max: 16, into: buf) == .events(8))
        for _ in 0..<16 { producer.publish(fillChecked) }  // overwrites slots 1...8
        #expect(!c.commit(), "the batch was overwritten: commit must refuse it")
        #expect(c.laps == 1)
        #expect(c.missed == 24, "the torn batch counts as missed")
        #expect(c.cursor == 24)
    }

    @Test("a batch is valid only while the producer is less than a whole ring ahead (it may be writing the next slot)")
    func commitBoundary() throws {
        let ring = try EventRing(slotCount: 16)
        let producer = ring.makeProducer()
        let c = ring.makeConsumer(name: "edge")
        let buf = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: 16)
        defer { buf.deallocate() }
        for _ in 0..<8 { producer.publish(fillChecked) }
        #expect(c.poll(max: 16, into: buf) == .events(8))
        for _ in 0..<7 { producer.publish(fillChecked) }  // published 15: slot of event 1 is untouched
        #expect(c.commit(), "15 ahead of cursor 0 in a 16-slot ring: event 1 cannot be being overwritten yet")
        #expect(c.poll(max: 1, into: buf) == .events(1))  // event 9
        for _ in 0..<9 { producer.publish(fillChecked) }  // published 24 = cursor 8 + 16
        #expect(!c.commit(), "with published - cursor == capacity the producer may be writing over event 9")
        #expect(c.laps == 1)
        // A consumer exactly a whole ring behind is lapped at poll too.
        let d = ring.makeConsumer(name: "late")
        for _ in 0..<16 { producer.publish(fillChecked) }
        #expect(d.poll(max: 16, into: buf) == .lapped(missed: 16))
    }

    @Test("flow control makes the producer wait for the slowest consumer instead of lapping it")
    func flowControlWaits() throws {
        let ring = try EventRing(slotCount: 8)
        let producer = ring.makeProducer()
        producer.flowControl = true
        let reader = CheckingReader(ring.makeConsumer(name: "jittery"), jitter: true)
        for _ in 0..<20_000 { producer.publish(fillChecked) }
        producer.close()
        reader.thread.join()
        #expect(reader.counters.count.load(ordering: .relaxed) == 20_000)
        #expect(reader.counters.laps.load(ordering: .relaxed) == 0)
    }

    @Test("stress: four concurrent consumers, random stalls and a slow one that is lapped, no lap hides torn data")
    func concurrentStress() throws {
        let ring = try EventRing(slotCount: 256)
        let producer = ring.makeProducer()
        // Three with random stalls; the fourth sleeps 1 ms per batch of at most 64 events, while
        // the producer writes 300 000 without waiting: it falls a whole ring behind many times.
        let readers = (0..<3).map { CheckingReader(ring.makeConsumer(name: "s\($0)"), jitter: true) }
            + [CheckingReader(ring.makeConsumer(name: "slow"), stallMicroseconds: 1000)]
        let total: UInt64 = 300_000
        for i in 0..<total {
            producer.publishWithoutWake(fillChecked)
            if i & 15 == 0 { producer.flush() }
        }
        producer.close()
        for r in readers {
            r.thread.join()
            let c = r.counters
            // Every committed batch was in order and intact; what was missed is accounted as laps.
            #expect(c.outOfOrder.load(ordering: .relaxed) == 0)
            #expect(c.corrupt.load(ordering: .relaxed) == 0)
            #expect(c.last.load(ordering: .relaxed) == total)
            #expect(c.count.load(ordering: .relaxed) + r.consumer.missed == total, "every event is either read or counted as missed")
        }
        // The checks above are about laps: they only mean something if laps happened.
        let slow = readers[3]
        #expect(slow.counters.laps.load(ordering: .relaxed) > 0, "the slow consumer was never lapped")
        #expect(slow.consumer.missed > 0)
    }

    @Test("a consumer whose waits slept long 8 times in a row sleeps at once, and spins again once an event is there before it sleeps")
    func adaptiveSpin() throws {
        let ring = try EventRing(slotCount: 16)
        let producer = ring.makeProducer()
        let consumer = ring.makeConsumer(name: "c")
        #expect(consumer.nextSpins == consumer.spinLimit, "a new consumer spins")
        for _ in 0..<7 { consumer.wait(timeoutNanoseconds: 1_000_000) }  // nothing comes: spins, then sleeps 1 ms
        #expect(consumer.nextSpins == consumer.spinLimit, "a few long sleeps (a descheduled consumer of a hot ring) keep the spin")
        consumer.wait(timeoutNanoseconds: 1_000_000)
        #expect(consumer.nextSpins == 0, "after 8 long sleeps in a row the next wait sleeps at once")
        consumer.wait(timeoutNanoseconds: 1_000_000)
        #expect(consumer.nextSpins == 0)
        producer.publish(fillChecked)
        consumer.wait(timeoutNanoseconds: 2_000_000)  // returns at once: the event is there
        #expect(consumer.nextSpins == consumer.spinLimit, "events come fast: spinning resumes")
        consumer.spinLimit = 0  // pinned to the producer's CPU: never spins
        #expect(consumer.nextSpins == 0)
    }

    @Test("a consumer that stopped spinning does not start again for a sleep longer than a spin (an event 20 µs later)")
    func adaptiveSpinIgnoresSleepsASpinCouldNotSave() throws {
        let ring = try EventRing(slotCount: 16)
        let consumer = ring.makeConsumer(name: "c")
        for _ in 0..<8 { consumer.wait(timeoutNanoseconds: 1_000_000) }
        #expect(consumer.nextSpins == 0)
        // Sleeps that end 20 µs or more after they began: a timeout never ends early, and with
        // the timer slack at 1 ns they end soon after it, below the 50 µs that used to count as
        // "events come fast" (and turned spinning back on for eight more waits).
        let saved = pbs_timer_slack()
        #expect(pbs_set_timer_slack(1) == 0)
        defer { _ = pbs_set_timer_slack(saved) }
        for _ in 0..<20 {
            consumer.wait(timeoutNanoseconds: 20_000)
            #expect(consumer.nextSpins == 0, "a 20 µs sleep is not one a spin would have saved")
        }
    }

    @Test("the producer counts events by action")
    func eventsByAction() throws {
        let ring = try EventRing(slotCount: 16)
        let producer = ring.makeProducer()
        for a: EventAction in [.add, .add, .remove, .change, .bind, .unbind, .add] {
            producer.publish { $0.action = a }
        }
        producer.publish { $0.event.pointee.action = 42 }  // out of range: counted as unknown
        let counts = producer.eventsByAction
        #expect(counts["add"] == 3 && counts["remove"] == 1 && counts["change"] == 1)
        #expect(counts["bind"] == 1 && counts["unbind"] == 1 && counts["resync"] == 0 && counts["unknown"] == 1)
    }

    @Test("strings past PB_STRING_MAX and interfaces past 32 are cut and flagged")
    func truncation() throws {
        let buf = UnsafeMutableRawPointer.allocate(byteCount: EventLayout.maxSize, alignment: 64)
        defer { buf.deallocate() }
        var w = EventWriter(at: buf, sequence: 1)
        w.setString(.product, String(repeating: "x", count: 300))
        for i in 0..<40 { w.appendInterface(class: UInt8(i), subclass: 0, protocol: 0) }
        let e = UnsafePointer(buf.assumingMemoryBound(to: pb_event.self))
        #expect(e.flags.contains(.truncated))
        #expect(e.string(.product).count == EventLayout.stringMax)
        #expect(e.pointee.interfaces_len == 32)

        var w2 = EventWriter(at: buf, sequence: 2)
        w2.setString(.product, "fits")
        #expect(!UnsafePointer(buf.assumingMemoryBound(to: pb_event.self)).flags.contains(.truncated))
    }

    @Test("the histogram's quantiles bracket recorded values within its resolution")
    func histogram() {
        let h = LatencyHistogram()
        for v in 1...1000 { h.record(UInt64(v) * 1000) }  // 1 µs ... 1 ms
        let p50 = h.quantile(0.5)!, p99 = h.quantile(0.99)!
        #expect(p50 >= 500_000 && Double(p50) <= 500_000 * 1.13)
        #expect(p99 >= 990_000 && Double(p99) <= 990_000 * 1.13)
        #expect(h.total == 1000)
    }
}
