import CPlugboard
import CUdev
import Logging
import PlugboardCore

#if canImport(Glibc)
import Glibc
#endif

/// What one uevent publishes: adds, removes and changes of `usb_device`s, interface adds folded
/// into their device, and the event copies built from device-table records.
extension UdevSession {
    /// Publishes what one uevent means for the plugins (see docs/udev.md, "Edge cases").
    func handle<D: UdevDeviceFields>(_ dev: D, receipt: UInt64) {
        guard let syspath = dev.syspath else { return }
        let devtype = dev.devtype
        let action = Self.action(dev.actionName)
        if let devtype, strcmp(devtype, "usb_interface") == 0 {
            handleInterface(dev, action: action, syspath: syspath, receipt: receipt)
            return
        }
        // Only devices (not interfaces, not endpoints) are events.
        guard let devtype, strcmp(devtype, "usb_device") == 0 else { return }
        switch action {
        case .remove: handleRemove(dev, syspath: syspath, receipt: receipt)
        case .add: handleAdd(dev, syspath: syspath, receipt: receipt)
        default:
            let known = context.deviceTable.lookup(syspath: String(cString: syspath))
            let seq = context.publishDeviceEvent(wakeMode: wakeNow()) { w in
                if let known {
                    known.withEvent { fill(&w, dev, action: action, flags: [], receipt: receipt, known: $0) }
                } else {
                    fill(&w, dev, action: action, flags: [], receipt: receipt)
                }
            }.sequence
            source.onEvent?(seq, dev.view)
        }
    }

    /// A remove carries the device's last-known attributes: sysfs is gone (or, after a quick
    /// replug, already holds the next device), so nothing is read from it.
    private func handleRemove<D: UdevDeviceFields>(_ dev: D, syspath: UnsafePointer<CChar>, receipt: UInt64) {
        let key = String(cString: syspath)
        guard let known = context.deviceTable.lookup(syspath: key) else {
            // A duplicate remove, or the remove of a device whose add was never seen: the
            // plugins never heard of it, so they are not told it left.
            counters.unknownRemoves.add(1, ordering: .relaxed)
            logger.debug("udev source: remove of a device not in the table ignored", metadata: ["syspath": "\(key)"])
            return
        }
        let seqnum = dev.seqnum
        let seq = context.publishDeviceEvent(wakeMode: wakeNow()) { w in
            known.withEvent { Self.writeFromRecord(&w, $0, action: .remove, flags: .fromTable, receipt: receipt) }
            w.event.pointee.kernel_seqnum = seqnum
        }.sequence
        source.onEvent?(seq, dev.view)
    }

    /// An add at a syspath already in the table is either the coldplug/hotplug race (same
    /// device seen by the enumeration and the monitor: dropped) or a replug whose remove was
    /// lost (another device: a resync remove of the old one is published first).
    private func handleAdd<D: UdevDeviceFields>(_ dev: D, syspath: UnsafePointer<CChar>, receipt: UInt64) {
        let key = String(cString: syspath)
        guard let known = context.deviceTable.lookup(syspath: key) else {
            let seq = context.publishDeviceEvent(wakeMode: wakeNow()) { w in
                fill(&w, dev, action: .add, flags: [], receipt: receipt)
            }.sequence
            source.onEvent?(seq, dev.view)
            return
        }
        var s = EventWriter(at: scratch, sequence: 0)
        fill(&s, dev, action: .add, flags: [], receipt: receipt)
        let fresh = UnsafePointer(s.event)
        if known.withEvent({ Self.sameIdentity($0, fresh) }) {
            counters.duplicateAdds.add(1, ordering: .relaxed)
            return
        }
        counters.replacedDevices.add(1, ordering: .relaxed)
        publishResyncRemove(known, receipt: receipt)
        let seq = context.publishDeviceEvent(wakeMode: wakeNow()) { w in
            Self.writeFromRecord(&w, fresh, action: .add, flags: [], receipt: receipt)
            w.event.pointee.kernel_seqnum = fresh.pointee.kernel_seqnum
        }.sequence
        source.onEvent?(seq, dev.view)
    }

    /// `usb_interface` uevents update their device's interface list. Only an add that brings
    /// a new (class, subclass, protocol) triple is published, as a `change` of the device;
    /// interface removes, binds and unbinds are counted and dropped (the device's own
    /// remove, bind and unbind are what plugins act on).
    private func handleInterface<D: UdevDeviceFields>(_ dev: D, action: EventAction, syspath: UnsafePointer<CChar>, receipt: UInt64) {
        counters.interfaceEvents.add(1, ordering: .relaxed)
        guard action == .add, let slash = strrchr(syspath, Int32(UInt8(ascii: "/"))) else { return }
        let parent = String(decoding: UnsafeRawBufferPointer(start: syspath, count: syspath.distance(to: slash)), as: UTF8.self)
        guard let known = context.deviceTable.lookup(syspath: parent) else { return }
        guard let t = interfaceTriple(dev) else { return }
        // Nothing to tell when the triple is known, or when the list is full (the record is
        // already flagged truncated and num_interfaces counts them all).
        let useless = known.withEvent { e in
            Int(e.pointee.interfaces_len) >= EventLayout.maxInterfaces || e.interfaces.contains { $0 == t }
        }
        if useless { return }
        let seqnum = dev.seqnum
        let seq = context.publishDeviceEvent(wakeMode: wakeNow()) { w in
            known.withEvent { Self.writeFromRecord(&w, $0, action: .change, flags: .fromTable, receipt: receipt) }
            w.event.pointee.kernel_seqnum = seqnum
            w.appendInterface(class: t.0, subclass: t.1, protocol: t.2)
        }.sequence
        source.onEvent?(seq, dev.view)
    }

    private func interfaceTriple<D: UdevDeviceFields>(_ dev: D) -> (UInt8, UInt8, UInt8)? {
        if let c = UdevValue.hex8(dev.sysattr("bInterfaceClass")) {
            let s = UdevValue.hex8(dev.sysattr("bInterfaceSubClass")) ?? 0
            let p = UdevValue.hex8(dev.sysattr("bInterfaceProtocol")) ?? 0
            return (c, s, p)
        }
        if let (c, s, p) = UdevValue.triple(dev.property("INTERFACE"), radix: 10, maxDigits: 3, max: 255) {
            return (UInt8(c), UInt8(s), UInt8(p))
        }
        counters.badValues.add(1, ordering: .relaxed)
        return nil
    }

    // MARK: building events

    /// Copies `record` (a table record or the scratch event) into the slot being written, with
    /// a new action and flags (its truncated flag is kept) and the receipt time.
    static func writeFromRecord(_ w: inout EventWriter, _ record: UnsafePointer<pb_event>, action: EventAction,
                                flags: EventFlags, receipt: UInt64) {
        let truncated = record.pointee.flags & UInt16(PB_EVENT_TRUNCATED)
        w.copyAttributes(from: record)
        w.action = action
        w.event.pointee.flags = truncated | flags.rawValue
        w.event.pointee.timestamp_ns = receipt
    }

    /// Same device: vendor, product, serial, bus and address. A different address at the same
    /// syspath means it was unplugged and plugged again (the kernel gives a new address).
    static func sameIdentity(_ a: UnsafePointer<pb_event>, _ b: UnsafePointer<pb_event>) -> Bool {
        a.pointee.vendor_id == b.pointee.vendor_id && a.pointee.product_id == b.pointee.product_id
            && a.pointee.busnum == b.pointee.busnum && a.pointee.devnum == b.pointee.devnum
            && a.bytes(.serial).elementsEqual(b.bytes(.serial))
    }

    static func action(_ p: UnsafePointer<CChar>?) -> EventAction {
        guard let p else { return .change }
        if strcmp(p, "add") == 0 { return .add }
        if strcmp(p, "remove") == 0 { return .remove }
        if strcmp(p, "change") == 0 { return .change }
        if strcmp(p, "bind") == 0 { return .bind }
        if strcmp(p, "unbind") == 0 { return .unbind }
        // move, online, offline: the device is still there and may have changed.
        return .change
    }
}
