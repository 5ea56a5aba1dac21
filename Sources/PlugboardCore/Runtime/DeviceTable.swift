import CPlugboard
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A copy of one device's last-known event (header and strings), owned by Swift.
public struct DeviceRecord: Sendable {
    // 8-byte words so the copy is aligned like a ring slot.
    let words: [UInt64]

    /// Copies `event` (its `total_size` bytes).
    public init(copying event: UnsafePointer<pb_event>) {
        let size = min(Int(event.pointee.total_size), EventLayout.maxSize)
        var words = [UInt64](repeating: 0, count: (max(size, EventLayout.headerSize) + 7) / 8)
        words.withUnsafeMutableBytes { dst in _ = memcpy(dst.baseAddress!, event, size) }
        self.words = words
    }

    /// Calls `body` with a pointer to the stored event (valid during the call).
    public func withEvent<R>(_ body: (UnsafePointer<pb_event>) throws -> R) rethrows -> R {
        try words.withUnsafeBytes { try body($0.baseAddress!.assumingMemoryBound(to: pb_event.self)) }
    }

    /// The device's sysfs path.
    public var syspath: String { withEvent { $0.string(.syspath) } }

    /// The record's bytes (to send to a worker process).
    public var bytes: [UInt8] { words.withUnsafeBytes { Array($0) } }

    /// A record from bytes a host sent (`bytes`); nil when too short to be an event or when its
    /// own size field disagrees.
    public init?(bytes: [UInt8]) {
        guard bytes.count >= EventLayout.headerSize, bytes.count <= EventLayout.maxSize + 8 else { return nil }
        var words = [UInt64](repeating: 0, count: (bytes.count + 7) / 8)
        words.withUnsafeMutableBytes { dst in bytes.withUnsafeBytes { _ = memcpy(dst.baseAddress!, $0.baseAddress!, bytes.count) } }
        let total = words.withUnsafeBytes { Int($0.baseAddress!.assumingMemoryBound(to: pb_event.self).pointee.total_size) }
        guard total >= EventLayout.headerSize, total <= bytes.count else { return nil }
        self.words = words
    }
}

/// The set of USB devices present now, keyed by syspath, kept by the host from
/// enumeration and events. Read by plugins (`device_table` host call), by lapped
/// consumers (resync) and by `/devices`. Thread-safe; updated on device events only
/// (rare), never per synthetic event.
///
/// Bounded (`performance.max_devices`): a device event for a device not in the table when it
/// already holds `maxDevices` is refused into the table and counted (`refused`); the event
/// itself is still published to every plugin and to Redis. Devices already in the table are
/// updated and removed as ever, so a remove makes room again.
public final class DeviceTable: Sendable {
    private let devices = Mutex<[String: DeviceRecord]>([:])
    /// Most devices held.
    public let maxDevices: Int
    private let refusedCount = Atomic<UInt64>(0)

    public init(maxDevices: Int = DeviceTable.defaultMaxDevices) {
        self.maxDevices = max(1, maxDevices)
    }

    /// The default bound: far above any real host (127 devices per USB bus), small enough
    /// that a flood of invented syspaths cannot take more than 8 MiB (2 KiB per record).
    public static let defaultMaxDevices = 4096

    /// What applying an event changed.
    public enum Change: Equatable, Sendable {
        case inserted, updated, removed
        /// A remove for a device the table did not have.
        case removedUnknown
        /// A new device found the table full (`maxDevices`): it is not in the table.
        case refused
    }

    /// Applies an event: remove deletes the device, every other action inserts or updates it
    /// (refused for a new device when the table is full).
    @discardableResult
    public func apply(_ event: UnsafePointer<pb_event>) -> Change {
        let key = event.string(.syspath)
        if event.pointee.action == UInt16(PB_ACTION_REMOVE) {
            return devices.withLock { $0.removeValue(forKey: key) } == nil ? .removedUnknown : .removed
        }
        let record = DeviceRecord(copying: event)
        let change: Change = devices.withLock { d in
            if d[key] == nil && d.count >= maxDevices { return .refused }
            return d.updateValue(record, forKey: key) == nil ? .inserted : .updated
        }
        if change == .refused { refusedCount.add(1, ordering: .relaxed) }
        return change
    }

    /// Device events refused into the full table so far.
    public var refused: UInt64 { refusedCount.load(ordering: .relaxed) }

    /// The last-known record of the device at `syspath`.
    public func lookup(syspath: String) -> DeviceRecord? { devices.withLock { $0[syspath] } }

    /// Devices present.
    public var count: Int { devices.withLock { $0.count } }

    /// Every record, sorted by syspath.
    public func records() -> [DeviceRecord] {
        devices.withLock { Array($0.values) }.sorted { $0.syspath < $1.syspath }
    }

    /// Every syspath present.
    public var syspaths: Set<String> { devices.withLock { Set($0.keys) } }

    /// Replaces the whole table (after a re-enumeration, or a worker process's copy of the
    /// host's table); past `maxDevices` the rest are refused and counted.
    public func replaceAll(with records: [DeviceRecord]) {
        var d: [String: DeviceRecord] = [:]
        var refused: UInt64 = 0
        for r in records {
            if d[r.syspath] == nil && d.count >= maxDevices { refused += 1 } else { d[r.syspath] = r }
        }
        devices.withLock { $0 = d }
        if refused > 0 { refusedCount.add(refused, ordering: .relaxed) }
    }

    /// A consistent copy of the table as `pb_event`s (action `resync`), for resync callbacks.
    public func snapshot() -> DeviceSnapshot { DeviceSnapshot(records: records()) }
}

/// Device-table records laid out as ring-like slots, with a pointer array for `resync`.
public final class DeviceSnapshot {
    public let count: Int
    let storage: UnsafeMutableRawPointer
    /// `count` pointers to the records.
    public let pointers: UnsafeMutablePointer<UnsafePointer<pb_event>?>

    init(records: [DeviceRecord]) {
        count = records.count
        let stride = EventLayout.maxSize
        storage = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * stride, alignment: 64)
        pointers = .allocate(capacity: max(count, 1))
        for (i, r) in records.enumerated() {
            let slot = storage + i * stride
            r.words.withUnsafeBytes { _ = memcpy(slot, $0.baseAddress!, $0.count) }
            let e = slot.assumingMemoryBound(to: pb_event.self)
            e.pointee.action = UInt16(PB_ACTION_RESYNC)
            e.pointee.flags |= UInt16(PB_EVENT_FROM_TABLE)
            pointers[i] = UnsafePointer(e)
        }
    }

    deinit {
        storage.deallocate()
        pointers.deallocate()
    }
}
