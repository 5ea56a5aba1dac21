import CPlugboard
import CPlugboardSupport
import Foundation
@testable import PlugboardCore
import Synchronization
import Testing

/// The producer's mid-burst wake (`RingProducer.flushIfDue`) against its end-of-burst wake
/// (`flush`): a sleeping consumer is woken mid-burst only once the batch it asked for
/// (`wakeBatch`) is there, and at the end of a burst for any number of events.
@Suite("Ring wake-ups in a burst", .serialized)
struct RingWakeTests {
    /// One `wait` on its own thread; `returned` goes up when it comes back.
    final class Sleeper: Sendable {
        final class Flag: Sendable { let value = Atomic<Bool>(false) }
        let flag = Flag()
        let thread: NativeThread
        var returned: Bool { flag.value.load(ordering: .sequentiallyConsistent) }
        init(_ consumer: RingConsumer) {
            let box = CheckingReader.Box(consumer: consumer)
            let flag = self.flag
            thread = NativeThread(name: "pb-test-sleeper") {
                box.consumer.spinLimit = 0
                box.consumer.wait(timeoutNanoseconds: 30_000_000_000)
                flag.value.store(true, ordering: .sequentiallyConsistent)
            }
        }
    }

    /// The words a worker process keeps in its control page (cursor, sleeping flag, wake-at),
    /// registered with the ring as a remote consumer, and a consumer that uses them as a worker's does.
    final class WorkerWords {
        let page = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
        var sleeping: UnsafeMutablePointer<UInt32> { (page + 8).assumingMemoryBound(to: UInt32.self) }
        var wakeAt: UnsafeMutablePointer<UInt64> { (page + 16).assumingMemoryBound(to: UInt64.self) }
        let remote: RemoteCursor
        let consumer: RingConsumer
        init(_ ring: EventRing, name: String) {
            page.initializeMemory(as: UInt8.self, repeating: 0, count: 64)
            let cursor = page.assumingMemoryBound(to: UInt64.self)
            let sleeping = (page + 8).assumingMemoryBound(to: UInt32.self)
            let wakeAt = (page + 16).assumingMemoryBound(to: UInt64.self)
            remote = ring.registerRemote(name: name, cursor: cursor, sleeping: sleeping, wakeAt: wakeAt)
            consumer = ring.makeConsumer(name: name, sleepWord: sleeping, wakeAtWord: wakeAt)
        }
        /// After every thread using `consumer` has been joined.
        func close() {
            consumer.deregister()
            remote.deregister()
            page.deallocate()
        }
    }

    /// Polls `condition` for up to 10 s.
    func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<10_000 {
            if condition() { return true }
            usleep(1_000)
        }
        return condition()
    }

    func burst(_ producer: RingProducer, _ n: Int) {
        for _ in 0..<n {
            producer.publishWithoutWake(fillChecked)
            producer.flushIfDue()
        }
    }

    @Test("a consumer of this process sleeps through mid-burst wakes until its batch is there")
    func localConsumerWaitsForItsBatch() throws {
        let ring = try EventRing(slotCount: 1024)
        let producer = ring.makeProducer()
        let consumer = ring.makeConsumer(name: "thread-plugin")
        #expect(consumer.wakeBatch == 256, "the default: 256 events, at most a quarter of the ring")
        consumer.wakeBatch = 8
        let sleeper = Sleeper(consumer)
        #expect(eventually { pbs_load_seqcst_u32(ring.waitersPointer) == 1 }, "the consumer went to sleep")
        burst(producer, 7)
        usleep(100_000)
        #expect(!sleeper.returned, "7 of 8 events: still asleep")
        #expect(pbs_load_seqcst_u32(ring.waitersPointer) == 1)
        burst(producer, 1)
        #expect(sleeper.thread.join(timeout: .seconds(10)), "the 8th event woke it")
        #expect(ring.wakeAt.load(ordering: .relaxed) == .max, "a wake clears the requests")
    }

    @Test("the end of a burst wakes a sleeping consumer for a single event")
    func flushWakesForAnyNumber() throws {
        let ring = try EventRing(slotCount: 1024)
        let producer = ring.makeProducer()
        let consumer = ring.makeConsumer(name: "thread-plugin")
        let sleeper = Sleeper(consumer)
        #expect(eventually { pbs_load_seqcst_u32(ring.waitersPointer) == 1 })
        burst(producer, 1)
        usleep(50_000)
        #expect(!sleeper.returned, "one event of 256, mid-burst: asleep")
        producer.flush()
        #expect(sleeper.thread.join(timeout: .seconds(10)), "flush() woke it")
        // And a plain publish (one event, woken at once) works as before.
        let buffer = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: 8)
        defer { buffer.deallocate() }
        #expect(consumer.poll(max: 8, into: buffer) == .events(1))
        #expect(consumer.commit())
        let again = Sleeper(consumer)
        #expect(eventually { pbs_load_seqcst_u32(ring.waitersPointer) == 1 })
        producer.publish(fillChecked)
        #expect(again.thread.join(timeout: .seconds(10)))
    }

    @Test("a consumer in another process (its own sleeping flag and wake-at word) is woken mid-burst only for its batch")
    func remoteConsumerWaitsForItsBatch() throws {
        let ring = try EventRing(slotCount: 1024)
        let producer = ring.makeProducer()
        let worker = WorkerWords(ring, name: "process-plugin")
        defer { worker.close() }
        let (consumer, sleeping, wakeAt) = (worker.consumer, worker.sleeping, worker.wakeAt)
        consumer.wakeBatch = 8
        let sleeper = Sleeper(consumer)
        #expect(eventually { pbs_load_seqcst_u32(sleeping) == 1 })
        #expect(pbs_load_seqcst_u64(wakeAt) == 8, "it asked for cursor + 8")
        #expect(pbs_load_seqcst_u32(ring.waitersPointer) == 0, "nothing local sleeps")
        burst(producer, 7)
        usleep(100_000)
        #expect(!sleeper.returned, "7 of 8 events: still asleep")
        burst(producer, 1)
        #expect(sleeper.thread.join(timeout: .seconds(10)), "the 8th event woke it")

        // A worker that names no sequence (0, a fresh page) is woken by every mid-burst wake.
        let eager = ring.makeConsumer(name: "old-worker", sleepWord: sleeping)
        pbs_store_seqcst_u64(wakeAt, 0)
        let second = Sleeper(eager)
        #expect(eventually { pbs_load_seqcst_u32(sleeping) == 1 })
        burst(producer, 1)
        #expect(second.thread.join(timeout: .seconds(10)))
        eager.deregister()
    }

    @Test("a worker that writes a sequence far ahead in its wake-at word delays only itself: another consumer's due wake and the burst's end still come")
    func hostileWakeAtDelaysOnlyItself() throws {
        let ring = try EventRing(slotCount: 1024)
        let producer = ring.makeProducer()
        // The worker's consumer, and a well-behaved thread of the host asking for 4 events.
        let worker = WorkerWords(ring, name: "hostile")
        defer { worker.close() }
        let (hostile, sleeping, wakeAt) = (worker.consumer, worker.sleeping, worker.wakeAt)
        let honest = ring.makeConsumer(name: "honest")
        honest.wakeBatch = 4
        let hostileSleeper = Sleeper(hostile)
        let honestSleeper = Sleeper(honest)
        #expect(eventually { pbs_load_seqcst_u32(sleeping) == 1 && pbs_load_seqcst_u32(ring.waitersPointer) == 1 })
        pbs_store_seqcst_u64(wakeAt, .max)  // what a scribbling plugin may write there
        burst(producer, 4)
        #expect(honestSleeper.thread.join(timeout: .seconds(10)), "the honest consumer's batch woke it")
        // That wake was for everyone on the futex (the worker too); put it back to sleep asking
        // for the impossible, and only the burst's end wakes it.
        #expect(hostileSleeper.thread.join(timeout: .seconds(10)))
        let buffer = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: 8)
        defer { buffer.deallocate() }
        #expect(hostile.poll(max: 8, into: buffer) == .events(4))
        #expect(hostile.commit())
        let again = Sleeper(hostile)
        #expect(eventually { pbs_load_seqcst_u32(sleeping) == 1 })
        pbs_store_seqcst_u64(wakeAt, .max)
        burst(producer, 300)
        usleep(50_000)
        #expect(!again.returned, "300 events mid-burst: a sequence never reached wakes nobody")
        producer.flush()
        #expect(again.thread.join(timeout: .seconds(10)), "the burst's end woke it")
    }
}
