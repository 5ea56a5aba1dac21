import CPlugboardSupport
import Foundation
import Testing

/// `pbs_uevent_parse`, the udev source's reading of one netlink datagram (docs/udev.md, "Reading
/// uevents"), fed the messages a well-behaved udevd or kernel sends and the ones a hostile or
/// broken sender would: each refusal libudev makes must be made here too, with its reason, and
/// nothing it accepts refused.
@Suite struct UeventParsingTests {
    /// A udev-group message as udevd sends it: libudev's 40-byte header, then KEY=VALUE\0 entries.
    static func udevMessage(_ entries: [String], magic: UInt32 = 0xfeed_cafe, propertiesOffset: UInt32? = nil) -> [UInt8] {
        var header = [UInt8]("libudev".utf8) + [0]
        func u32(_ v: UInt32) { withUnsafeBytes(of: v) { header += $0 } }
        u32(magic.bigEndian)
        u32(40)
        u32(propertiesOffset ?? 40)
        let body: [UInt8] = entries.flatMap { (entry: String) -> [UInt8] in Array(entry.utf8) + [0] }
        u32(UInt32(body.count))
        for _ in 0..<4 { u32(0) }
        return header + body
    }

    static let usbDevice = ["ACTION=add", "DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-2", "SUBSYSTEM=usb",
                            "DEVNAME=bus/usb/001/005", "DEVTYPE=usb_device", "PRODUCT=781/5567/100", "TYPE=0/0/0",
                            "BUSNUM=001", "DEVNUM=005", "SEQNUM=4242", "MAJOR=189", "MINOR=4", "ID_VENDOR_ID=0781"]

    /// Parses `bytes` as received from a sender in `groups` with `pid` and `uid` (nil: no credentials).
    static func parse(_ bytes: [UInt8], groups: UInt32 = 2, pid: UInt32 = 77, uid: UInt32? = 0,
                      _ body: (OpaquePointer, Int32) throws -> Void) rethrows {
        let ev = pbs_uevent_create()!
        defer { pbs_uevent_destroy(ev) }
        let n = min(bytes.count, Int(PBS_UEVENT_BUFFER))
        bytes.withUnsafeBytes { memcpy(pbs_uevent_buffer(ev), $0.baseAddress!, n) }
        let status = pbs_uevent_parse(ev, Int32(n), groups, pid, uid == nil ? 0 : 1, uid ?? 0)
        try body(ev, status)
    }

    static func text(_ p: UnsafePointer<CChar>?) -> String? { p.map { String(cString: $0) } }

    static func refusal(_ bytes: [UInt8], groups: UInt32 = 2, pid: UInt32 = 77, uid: UInt32? = 0) -> String? {
        var why: String?
        parse(bytes, groups: groups, pid: pid, uid: uid) { ev, status in
            if status == PBS_UEVENT_REFUSED { why = text(pbs_uevent_refusal(ev)) ?? "no reason" }
        }
        return why
    }

    @Test("a udevd message is read as libudev reads it: syspath, devnode, action, seqnum, properties (the last of a repeated key)")
    func udevMessageIsRead() throws {
        let msg = Self.udevMessage(Self.usbDevice + ["ID_SERIAL_SHORT=first", "ID_SERIAL_SHORT=second\nignored"])
        Self.parse(msg) { ev, status in
            #expect(status == PBS_UEVENT_OK)
            #expect(Self.text(pbs_uevent_action(ev)) == "add")
            #expect(Self.text(pbs_uevent_syspath(ev)) == "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2")
            #expect(Self.text(pbs_uevent_devnode(ev)) == "/dev/bus/usb/001/005")
            #expect(Self.text(pbs_uevent_devtype(ev)) == "usb_device")
            #expect(pbs_uevent_seqnum(ev) == 4242)
            #expect(Self.text(pbs_uevent_get(ev, "PRODUCT")) == "781/5567/100")
            // sd-device keeps the last value of a repeated key, cut at its first newline.
            #expect(Self.text(pbs_uevent_get(ev, "ID_SERIAL_SHORT")) == "second")
            #expect(pbs_uevent_get(ev, "ID_MODEL") == nil)
            #expect(pbs_uevent_count(ev) == Int32(Self.usbDevice.count + 2))
        }
        // An absolute DEVNAME is kept as it is; none means no device node.
        Self.parse(Self.udevMessage(Self.usbDevice.map { $0.hasPrefix("DEVNAME=") ? "DEVNAME=/dev/bus/usb/001/005" : $0 })) { ev, _ in
            #expect(Self.text(pbs_uevent_devnode(ev)) == "/dev/bus/usb/001/005")
        }
        Self.parse(Self.udevMessage(Self.usbDevice.filter { !$0.hasPrefix("DEVNAME=") })) { ev, status in
            #expect(status == PBS_UEVENT_OK)
            #expect(pbs_uevent_devnode(ev) == nil)
        }
    }

    @Test("a kernel message (\"action@devpath\" then entries) from the kernel is read; another subsystem is filtered, not refused")
    func kernelMessageIsRead() {
        let header: [UInt8] = Array("add@/devices/pci0000:00/0000:00:14.0/usb1/1-2".utf8) + [0]
        let body: [UInt8] = Self.usbDevice.filter { !$0.hasPrefix("ID_") }.flatMap { (e: String) -> [UInt8] in Array(e.utf8) + [0] }
        Self.parse(header + body, groups: 1, pid: 0) { ev, status in
            #expect(status == PBS_UEVENT_OK)
            #expect(Self.text(pbs_uevent_syspath(ev)) == "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2")
            #expect(Self.text(pbs_uevent_get(ev, "BUSNUM")) == "001")
        }
        let tty = Self.udevMessage(Self.usbDevice.map { $0 == "SUBSYSTEM=usb" ? "SUBSYSTEM=tty" : $0 })
        Self.parse(tty) { _, status in #expect(status == PBS_UEVENT_FILTERED) }
    }

    @Test("a sender that is not root, not the kernel, or sends no credentials is refused, as libudev refuses it")
    func untrustedSendersAreRefused() {
        let msg = Self.udevMessage(Self.usbDevice)
        #expect(Self.refusal(msg) == nil)
        #expect(Self.refusal(msg, uid: 1000) == "sender is not root")
        #expect(Self.refusal(msg, uid: nil) == "no sender credentials received")
        // The kernel group's messages come from the kernel (port 0), not from a process.
        #expect(Self.refusal(msg, groups: 1, pid: 4321) == "multicast kernel netlink message from a process ignored")
        #expect(Self.refusal(msg, groups: 0) == "unicast netlink message ignored")
    }

    @Test("malformed messages are refused with their reason: signature, offsets, entries, ACTION, SEQNUM, DEVPATH, length")
    func malformedMessagesAreRefused() {
        let good = Self.usbDevice
        #expect(Self.refusal(Self.udevMessage(good, magic: 0xdead_beef)) == "invalid message signature")
        #expect(Self.refusal(Self.udevMessage(good, propertiesOffset: 60_000)) == "invalid offset for properties")
        // libudev adds 32 to the offset in 32 bits, so an offset near 4 GiB wraps and passes its
        // check (then reads far past its buffer); refused here.
        #expect(Self.refusal(Self.udevMessage(good, propertiesOffset: 0xffff_fff0)) == "invalid offset for properties")
        #expect(Self.refusal(Self.udevMessage(good + ["NOEQUALSIGN"])) == "an entry is not a KEY=VALUE pair")
        #expect(Self.refusal(Self.udevMessage(good.map { $0 == "ACTION=add" ? "ACTION=explode" : $0 })) == "unknown ACTION")
        #expect(Self.refusal(Self.udevMessage(good.map { $0 == "SEQNUM=4242" ? "SEQNUM=12abc" : $0 })) == "SEQNUM is not a number")
        #expect(Self.refusal(Self.udevMessage(good.map { $0 == "SEQNUM=4242" ? "SEQNUM=99999999999999999999999" : $0 }))
                == "SEQNUM is not a number")
        #expect(Self.refusal(Self.udevMessage(good.filter { !$0.hasPrefix("SEQNUM=") }))
                == "the message lacks DEVPATH, SUBSYSTEM, ACTION or SEQNUM")
        #expect(Self.refusal(Self.udevMessage(good.map { $0 == "SEQNUM=4242" ? "SEQNUM=0" : $0 }))
                == "the message lacks DEVPATH, SUBSYSTEM, ACTION or SEQNUM")
        #expect(Self.refusal(Self.udevMessage(good.filter { !$0.hasPrefix("SUBSYSTEM=") }))
                == "the message lacks DEVPATH, SUBSYSTEM, ACTION or SEQNUM")
        #expect(Self.refusal(Self.udevMessage(good.map { $0.hasPrefix("DEVPATH=") ? "DEVPATH=devices/usb1" : $0 }))
                == "DEVPATH does not start with /")
        // The last entry runs to the end of the datagram without its NUL.
        var unterminated = Self.udevMessage(good)
        unterminated.removeLast()
        #expect(Self.refusal(unterminated) == "an entry is not NUL-terminated")
        #expect(Self.refusal(Array(Self.udevMessage(good).prefix(20))) == "invalid message length")
        // Kernel messages: a header without "@/", or nothing after the header.
        let body: [UInt8] = good.flatMap { (e: String) -> [UInt8] in Array(e.utf8) + [0] }
        #expect(Self.refusal(Array("add-/devices/usb1/1-2".utf8) + [0] + body, groups: 1, pid: 0) == "invalid kernel message header")
        #expect(Self.refusal(Array("add@/devices/usb1/1-2/and/a/long/enough/path/to/be/32/bytes".utf8) + [0], groups: 1, pid: 0)
                == "invalid kernel message length")
    }

    @Test("50,000 mutated messages: the parser never traps, and every message it accepts holds what the source relies on")
    func mutatedMessages() {
        // A deterministic PRNG (SplitMix64), so a failure reproduces; `make fuzz-uevent` runs
        // libFuzzer with AddressSanitizer on the same parser for the out-of-bounds reads this
        // loop cannot see.
        var state: UInt64 = 0x00ee_7e47
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        let body: [UInt8] = Self.usbDevice.flatMap { (e: String) -> [UInt8] in Array(e.utf8) + [0] }
        let seeds = [Self.udevMessage(Self.usbDevice), Array("add@/devices/usb1/1-2".utf8) + [0] + body]
        var outcomes: [Int32: Int] = [:]
        for i in 0..<50_000 {
            var b = seeds[i % 2]
            for _ in 0..<(1 + Int(next() % 4)) {
                let at = b.isEmpty ? 0 : Int(next() % UInt64(b.count))
                switch next() % 6 {
                case 0 where !b.isEmpty: b[at] ^= UInt8(1 << (next() % 8))
                case 1 where !b.isEmpty: b[at] = [0, UInt8(ascii: "="), UInt8(ascii: "\n"), UInt8(ascii: "/"), 0xff][Int(next() % 5)]
                case 2 where !b.isEmpty: b.remove(at: at)
                case 3: b.insert(UInt8(truncatingIfNeeded: next()), at: b.isEmpty ? 0 : at)
                case 4: b = Array(b.prefix(Int(next() % UInt64(b.count + 1))))
                default: b += Array(b.suffix(Int(next() % 64)))  // repeated entries
                }
            }
            Self.parse(b, groups: i % 3 == 0 ? 1 : 2, pid: 0) { ev, status in
                outcomes[status, default: 0] += 1
                guard status == PBS_UEVENT_OK || status == PBS_UEVENT_FILTERED else {
                    #expect(status == PBS_UEVENT_REFUSED && pbs_uevent_refusal(ev) != nil)
                    return
                }
                #expect(Self.text(pbs_uevent_syspath(ev))?.hasPrefix("/sys/") == true)
                #expect(pbs_uevent_seqnum(ev) > 0 && pbs_uevent_action(ev) != nil && pbs_uevent_subsystem(ev) != nil)
                for k in 0..<pbs_uevent_count(ev) {
                    let key = Self.text(pbs_uevent_key(ev, k)) ?? ""
                    #expect(!key.contains("=") && Self.text(pbs_uevent_value(ev, k))?.contains("\n") == false)
                }
            }
        }
        // The mutations reached both sides: some messages still parse, many are refused.
        #expect(outcomes[PBS_UEVENT_OK, default: 0] > 1000, "\(outcomes)")
        #expect(outcomes[PBS_UEVENT_REFUSED, default: 0] > 1000, "\(outcomes)")
    }

    @Test("a message of 8192 bytes with as many entries as fit is read without running past its buffer; more entries than the index holds are refused")
    func largeMessagesStayInBounds() {
        // 300 short entries: more than the index's 256.
        let many = Self.usbDevice + (0..<300).map { "X\($0)=1" }
        #expect(Self.refusal(Self.udevMessage(many)) == "too many properties")
        // One long value filling the buffer to its last byte.
        var msg = Self.udevMessage(Self.usbDevice + ["LONG="])
        msg.removeLast()
        msg += Array(repeating: UInt8(ascii: "v"), count: Int(PBS_UEVENT_BUFFER) - msg.count - 1) + [0]
        #expect(msg.count == Int(PBS_UEVENT_BUFFER))
        Self.parse(msg) { ev, status in
            #expect(status == PBS_UEVENT_OK)
            #expect(Self.text(pbs_uevent_get(ev, "LONG"))?.count == Int(PBS_UEVENT_BUFFER) - Self.udevMessage(Self.usbDevice + ["LONG="]).count)
        }
    }
}
