import Benchmark
import CPlugboard
import Foundation
import PlugboardCore

#if canImport(Glibc)
import Glibc
#endif

/// A consumer thread that reads and commits everything, touching each event's header
/// (as a plugin reading `action` would), without doing anything else.
final class NullConsumer: @unchecked Sendable {
    // Handed to one thread only.
    let consumer: RingConsumer
    var thread: NativeThread!
    var sum: UInt64 = 0

    init(_ consumer: RingConsumer) {
        self.consumer = consumer
        thread = NativeThread(name: "pb-bench-null") { [self] in
            let buf = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: 64)
            defer { buf.deallocate() }
            var s: UInt64 = 0
            loop: while true {
                switch consumer.poll(max: 64, into: buf) {
                case .events(let n):
                    for i in 0..<n { s &+= UInt64(buf[i]!.pointee.action) }
                    _ = consumer.commit()
                case .lapped: continue
                case .empty: consumer.wait()
                case .finished: break loop
                }
            }
            sum = s
        }
    }
}

/// Publishes `count` events the way the synthetic source does (header, ids, two strings).
@inline(__always)
func produce(_ producer: RingProducer, count: Int, syspath: UnsafeRawBufferPointer, product: UnsafeRawBufferPointer) {
    for i in 0..<count {
        producer.publishWithoutWake { w in
            w.event.pointee.action = 1
            w.event.pointee.vendor_id = 0x1d6b
            w.event.pointee.product_id = UInt16(truncatingIfNeeded: i)
            w.setString(.syspath, syspath)
            w.setString(.product, product)
        }
        if i & 63 == 0 { producer.flush() }
    }
    producer.flush()
}

func ringBenchmark(consumers: Int) -> (Benchmark) throws -> Void {
    { benchmark in
        let ring = try EventRing(slotCount: 4096)
        let producer = ring.makeProducer()
        producer.flowControl = true  // every event reaches every consumer: we measure delivery, not laps
        let readers = (0..<consumers).map { NullConsumer(ring.makeConsumer(name: "null\($0)")) }
        let sys = Array("/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1".utf8)
        let prod = Array("Synthetic Device".utf8)
        sys.withUnsafeBytes { s in
            prod.withUnsafeBytes { p in
                benchmark.startMeasurement()
                produce(producer, count: benchmark.scaledIterations.count, syspath: s, product: p)
                producer.close()
                for r in readers { r.thread.join() }
                benchmark.stopMeasurement()
            }
        }
        for r in readers { blackHole(r.sum) }
    }
}

let benchmarks: @Sendable () -> Void = {
    let config = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        timeUnits: .milliseconds,
        scalingFactor: .mega,
        maxDuration: .seconds(20),
        maxIterations: 10
    )
    // Baseline measured in the same run: copying the same bytes an event carries with memcpy
    // into a ring-sized buffer, one consumer-free pass (the floor of any ring).
    Benchmark("Baseline: memcpy of a 256-byte event into a 4096-slot buffer", configuration: config) { benchmark in
        let slots = UnsafeMutableRawPointer.allocate(byteCount: 4096 * 2048, alignment: 64)
        let event = UnsafeMutableRawPointer.allocate(byteCount: 256, alignment: 64)
        memset(event, 7, 256)
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations { memcpy(slots + (i & 4095) * 2048, event, 256) }
        benchmark.stopMeasurement()
        blackHole(slots.load(as: UInt8.self))
        slots.deallocate()
        event.deallocate()
    }
    Benchmark("Ring 1→1 null consumer", configuration: config, closure: ringBenchmark(consumers: 1))
    Benchmark("Ring 1→4 null consumers", configuration: config, closure: ringBenchmark(consumers: 4))
}
