import PlugboardSystem
import CPlugboardSupport
import CUdev
import Logging
import PlugboardCore

#if canImport(Glibc)
import Glibc
#endif

/// Lost uevents (a receive overflow, a broken socket): drain, re-enumerate and publish the
/// difference from the device table as `resync` events; and the coldplug pass at start.
extension UdevSession {
    /// ENOBUFS or POLLERR: uevents were lost. Drain what is queued (it predates the loss and
    /// the enumeration supersedes it), re-enumerate, publish the difference. Repeated errors
    /// back off (10 ms doubling to 1 s) so a latched error never spins.
    func recoverFromOverflow(reason: String) throws {
        counters.overflows.add(1, ordering: .relaxed)
        let now = pbs_monotonic_ns()
        if lastOverflowNs != 0 && now &- lastOverflowNs < 1_000_000_000 {
            backoffMs = min(max(10, backoffMs * 2), 1000)
        } else {
            backoffMs = 0
        }
        lastOverflowNs = now
        if backoffMs > 0 {
            var stop = [Poll.readable(context.stopFD)]
            _ = try? Poll.wait(&stop, timeoutMilliseconds: Int32(backoffMs))
            if context.shouldStop { return }
        }
        // Bounded in attempts, not only in messages, so an error that repeats cannot hold us here.
        var drained: UInt64 = 0
        var attempts = 0
        while attempts < 1 << 22 {
            attempts += 1
            let status = pbs_uevent_receive(monitor.fd, uevent)
            if status == PBS_UEVENT_NONE { break }
            if status == PBS_UEVENT_ERROR {
                if errno == EINTR || (errno == ENOBUFS && attempts < 8) { continue }
                break
            }
            drained += 1
        }
        counters.drained.add(drained, ordering: .relaxed)
        let before = context.resynced.load(ordering: .relaxed)
        try publishPresentDevices(flags: .resync)
        let published = context.resynced.load(ordering: .relaxed) - before
        logger.warning("""
            udev source: uevents were lost (\(reason)); drained \(drained) queued, re-enumerated, \
            published \(published) resync events (receive buffer \(mib(counters.effectiveReceiveBuffer.load(ordering: .relaxed))); \
            fix if frequent: raise --udev-receive-buffer)
            """, metadata: ["overflows": "\(counters.overflows.load(ordering: .relaxed))", "backoff_ms": "\(backoffMs)"])
    }

    /// The socket is closed or keeps failing: a new monitor, then a resync pass.
    func reopenMonitor(reason: String) throws {
        logger.error("udev source: reopening the uevent monitor: \(reason)")
        counters.monitorReopens.add(1, ordering: .relaxed)
        var stop = [Poll.readable(context.stopFD)]
        _ = try? Poll.wait(&stop, timeoutMilliseconds: 100)
        if context.shouldStop { return }
        let fresh = try UdevMonitor(context: udev, group: monitor.group, receiveBufferBytes: options.receiveBufferBytes)
        try fresh.enableReceiving()
        monitor = fresh
        consecutiveErrors = 0
        counters.overflows.add(1, ordering: .relaxed)
        try publishPresentDevices(flags: .resync)
    }

    /// Enumerates `usb_device`s and publishes how they differ from the device table:
    /// with `.coldplug` at start (every device is new), with `.resync` after an overflow
    /// (adds for new devices, a remove and an add for a device replaced at the same syspath,
    /// removes for devices gone).
    func publishPresentDevices(flags: EventFlags) throws {
        let resync = flags.contains(.resync)
        if resync { counters.resyncPasses.add(1, ordering: .relaxed) }
        let enumeration = try UdevEnumeration(context: udev)
        var seen = Set<String>()
        enumeration.forEachSyspath { path in
            guard let dev = udev_device_new_from_syspath(udev.raw, path) else { return }  // gone meanwhile
            defer { udev_device_unref(dev) }
            guard let devtype = udev_device_get_devtype(dev), strcmp(devtype, "usb_device") == 0 else { return }
            let key = String(cString: path)
            seen.insert(key)
            let receipt = pbs_monotonic_ns()
            var s = EventWriter(at: scratch, sequence: 0)
            fill(&s, LibudevDevice(raw: dev), action: .add, flags: flags, receipt: receipt)
            let fresh = UnsafePointer(s.event)
            if let known = context.deviceTable.lookup(syspath: key) {
                if known.withEvent({ Self.sameIdentity($0, fresh) }) { return }
                if resync {
                    publishResyncRemove(known, receipt: receipt)
                } else {
                    counters.duplicateAdds.add(1, ordering: .relaxed)
                    return
                }
            }
            let seq = context.publishDeviceEvent(wake: false) { w in
                Self.writeFromRecord(&w, fresh, action: .add, flags: flags, receipt: receipt)
            }.sequence
            if resync { context.resynced.add(1, ordering: .relaxed) } else { counters.coldplugged.add(1, ordering: .relaxed) }
            source.onEvent?(seq, LibudevDevice(raw: dev).view)
        }
        if resync {
            for record in context.deviceTable.records() where !seen.contains(record.syspath) {
                publishResyncRemove(record, receipt: pbs_monotonic_ns())
            }
        }
        context.producer.flush()
    }

    /// A `resync` remove of a device that is gone, or was replaced at its syspath.
    func publishResyncRemove(_ record: DeviceRecord, receipt: UInt64) {
        let seq = context.publishDeviceEvent(wake: false) { w in
            record.withEvent { Self.writeFromRecord(&w, $0, action: .remove, flags: [.resync, .fromTable], receipt: receipt) }
            w.event.pointee.kernel_seqnum = 0
        }.sequence
        context.resynced.add(1, ordering: .relaxed)
        owesWake = true
        source.onEvent?(seq, nil)
    }
}
