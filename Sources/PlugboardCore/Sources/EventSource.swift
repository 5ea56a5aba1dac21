import CPlugboard
import CPlugboardSupport
import Logging
import PlugboardSystem
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Where events come from: udev, a recorded session, or a generator.
///
/// `run` is called on a dedicated thread. It returns when a finite source has
/// produced everything, or soon after `context.shouldStop` becomes true (blocking
/// sources also poll `context.stopFD`, which becomes readable on stop).
public protocol EventSource: Sendable {
    /// A short description for logs, e.g. `replay:session.jsonl`.
    var name: String { get }
    /// Finite sources end the run once every consumer has drained them; they also wait
    /// for slow consumers instead of lapping them (flow control).
    var isFinite: Bool { get }
    /// Produces events until done or stopped.
    func run(_ context: SourceContext) throws
}

/// What a source gets: the ring's producer, the device table, a stop signal.
public final class SourceContext: Sendable {
    public let producer: RingProducer
    public let deviceTable: DeviceTable
    public let logger: Logger
    let stopFlag = Atomic<Bool>(false)
    /// An eventfd that becomes readable when a stop is requested (for poll loops); -1 when none
    /// could be created (then only `shouldStop` tells).
    public var stopFD: Int32 { stopEvent?.rawValue ?? -1 }
    let stopEvent: EventFD?
    /// Events this source published.
    public let published = Atomic<UInt64>(0)
    /// Events cut to fit (strings or interfaces truncated).
    public let truncated = Atomic<UInt64>(0)
    /// Events synthesised after an overflow (resync add/remove).
    public let resynced = Atomic<UInt64>(0)

    public init(producer: RingProducer, deviceTable: DeviceTable, logger: Logger) {
        self.producer = producer
        self.deviceTable = deviceTable
        self.logger = logger
        stopEvent = try? EventFD()
    }

    deinit { try? stopEvent?.close() }

    /// True once a stop was requested.
    public var shouldStop: Bool { stopFlag.load(ordering: .relaxed) }

    /// Asks the source to stop; wakes a source blocked in poll on `stopFD`.
    ///
    /// Flow control stays on: what a finite source already produced still reaches every
    /// plugin. `Runtime.stop` abandons it only when the deadline is near (a stuck plugin).
    public func requestStop() {
        stopFlag.store(true, ordering: .relaxed)
        try? stopEvent?.signal()
    }

    /// Publishes a device event and keeps the device table in step with it.
    ///
    /// The table is updated before the event becomes visible, so a consumer that is
    /// lapped right after still finds the device in its resync snapshot. A `remove`
    /// whose attributes are missing (sysfs is gone by then) is completed from the
    /// device's last-known record and flagged `from_table`.
    /// - Returns: the event's sequence and what it changed in the table.
    @discardableResult
    public func publishDeviceEvent(wake: Bool = true, _ fill: (inout EventWriter) throws -> Void) rethrows
        -> (sequence: UInt64, change: DeviceTable.Change)
    {
        try publishDeviceEvent(wakeMode: wake ? .now : .later, fill)
    }

    /// How a published event wakes sleeping consumers: `.now` (`RingProducer.flush`), `.ifDue`
    /// (in the middle of a burst: `RingProducer.flushIfDue`), or `.later` (the source flushes).
    public enum Wake: Sendable { case now, ifDue, later }

    /// `publishDeviceEvent(wake:_:)` with the wake chosen among `Wake`'s three.
    @discardableResult
    public func publishDeviceEvent(wakeMode: Wake, _ fill: (inout EventWriter) throws -> Void) rethrows
        -> (sequence: UInt64, change: DeviceTable.Change)
    {
        var change = DeviceTable.Change.updated
        var refusedSyspath = ""
        let seq = try producer.publishWithoutWake { w in
            try fill(&w)
            let e = UnsafePointer(w.event)
            if e.pointee.action == UInt16(PB_ACTION_REMOVE), e.pointee.vendor_id == 0, e.pointee.product_id == 0,
               let known = deviceTable.lookup(syspath: e.string(.syspath))
            {
                // Keep what the remove itself says (its SEQNUM, and bus/dev when given).
                let flags = w.event.pointee.flags, seqnum = w.event.pointee.kernel_seqnum
                let busnum = w.event.pointee.busnum, devnum = w.event.pointee.devnum
                known.withEvent { w.copyAttributes(from: $0) }
                w.event.pointee.kernel_seqnum = seqnum
                if busnum != 0 { w.event.pointee.busnum = busnum }
                if devnum != 0 { w.event.pointee.devnum = devnum }
                w.event.pointee.flags |= flags | UInt16(PB_EVENT_FROM_TABLE)
                w.event.pointee.flags &= ~UInt16(PB_EVENT_COLDPLUG)
            }
            if w.event.pointee.flags & UInt16(PB_EVENT_TRUNCATED) != 0 { truncated.add(1, ordering: .relaxed) }
            change = deviceTable.apply(UnsafePointer(w.event))
            if change == .refused { refusedSyspath = e.string(.syspath) }
        }
        if change == .refused && deviceTable.refused == 1 {
            // Once: the count on /metrics says how often since.
            logger.warning("device table full: a new device was left out of it (it still reaches every plugin and Redis, but not /devices, the device_table host call or a resync) (fix: raise performance.max_devices above the devices this host can have)",
                           metadata: ["max_devices": "\(deviceTable.maxDevices)", "syspath": "\(refusedSyspath)"])
        }
        published.add(1, ordering: .relaxed)
        switch wakeMode {
        case .now: producer.flush()
        case .ifDue: producer.flushIfDue()
        case .later: break
        }
        return (seq, change)
    }
}
