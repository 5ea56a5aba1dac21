import CPlugboard
import CPlugboardSupport
import CUdev
import Logging
import PlugboardCore

#if canImport(Glibc)
import Glibc
#endif

/// The live event source: USB devices from libudev (docs/udev.md).
///
/// At start it opens a netlink monitor (group `udev`, or `kernel` where udevd is absent),
/// filtered to subsystem `usb` in the kernel, with a large receive buffer; then it
/// enumerates the devices present and publishes them as coldplug adds; then it publishes
/// each uevent as it arrives, keeping the device table in step. On a receive overflow it
/// drains, re-enumerates and publishes the difference as `resync` events.
///
/// Only `usb_device`s become events; `usb_interface` uevents are folded into their device
/// (its interface list). Events are written straight into ring slots from `udev_device_get_*`.
public struct UdevSource: EventSource {
    public let options: UdevSourceOptions
    public let counters: UdevSourceCounters
    /// Test seam: injected receive failures (nil in production).
    public let faults: UdevFaultInjection?
    /// Called on the source thread right after each event is published, with its ring sequence
    /// and the udev device it was built from (valid during the call; nil for events built from
    /// the device table alone, such as resync removes). For tools (`plugboard monitor
    /// --properties`); keep it short.
    public let onEvent: (@Sendable (UInt64, UdevDeviceView?) -> Void)?

    public init(options: UdevSourceOptions = UdevSourceOptions(), counters: UdevSourceCounters = UdevSourceCounters(),
                faults: UdevFaultInjection? = nil, onEvent: (@Sendable (UInt64, UdevDeviceView?) -> Void)? = nil) {
        self.options = options
        self.counters = counters
        self.faults = faults
        self.onEvent = onEvent
    }

    public var name: String { "udev" }
    public var isFinite: Bool { false }

    /// The mode `run` will use: `options.mode`, with `.auto` resolved by looking for udevd's control socket.
    public var resolvedMode: UdevMode {
        switch options.mode {
        case .auto: access(options.udevControlPath, F_OK) == 0 ? .udev : .kernel
        case let m: m
        }
    }

    public func run(_ context: SourceContext) throws {
        let session = try UdevSession(source: self, context: context)
        try session.run()
    }
}

/// The state of one run of the udev source; lives on the source thread only.
final class UdevSession {
    let source: UdevSource
    let options: UdevSourceOptions
    let counters: UdevSourceCounters
    let context: SourceContext
    let logger: Logger
    let mode: UdevMode
    let udev: UdevContext
    var monitor: UdevMonitor
    /// One event-sized buffer for the rare cases that must look at an event before publishing
    /// it (an add at a syspath already present, resync diffs). Allocated once.
    let scratch: UnsafeMutableRawPointer
    /// Room for decoding udev's `\xNN`-escaped strings. Allocated once.
    let decodeBuffer: UnsafeMutableRawBufferPointer
    var consecutiveErrors = 0
    var lastOverflowNs: UInt64 = 0
    var backoffMs = 0

    init(source: UdevSource, context: SourceContext) throws {
        self.source = source
        options = source.options
        counters = source.counters
        self.context = context
        logger = context.logger
        mode = source.resolvedMode
        udev = try UdevContext()
        monitor = try UdevMonitor(context: udev, group: mode == .udev ? "udev" : "kernel",
                                  receiveBufferBytes: options.receiveBufferBytes)
        scratch = UnsafeMutableRawPointer.allocate(byteCount: EventLayout.maxSize, alignment: 64)
        decodeBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024, alignment: 8)
    }

    deinit {
        scratch.deallocate()
        decodeBuffer.deallocate()
    }

    func run() throws {
        try monitor.enableReceiving()
        counters.modeValue.store(mode == .udev ? 1 : 2, ordering: .releasing)
        logMode()
        logReceiveBuffer()
        // The monitor receives before the enumeration starts, so a device plugged in during
        // the enumeration is seen at least once (twice is handled: see `handleAdd`).
        if options.coldplug { try publishPresentDevices(flags: .coldplug) }
        counters.ready.store(true, ordering: .releasing)
        try loop()
    }

    private func logMode() {
        switch (options.mode, mode) {
        case (.auto, .udev):
            logger.info("udev source: mode udev (udevd runs: \(options.udevControlPath) exists); attributes from udev properties")
        case (.auto, _):
            logger.notice("udev source: mode kernel (no \(options.udevControlPath): udevd is not running here); reading vid/pid/serial from sysfs attributes")
        default:
            logger.info("udev source: mode \(mode) (forced); \(mode == .udev ? "attributes from udev properties" : "attributes from sysfs")")
        }
    }

    private func logReceiveBuffer() {
        let granted = monitor.effectiveReceiveBuffer
        counters.effectiveReceiveBuffer.store(granted, ordering: .relaxed)
        let asked = options.receiveBufferBytes
        let meta: Logger.Metadata = ["requested_bytes": "\(asked)", "so_rcvbuf_bytes": "\(granted)"]
        if asked > 0 && granted >= 0 && granted < asked {
            logger.warning("""
                udev source: receive buffer is \(mib(granted)) (SO_RCVBUF), less than the \(mib(asked)) requested; \
                larger bursts overflow and are recovered by resync (fix: run as root / with CAP_NET_ADMIN, \
                or raise net.core.rmem_max)
                """, metadata: meta)
        } else {
            logger.info("udev source: receive buffer \(mib(granted)) (SO_RCVBUF as the kernel reports it, twice the \(mib(asked)) requested)",
                        metadata: meta)
        }
    }

    // MARK: the monitor loop

    private func loop() throws {
        var fds = [pollfd(fd: monitor.fd, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: context.stopFD, events: Int16(POLLIN), revents: 0)]
        while true {
            if context.shouldStop { return drainOnStop() }
            var revents: Int16
            if let faults = source.faults, faults.take(faults.pollErrors) {
                revents = Int16(POLLERR)
            } else {
                fds[0].fd = monitor.fd
                let r = poll(&fds, 2, -1)
                if r < 0 {
                    if errno == EINTR { continue }
                    throw UdevError.make("udev.poll", reason: "poll on the uevent socket failed: \(errnoText(errno))")
                }
                if fds[1].revents != 0 { return drainOnStop() }
                revents = fds[0].revents
            }
            if revents & Int16(POLLNVAL | POLLHUP) != 0 {
                try reopenMonitor(reason: "the uevent socket was closed (poll \(revents))")
            } else if revents & Int16(POLLERR) != 0 {
                try recoverFromOverflow(reason: "POLLERR")
            } else if revents & Int16(POLLIN) != 0 {
                try readBatch()
            }
        }
    }

    /// Reads up to `options.batch` messages. Each live event wakes sleeping consumers as soon as
    /// it is published (a wake costs a futex call only when a consumer sleeps, so a burst read
    /// by busy workers pays nothing); the final flush covers the resync paths.
    private func readBatch() throws {
        defer { context.producer.flush() }
        for _ in 0..<max(1, options.batch) {
            let dev: OpaquePointer?
            if let faults = source.faults, faults.take(faults.receiveErrors) {
                errno = faults.receiveErrno.load(ordering: .relaxed)
                dev = nil
            } else {
                dev = monitor.receive()
            }
            let receipt = pbs_monotonic_ns()
            guard let dev else {
                let err = errno
                if err == EAGAIN || err == EWOULDBLOCK || err == 0 { return }
                if err == EINTR { continue }
                try handleReceiveError(err)
                return
            }
            consecutiveErrors = 0
            counters.received.add(1, ordering: .relaxed)
            handle(dev, receipt: receipt)
            udev_device_unref(dev)
        }
    }

    private func handleReceiveError(_ err: Int32) throws {
        if err == ENOBUFS {
            try recoverFromOverflow(reason: "ENOBUFS")
            return
        }
        // A message libudev refused (bad format, untrusted sender...): it was consumed, so
        // reading on cannot spin; but an error that repeats without any success means the
        // socket itself is broken.
        consecutiveErrors += 1
        logger.debug("udev source: uevent refused by libudev: \(errnoText(err))")
        if consecutiveErrors >= 64 {
            try reopenMonitor(reason: "64 receive errors in a row, last: \(errnoText(err))")
        }
    }

    /// Reads what is already queued when a stop is requested (bounded in time), so events
    /// sent before the stop reach the plugins.
    private func drainOnStop() {
        let end = pbs_monotonic_ns() + UInt64(max(0, options.drainOnStopMilliseconds)) * 1_000_000
        while pbs_monotonic_ns() < end {
            guard let dev = monitor.receive() else {
                if errno == EINTR { continue }
                break
            }
            let receipt = pbs_monotonic_ns()
            counters.received.add(1, ordering: .relaxed)
            handle(dev, receipt: receipt)
            udev_device_unref(dev)
        }
        context.producer.flush()
    }

    // MARK: one uevent

    /// Publishes what one uevent means for the plugins (see docs/udev.md, "Edge cases").
    func handle(_ dev: OpaquePointer, receipt: UInt64) {
        guard let syspath = udev_device_get_syspath(dev) else { return }
        let devtype = udev_device_get_devtype(dev)
        let action = Self.action(udev_device_get_action(dev))
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
            let seq = context.publishDeviceEvent(wake: true) { w in
                if let known {
                    known.withEvent { fill(&w, dev, action: action, flags: [], receipt: receipt, known: $0) }
                } else {
                    fill(&w, dev, action: action, flags: [], receipt: receipt)
                }
            }.sequence
            source.onEvent?(seq, UdevDeviceView(raw: dev))
        }
    }

    /// A remove carries the device's last-known attributes: sysfs is gone (or, after a quick
    /// replug, already holds the next device), so nothing is read from it.
    private func handleRemove(_ dev: OpaquePointer, syspath: UnsafePointer<CChar>, receipt: UInt64) {
        let key = String(cString: syspath)
        guard let known = context.deviceTable.lookup(syspath: key) else {
            // A duplicate remove, or the remove of a device whose add was never seen: the
            // plugins never heard of it, so they are not told it left.
            counters.unknownRemoves.add(1, ordering: .relaxed)
            logger.debug("udev source: remove of a device not in the table ignored", metadata: ["syspath": "\(key)"])
            return
        }
        let seqnum = udev_device_get_seqnum(dev)
        let seq = context.publishDeviceEvent(wake: true) { w in
            known.withEvent { Self.writeFromRecord(&w, $0, action: .remove, flags: .fromTable, receipt: receipt) }
            w.event.pointee.kernel_seqnum = seqnum
        }.sequence
        source.onEvent?(seq, UdevDeviceView(raw: dev))
    }

    /// An add at a syspath already in the table is either the coldplug/hotplug race (same
    /// device seen by the enumeration and the monitor: dropped) or a replug whose remove was
    /// lost (another device: a resync remove of the old one is published first).
    private func handleAdd(_ dev: OpaquePointer, syspath: UnsafePointer<CChar>, receipt: UInt64) {
        let key = String(cString: syspath)
        guard let known = context.deviceTable.lookup(syspath: key) else {
            let seq = context.publishDeviceEvent(wake: true) { w in
                fill(&w, dev, action: .add, flags: [], receipt: receipt)
            }.sequence
            source.onEvent?(seq, UdevDeviceView(raw: dev))
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
        let seq = context.publishDeviceEvent(wake: true) { w in
            Self.writeFromRecord(&w, fresh, action: .add, flags: [], receipt: receipt)
            w.event.pointee.kernel_seqnum = fresh.pointee.kernel_seqnum
        }.sequence
        source.onEvent?(seq, UdevDeviceView(raw: dev))
    }

    /// `usb_interface` uevents update their device's interface list. Only an add that brings
    /// a new (class, subclass, protocol) triple is published, as a `change` of the device;
    /// interface removes, binds and unbinds are counted and dropped (the device's own
    /// remove, bind and unbind are what plugins act on).
    private func handleInterface(_ dev: OpaquePointer, action: EventAction, syspath: UnsafePointer<CChar>, receipt: UInt64) {
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
        let seqnum = udev_device_get_seqnum(dev)
        let seq = context.publishDeviceEvent(wake: true) { w in
            known.withEvent { Self.writeFromRecord(&w, $0, action: .change, flags: .fromTable, receipt: receipt) }
            w.event.pointee.kernel_seqnum = seqnum
            w.appendInterface(class: t.0, subclass: t.1, protocol: t.2)
        }.sequence
        source.onEvent?(seq, UdevDeviceView(raw: dev))
    }

    private func interfaceTriple(_ dev: OpaquePointer) -> (UInt8, UInt8, UInt8)? {
        if let c = UdevValue.hex8(udev_device_get_sysattr_value(dev, "bInterfaceClass")) {
            let s = UdevValue.hex8(udev_device_get_sysattr_value(dev, "bInterfaceSubClass")) ?? 0
            let p = UdevValue.hex8(udev_device_get_sysattr_value(dev, "bInterfaceProtocol")) ?? 0
            return (c, s, p)
        }
        if let (c, s, p) = UdevValue.triple(udev_device_get_property_value(dev, "INTERFACE"), radix: 10, maxDigits: 3, max: 255) {
            return (UInt8(c), UInt8(s), UInt8(p))
        }
        counters.badValues.add(1, ordering: .relaxed)
        return nil
    }

    // MARK: overflow and resync

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
            var stop = pollfd(fd: context.stopFD, events: Int16(POLLIN), revents: 0)
            _ = poll(&stop, 1, Int32(backoffMs))
            if context.shouldStop { return }
        }
        // Bounded in attempts, not only in messages, so an error that repeats cannot hold us here.
        var drained: UInt64 = 0
        var attempts = 0
        while attempts < 1 << 22 {
            attempts += 1
            guard let dev = monitor.receive() else {
                if errno == EINTR || (errno == ENOBUFS && attempts < 8) { continue }
                break
            }
            udev_device_unref(dev)
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

    private func reopenMonitor(reason: String) throws {
        logger.error("udev source: reopening the uevent monitor: \(reason)")
        counters.monitorReopens.add(1, ordering: .relaxed)
        var stop = pollfd(fd: context.stopFD, events: Int16(POLLIN), revents: 0)
        _ = poll(&stop, 1, 100)
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
            fill(&s, dev, action: .add, flags: flags, receipt: receipt)
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
            source.onEvent?(seq, UdevDeviceView(raw: dev))
        }
        if resync {
            for record in context.deviceTable.records() where !seen.contains(record.syspath) {
                publishResyncRemove(record, receipt: pbs_monotonic_ns())
            }
        }
        context.producer.flush()
    }

    private func publishResyncRemove(_ record: DeviceRecord, receipt: UInt64) {
        let seq = context.publishDeviceEvent(wake: false) { w in
            record.withEvent { Self.writeFromRecord(&w, $0, action: .remove, flags: [.resync, .fromTable], receipt: receipt) }
            w.event.pointee.kernel_seqnum = 0
        }.sequence
        context.resynced.add(1, ordering: .relaxed)
        source.onEvent?(seq, nil)
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

func mib(_ bytes: Int) -> String {
    bytes < 0 ? "unknown" : bytes % (1 << 20) == 0 ? "\(bytes >> 20) MiB" : "\(bytes) bytes"
}
