import CPlugboard

/// Generates `count` events as fast as the ring takes them: for benchmarks and load tests.
///
/// Events cycle through `devices` simulated devices (vendor 0x1d6b, product 0x1000 + i),
/// alternating add and remove, with a syspath and a product string, so that they
/// exercise the same writing path as real ones. They do not touch the device table.
public struct SyntheticSource: EventSource {
    public let count: UInt64
    public let devices: Int

    public var name: String { "synthetic:\(count)" }
    public var isFinite: Bool { true }

    public init(count: UInt64, devices: Int = 16) {
        self.count = count
        self.devices = max(1, devices)
    }

    public func run(_ context: SourceContext) throws {
        let producer = context.producer
        // The strings in memory of their own, made once: indexing an array of arrays per event
        // retained and released the inner array each time.
        func buffer(_ s: String) -> UnsafeRawBufferPointer {
            let b = UnsafeMutableRawBufferPointer.allocate(byteCount: s.utf8.count, alignment: 1)
            b.copyBytes(from: s.utf8)
            return UnsafeRawBufferPointer(b)
        }
        let syspaths = (0..<devices).map { buffer("/sys/devices/synthetic/usb1/1-\($0 + 1)") }
        let products = (0..<devices).map { buffer("Synthetic Device \($0 + 1)") }
        defer { for b in syspaths + products { b.deallocate() } }
        var i: UInt64 = 0
        while i < count {
            if context.shouldStop { break }  // one relaxed load: stop is prompt, not every 1024 events
            let d = Int(i % UInt64(devices))
            let add = (i / UInt64(devices)) & 1 == 0
            let sys = syspaths[d], prod = products[d]
            _ = producer.publishWithoutWake { w in
                let e = w.event
                e.pointee.action = UInt16(add ? PB_ACTION_ADD : PB_ACTION_REMOVE)
                e.pointee.busnum = 1
                e.pointee.devnum = UInt16(d + 2)
                e.pointee.vendor_id = 0x1d6b
                e.pointee.product_id = UInt16(0x1000 + d)
                e.pointee.speed_kbps = 480_000
                e.pointee.kernel_seqnum = i + 1
                w.setString(.syspath, sys)
                w.setString(.product, prod)
            }
            i += 1
            if i & 31 == 0 { producer.flushIfDue() }
        }
        producer.flush()
        context.published.add(i, ordering: .relaxed)
    }
}
