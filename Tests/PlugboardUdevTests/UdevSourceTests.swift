import Foundation
import PlugboardCore
import PlugboardTestbed
import Testing

@testable import PlugboardUdev

// Devices used across the tests.
func keyboard() -> SimulatedUSBDevice {
    var d = SimulatedUSBDevice()
    d.port = "1"
    d.devnum = 3
    d.vendorID = 0x046d
    d.productID = 0xc31c
    d.bcdDevice = 0x6400
    d.speed = "1.5"
    d.manufacturer = Array("Logitech".utf8)
    d.product = Array("USB Keyboard".utf8)
    d.interfaces = [(3, 1, 1), (3, 0, 0)]
    return d
}

func flashDrive(serial: String = "4C530001230915117213") -> SimulatedUSBDevice {
    var d = SimulatedUSBDevice()
    d.port = "2"
    d.devnum = 5
    d.vendorID = 0x0781
    d.productID = 0x5567
    d.bcdDevice = 0x0100
    d.speed = "480"
    d.serial = Array(serial.utf8)
    d.manufacturer = Array("SanDisk".utf8)
    d.product = Array("Cruzer Blade".utf8)
    d.interfaces = [(8, 6, 0x50)]
    return d
}

/// Every umockdev test runs in this one serialized suite: umockdev keeps its testbed in the
/// process environment, so two testbeds cannot coexist.
@Suite(.serialized)
struct UdevSourceTests {
    init() {
        // umockdev's uevent sender aborts when a datagram queue is full (default 10 deep).
        if let f = fopen("/proc/sys/net/unix/max_dgram_qlen", "w") {
            fputs("4096\n", f)
            fclose(f)
        }
    }

    @Test func enumerationAtStartPublishesEveryPresentDeviceAsColdplugAddWithEveryField() throws {
        var hub = "", kbd = "", drive = ""
        let h = try UdevHarness { bed in
            hub = try bed.addRootHub()
            kbd = try bed.add(keyboard(), parent: hub)
            drive = try bed.add(flashDrive(), parent: hub)
        }
        defer { h.stop() }
        let events = try h.waitForEvents(3)
        #expect(events.count == 3)
        #expect(events.map(\.action) == ["add", "add", "add"])
        // Sorted by syspath: the hub, then its children.
        #expect(events.map { $0.value("syspath") } == [hub, kbd, drive])
        #expect(events[1].fields == expectedFields(keyboard(), syspath: kbd, flags: flagColdplug))
        #expect(events[2].fields == expectedFields(flashDrive(), syspath: drive, flags: flagColdplug))
        #expect(events.allSatisfy { $0.seqnum == 0 }, "enumerated devices have no kernel SEQNUM")
        #expect(h.runtime.deviceTable.syspaths == [hub, kbd, drive])
        #expect(h.counters.coldplugged.load(ordering: .relaxed) == 3)
        #expect(h.counters.mode == .udev)
    }

    @Test func hotplugAddChangeBindUnbindRemoveReachThePluginWithEveryField() throws {
        var hub = ""
        let h = try UdevHarness { bed in hub = try bed.addRootHub() }
        defer { h.stop() }
        _ = try h.waitForEvents(1)
        var d = flashDrive()
        let path = try h.bed.add(d, parent: hub)  // sends add for the device and its interface
        var events = try h.waitForEvents(2)
        #expect(events[1].action == "add")
        #expect(events[1].fields == expectedFields(d, syspath: path, flags: 0))
        #expect(events[1].seqnum > 0, "a hotplug event carries the kernel SEQNUM")

        // change: udev properties changed (a new product string).
        d.product = Array("Cruzer Blade 2".utf8)
        h.bed.setAttribute(path, "product", d.product!)
        h.bed.setProperty(path, "ID_MODEL_ENC", Array("Cruzer\\x20Blade\\x202".utf8))
        h.bed.uevent(path, "change")
        h.bed.uevent(path, "unbind")
        h.bed.uevent(path, "bind")
        events = try h.waitForEvents(5)
        #expect(events[2].action == "change")
        #expect(events[2].fields == expectedFields(d, syspath: path, flags: 0))
        #expect(events[3].action == "unbind")
        #expect(events[4].action == "bind")
        #expect(events[2].seqnum < events[3].seqnum && events[3].seqnum < events[4].seqnum)
        #expect(h.runtime.deviceTable.lookup(syspath: path)?.withEvent { $0.string(.product) } == "Cruzer Blade 2")

        h.bed.unplug(path, interfaces: 1)
        events = try h.waitForEvents(6)
        #expect(events[5].action == "remove")
        #expect(events[5].fields == expectedFields(d, syspath: path, flags: flagFromTable))
        #expect(h.runtime.deviceTable.lookup(syspath: path) == nil)
        #expect(h.counters.interfaceEvents.load(ordering: .relaxed) == 2, "the interface's add and remove were folded")
        #expect(events.map(\.sequence) == Array(1...6), "host sequence has no gaps")
    }

    @Test func removeCarriesVendorProductSerialFromTheTableNotFromSysfsOrTheUevent() throws {
        var hub = ""
        let h = try UdevHarness { bed in hub = try bed.addRootHub() }
        defer { h.stop() }
        let d = flashDrive(serial: "ORIGINAL-SERIAL")
        let path = try h.bed.add(d, parent: hub)
        _ = try h.waitForEvents(2)
        // What sysfs and the uevent say at remove time is wrong on purpose: a remove must not
        // read them (sysfs is gone, or already holds the next device).
        h.bed.setAttribute(path, "idVendor", Array("ffff".utf8))
        h.bed.setAttribute(path, "serial", Array("WRONG".utf8))
        h.bed.setProperty(path, "ID_VENDOR_ID", Array("ffff".utf8))
        h.bed.setProperty(path, "ID_SERIAL_SHORT", Array("WRONG".utf8))
        h.bed.setProperty(path, "PRODUCT", Array("ffff/ffff/0".utf8))
        h.bed.unplug(path)
        let events = try h.waitForEvents(3)
        #expect(events[2].action == "remove")
        #expect(events[2].value("id") == "0781:5567")
        #expect(events[2].value("serial") == "ORIGINAL-SERIAL")
        #expect(events[2].value("flags") == "\(flagFromTable)")
        #expect(events[2].fields == expectedFields(d, syspath: path, flags: flagFromTable))
    }

    @Test func injectedReceiveOverflowDrainsResyncsAndLeavesTheTableEqualToSysfs() throws {
        var hub = "", kbd = "", drive = ""
        let h = try UdevHarness { bed in
            hub = try bed.addRootHub()
            kbd = try bed.add(keyboard(), parent: hub)
            drive = try bed.add(flashDrive(), parent: hub)
        }
        defer { h.stop() }
        _ = try h.waitForEvents(3)
        // The drive vanishes unannounced (umockdev 0.17 sends no uevent for it) ...
        h.bed.removeDevice(drive)
        // ... and the next receive fails as after a kernel overflow, so the add of a new
        // device queued behind it is drained with the rest: both are only found by the resync.
        h.faults.failNextReceives(1)
        var mouse = SimulatedUSBDevice()
        mouse.port = "3"
        mouse.devnum = 7
        mouse.vendorID = 0x046d
        mouse.productID = 0xc077
        mouse.product = Array("USB Optical Mouse".utf8)
        mouse.interfaces = [(3, 1, 2)]
        // No driver: the testbed links it only after the add uevent, which races with the resync.
        mouse.driver = ""
        let mousePath = try h.bed.add(mouse, parent: hub)
        let events = try h.waitForEvents(5)
        let resync = Array(events.dropFirst(3))
        #expect(resync.count == 2)
        let add = resync.first { $0.action == "add" }
        let remove = resync.first { $0.action == "remove" }
        #expect(add?.fields == expectedFields(mouse, syspath: mousePath, flags: flagResync))
        #expect(remove?.fields == expectedFields(flashDrive(), syspath: drive, flags: flagResync | flagFromTable))
        #expect(h.counters.overflows.load(ordering: .relaxed) == 1)
        #expect(h.counters.resyncPasses.load(ordering: .relaxed) == 1)
        #expect(h.runtime.sourceContext?.resynced.load(ordering: .relaxed) == 2)
        #expect(h.runtime.deviceTable.syspaths == h.sysfsDevices)
        #expect(h.runtime.deviceTable.syspaths == [hub, kbd, mousePath])
        // Live again afterwards.
        h.bed.uevent(kbd, "change")
        let after = try h.waitForEvents(6)
        #expect(after[5].action == "change" && after[5].value("syspath") == kbd)
    }

    @Test func pollErrorTriggersTheSameResyncAsENOBUFS() throws {
        let (h, hub, drive) = try UdevHarness.hubWithDrive()
        defer { h.stop() }
        h.bed.removeDevice(drive)
        h.faults.failNextPolls(1)
        h.bed.uevent(hub, "change")  // wakes the loop (which was blocked before the injection)
        let events = try h.waitForEvents(4)
        #expect(events[2].action == "change")
        #expect(events[3].action == "remove" && events[3].value("flags") == "\(flagResync | flagFromTable)")
        #expect(events[3].value("syspath") == drive)
        #expect(h.runtime.deviceTable.syspaths == h.sysfsDevices)
    }

    @Test func aLatchedErrorBacksOffInsteadOfSpinning() throws {
        var hub = ""
        let h = try UdevHarness { bed in hub = try bed.addRootHub() }
        defer { h.stop() }
        _ = try h.waitForEvents(1)
        h.faults.failNextPolls(1_000_000)  // every wait reports POLLERR at once, as a latched error would
        h.bed.uevent(hub, "change")  // wakes the loop, which was blocked in poll before the injection
        Thread.sleep(forTimeInterval: 0.6)
        h.faults.clear()
        // Let the last back-off (at most 640 ms by now) run out before sending: a uevent
        // arriving during a back-off is drained by the resync that follows it.
        Thread.sleep(forTimeInterval: 1.3)
        let passes = h.counters.resyncPasses.load(ordering: .relaxed)
        // Backing off 10, 20, 40... ms allows about 7 passes in 0.6 s; a spin would do thousands.
        #expect(passes >= 2 && passes <= 12, "resync passes in 0.6 s of latched errors (and one after): \(passes)")
        #expect(h.runtime.deviceTable.syspaths == [hub], "resyncs of an unchanged bus publish nothing")
        #expect(h.events.count == 2)
        h.bed.uevent(hub, "change")
        let events = try h.waitForEvents(3)
        #expect(events[2].action == "change", "the source reads again once the error clears")
    }

    @Test func aBurstOfTenThousandUeventsReachesThePluginWithNoneMissing() throws {
        var hub = ""
        let h = try UdevHarness(ringSlots: 16384) { bed in hub = try bed.addRootHub() }
        defer { h.stop() }
        _ = try h.waitForEvents(1)
        var devices: [String] = []
        for i in 0..<50 {
            var d = SimulatedUSBDevice()
            d.port = "\(i + 1)"
            d.devnum = i + 10
            d.vendorID = 0x1209
            d.productID = UInt16(0x1000 + i)
            d.serial = Array("BURST\(i)".utf8)
            devices.append(try h.bed.add(d, parent: hub))  // 50 adds
        }
        // The burst: those 50 adds and 9,950 more uevents.
        let total = 10_000
        let base = UInt64(50)
        // Cycles remove/add on 50 devices: every uevent is one event for the plugin. The sender
        // waits when it is 3,000 ahead of the reader, since umockdev aborts on a full queue
        // (4,096 datagrams); that bounds the test tool, not the host.
        for i in 0..<(total - 50) {
            let stuck = Date().addingTimeInterval(30)
            while h.counters.received.load(ordering: .relaxed) + 3000 < base + UInt64(i) {
                if Date() > stuck { throw TestbedError("the source stopped reading at uevent \(i): \(h.diagnostics)") }
                usleep(200)
            }
            // Even rounds unplug all 50, odd rounds plug them back.
            let path = devices[i % 50]
            h.bed.uevent(path, (i / 50) % 2 == 0 ? "remove" : "add")
        }
        let events: [RecordedEvent]
        do { events = try h.waitForEvents(1 + total, timeout: 60) } catch {
            throw TestbedError("\(error); \(h.diagnostics)")
        }
        let burst = events.dropFirst()
        #expect(burst.count == total)
        let seqnums = burst.map(\.seqnum)
        #expect(zip(seqnums, seqnums.dropFirst()).allSatisfy { $1 == $0 + 1 }, "kernel SEQNUMs are contiguous: none missing")
        #expect(burst.map(\.sequence) == Array(2...UInt64(1 + total)))
        #expect(h.counters.overflows.load(ordering: .relaxed) == 0)
        #expect(h.runtime.pluginStats.first?.laps == 0)
        // 199 rounds, the last (even) one a remove: only the hub is left.
        #expect(h.runtime.deviceTable.count == 1)
        #expect(h.counters.unknownRemoves.load(ordering: .relaxed) == 0)
    }

    @Test func kernelModeIsUsedWhenUdevdIsAbsentAndReadsSysfsAttributes() throws {
        var hub = "", path = ""
        var d = flashDrive(serial: "ATTR-SERIAL")
        // Properties that only udevd would add; kernel mode must not use them.
        d.extraProperties = [("ID_SERIAL_SHORT", Array("PROP-SERIAL".utf8)), ("ID_VENDOR_ID", Array("ffff".utf8)),
                             ("ID_USB_INTERFACES", Array(":ffffff:".utf8))]
        let h = try UdevHarness(mode: .auto, controlPath: "/nonexistent/udev/control") { bed in
            hub = try bed.addRootHub()
            path = try bed.add(d, parent: hub)
        }
        defer { h.stop() }
        #expect(h.counters.mode == .kernel)
        var events = try h.waitForEvents(2)
        #expect(events[1].fields == expectedFields(d, syspath: path, flags: flagColdplug, serial: "ATTR-SERIAL"))
        // Hotplug in kernel mode: the device's add arrives before its interfaces exist in sysfs
        // on real hardware; each interface add that brings a new class is a `change`.
        var cam = SimulatedUSBDevice()
        cam.port = "4"
        cam.devnum = 9
        cam.vendorID = 0x046d
        cam.productID = 0x0825
        cam.serial = Array("CAM1".utf8)
        cam.udevProperties = false
        let camPath = try h.bed.add(cam, parent: hub)
        events = try h.waitForEvents(3)
        #expect(events[2].fields == expectedFields(cam, syspath: camPath, flags: 0))
        cam.interfaces = [(0x0e, 1, 0)]
        try h.bed.addDevice(subsystem: "usb", name: "1-4:1.0", parent: camPath,
                            attributes: [("bInterfaceClass", "0e"), ("bInterfaceSubClass", "01"), ("bInterfaceProtocol", "00")],
                            properties: [("DEVTYPE", Array("usb_interface".utf8)), ("INTERFACE", Array("14/1/0".utf8))])
        events = try h.waitForEvents(4)
        #expect(events[3].action == "change")
        #expect(events[3].fields == expectedFields(cam, syspath: camPath, flags: flagFromTable, interfaces: [(0x0e, 1, 0)]))
        // A change of a known device in kernel mode: the driver comes from the uevent, the rest
        // (descriptor strings, speed, interfaces: fixed until the device goes away) from its record.
        h.bed.uevent(path, "change")
        events = try h.waitForEvents(5)
        #expect(events[4].action == "change")
        #expect(events[4].fields == expectedFields(d, syspath: path, flags: 0, serial: "ATTR-SERIAL"))
    }

    @Test func udevModeIsUsedWhenUdevdsControlSocketExistsAndPrefersUdevProperties() throws {
        let control = NSTemporaryDirectory() + "pb-udev-control-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: control, contents: Data())
        defer { try? FileManager.default.removeItem(atPath: control) }
        var d = flashDrive(serial: "ATTR-SERIAL")
        d.extraProperties = [("ID_SERIAL_SHORT", Array("PROP-SERIAL".utf8))]
        var path = ""
        let h = try UdevHarness(mode: .auto, controlPath: control) { bed in path = try bed.add(d, parent: try bed.addRootHub()) }
        defer { h.stop() }
        #expect(h.counters.mode == .udev)
        let events = try h.waitForEvents(2)
        #expect(events[1].fields == expectedFields(d, syspath: path, flags: flagColdplug, serial: "PROP-SERIAL"))
    }

    @Test func receiveBufferIsRaisedAndTheGrantedSizeIsRecorded() throws {
        let h = try UdevHarness()
        defer { h.stop() }
        // Root gets 128 MiB whatever rmem_max says; Linux reports it doubled.
        #expect(h.counters.effectiveReceiveBuffer.load(ordering: .relaxed) >= 128 << 20)
    }
}
