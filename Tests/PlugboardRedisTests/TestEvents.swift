import CPlugboard
import PlugboardCore
import PlugboardRedis
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Deterministic test events: every field of event `seq` is a function of `seq`, so a test can
/// rebuild what Redis must hold. Strings include quotes, a backslash and non-ASCII bytes.
enum TestEvents {
    static func strings(_ seq: UInt64) -> [EventField: String] {
        var s: [EventField: String] = [
            .syspath: "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-\(seq % 16)",
            .devnode: "/dev/bus/usb/001/\(String(format3(seq % 127 + 1)))",
            .serial: "SN-\(seq)",
            .manufacturer: "Acme \"Quoted\" \\ Co",
            .product: "Widget \u{00FC} \(seq)",
        ]
        s[.driver] = seq % 3 == 0 ? "" : "usb"
        return s
    }

    static func format3(_ v: UInt64) -> String {
        let d = String(v)
        return String(repeating: "0", count: max(0, 3 - d.count)) + d
    }

    /// Writes event `seq` into `slot` (PB_EVENT_MAX_SIZE bytes, 8-aligned).
    static func fill(_ slot: UnsafeMutableRawPointer, seq: UInt64) {
        slot.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<pb_event>.size)
        let e = slot.assumingMemoryBound(to: pb_event.self)
        e.pointee.size = UInt32(MemoryLayout<pb_event>.size)
        e.pointee.sequence = seq
        e.pointee.timestamp_ns = seq &* 1000 &+ 5
        e.pointee.kernel_seqnum = seq + 7
        e.pointee.action = UInt16(seq % 5 + 1)
        e.pointee.flags = UInt16(seq % 16)
        e.pointee.busnum = UInt16(seq % 8 + 1)
        e.pointee.devnum = UInt16(seq % 127 + 1)
        e.pointee.vendor_id = UInt16(truncatingIfNeeded: seq)
        e.pointee.product_id = UInt16(truncatingIfNeeded: (seq >> 16) ^ 0xbeef)
        e.pointee.bcd_device = 0x0110
        e.pointee.device_class = 0xef
        e.pointee.device_subclass = 2
        e.pointee.device_protocol = 1
        e.pointee.num_interfaces = 2
        e.pointee.interfaces_len = 2
        e.pointee.interfaces.0 = pb_usb_interface(iface_class: 3, iface_subclass: 1, iface_protocol: 2)
        e.pointee.interfaces.1 = pb_usb_interface(iface_class: 8, iface_subclass: 6, iface_protocol: 0x50)
        e.pointee.speed_kbps = 480_000
        var at = MemoryLayout<pb_event>.size
        let strs = strings(seq)
        func put(_ field: EventField) -> pb_str {
            let bytes = Array(strs[field]!.utf8)
            if bytes.isEmpty { return pb_str(offset: 0, length: 0) }
            let off = at
            bytes.withUnsafeBytes { (slot + off).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
            slot.storeBytes(of: 0, toByteOffset: off + bytes.count, as: UInt8.self)
            at += bytes.count + 1
            return pb_str(offset: UInt16(off), length: UInt16(bytes.count))
        }
        e.pointee.syspath = put(.syspath)
        e.pointee.devnode = put(.devnode)
        e.pointee.serial = put(.serial)
        e.pointee.manufacturer = put(.manufacturer)
        e.pointee.product = put(.product)
        e.pointee.driver = put(.driver)
        e.pointee.total_size = UInt32(at)
    }

    /// What the XADD entry for event `seq` must contain, field by field.
    static func expectedFields(_ seq: UInt64) -> [String: String] {
        func hex(_ v: UInt64, _ d: Int) -> String {
            let h = String(v, radix: 16)
            return String(repeating: "0", count: max(0, d - h.count)) + h
        }
        let actions = ["unknown", "add", "remove", "change", "bind", "unbind", "resync"]
        let flagNames = ["truncated", "resync", "coldplug", "from_table"].enumerated().filter { seq % 16 & (1 << $0.offset) != 0 }
        var f: [String: String] = [
            "sequence": "\(seq)", "action": actions[Int(seq % 5 + 1)], "flags": flagNames.map(\.element).joined(separator: ","),
            "timestamp_ns": "\(seq &* 1000 &+ 5)", "seqnum": "\(seq + 7)", "busnum": "\(seq % 8 + 1)", "devnum": "\(seq % 127 + 1)",
            "vendor_id": hex(seq & 0xffff, 4), "product_id": hex(((seq >> 16) ^ 0xbeef) & 0xffff, 4), "bcd_device": "0110",
            "device_class": "ef", "device_subclass": "02", "device_protocol": "01", "num_interfaces": "2",
            "interfaces": "030102,080650", "speed_kbps": "480000",
        ]
        for (k, v) in strings(seq) { f[k.name] = v }
        return f
    }
}

/// Shared between a test and its source: how many events the source may hand out so far.
final class SourceGate: Sendable {
    let released = Atomic<Int>(0)
    let handedOut = Atomic<Int>(0)
    init(released: Int) { self.released.store(released, ordering: .relaxed) }
    func release(upTo n: Int) { released.store(n, ordering: .releasing) }
}

/// An `EventBatchSource` producing `TestEvents` 1...total into its own aligned slots (standing in
/// for the core ring until it lands). Finishes after `total` when `finishes` is true.
final class GeneratedEventSource: EventBatchSource {
    let total: Int
    let gate: SourceGate
    let finishes: Bool
    private var nextSeq: UInt64 = 1
    private let slots: UnsafeMutableRawPointer
    private let slotCount = 1024

    init(total: Int, gate: SourceGate, finishes: Bool = false) {
        self.total = total
        self.gate = gate
        self.finishes = finishes
        slots = .allocate(byteCount: slotCount * Int(PB_EVENT_MAX_SIZE), alignment: 16)
    }

    deinit { slots.deallocate() }

    func poll(max: Int, into buffer: UnsafeMutablePointer<UnsafePointer<pb_event>?>) -> RingPoll {
        let limit = min(total, gate.released.load(ordering: .acquiring))
        if Int(nextSeq) > total && finishes { return .finished }
        let n = min(max, slotCount, limit - Int(nextSeq) + 1)
        guard n > 0 else { return .empty }
        for i in 0..<n {
            let slot = slots + i * Int(PB_EVENT_MAX_SIZE)
            TestEvents.fill(slot, seq: nextSeq)
            buffer[i] = UnsafePointer(slot.assumingMemoryBound(to: pb_event.self))
            nextSeq += 1
        }
        gate.handedOut.store(Int(nextSeq - 1), ordering: .releasing)
        return .events(n)
    }

    func commit() -> Bool { true }

    func wait(timeoutNanoseconds: UInt64) {
        usleep(UInt32(max(1, min(200, timeoutNanoseconds / 1000))))
    }
}
