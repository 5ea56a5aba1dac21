import CPlugboard
import CPlugboardSupport

#if canImport(Glibc)
import Glibc
#endif

/// Fills one `pb_event` in place: a ring slot or any buffer of `EventLayout.maxSize` bytes.
///
/// Strings are appended to the slot's string area; one that does not fit (or is
/// longer than `PB_STRING_MAX`) is cut, and the event is flagged `truncated`.
/// Writing never allocates.
public struct EventWriter: ~Copyable {
    @usableFromInline let base: UnsafeMutableRawPointer
    @usableFromInline var stringEnd: Int
    @usableFromInline let capacity: Int

    /// Starts a fresh event at `base` (capacity bytes, 8-byte aligned): zeroes the header.
    @inlinable
    public init(at base: UnsafeMutableRawPointer, capacity: Int = EventLayout.maxSize, sequence: UInt64) {
        self.base = base
        self.capacity = capacity
        self.stringEnd = EventLayout.headerSize
        memset(base, 0, EventLayout.headerSize)
        let e = base.assumingMemoryBound(to: pb_event.self)
        e.pointee.size = UInt32(EventLayout.headerSize)
        e.pointee.total_size = UInt32(EventLayout.headerSize)
        e.pointee.sequence = sequence
        e.pointee.timestamp_ns = pbs_monotonic_ns()
    }

    /// Direct access to the fixed fields of the event being written.
    @inlinable
    public var event: UnsafeMutablePointer<pb_event> { base.assumingMemoryBound(to: pb_event.self) }

    @inlinable public var action: EventAction {
        get { EventAction(rawValue: event.pointee.action) ?? .unknown }
        set { event.pointee.action = newValue.rawValue }
    }

    @inlinable public mutating func insert(flags: EventFlags) { event.pointee.flags |= flags.rawValue }

    /// Appends `bytes` as string `field`; cuts and flags the event when it does not fit.
    @inlinable
    public mutating func setString(_ field: EventStringField, _ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0, let src = bytes.baseAddress else {
            event.pointee[field] = pb_str(offset: 0, length: 0)
            return
        }
        let room = capacity - stringEnd - 1  // keep one byte for the NUL
        var n = min(bytes.count, EventLayout.stringMax)
        if n > room { n = max(room, 0) }
        if n < bytes.count { insert(flags: .truncated) }
        guard n > 0 else { return }
        memcpy(base + stringEnd, src, n)
        base.storeBytes(of: 0, toByteOffset: stringEnd + n, as: UInt8.self)
        event.pointee[field] = pb_str(offset: UInt16(stringEnd), length: UInt16(n))
        stringEnd += n + 1
        event.pointee.total_size = UInt32(stringEnd)
    }

    /// Appends the UTF-8 bytes of `string` as string `field` (see `setString(_:_:)` for bytes).
    @inlinable
    public mutating func setString(_ field: EventStringField, _ string: String) {
        var s = string
        s.withUTF8 { setString(field, UnsafeRawBufferPointer($0)) }
    }

    /// Appends a NUL-terminated C string as string `field`; nil leaves it absent.
    @inlinable
    public mutating func setString(_ field: EventStringField, cString: UnsafePointer<CChar>?) {
        guard let cString else { return }
        setString(field, UnsafeRawBufferPointer(start: cString, count: strlen(cString)))
    }

    /// Appends one interface triple; past `PB_MAX_INTERFACES` only counts it and flags the event.
    @inlinable
    public mutating func appendInterface(class c: UInt8, subclass: UInt8, protocol p: UInt8) {
        let i = Int(event.pointee.interfaces_len)
        guard i < EventLayout.maxInterfaces else {
            insert(flags: .truncated)
            return
        }
        let offset = MemoryLayout<pb_event>.offset(of: \pb_event.interfaces)! + i * 3
        base.storeBytes(of: c, toByteOffset: offset, as: UInt8.self)
        base.storeBytes(of: subclass, toByteOffset: offset + 1, as: UInt8.self)
        base.storeBytes(of: p, toByteOffset: offset + 2, as: UInt8.self)
        event.pointee.interfaces_len = UInt8(i + 1)
        if event.pointee.num_interfaces < event.pointee.interfaces_len {
            event.pointee.num_interfaces = event.pointee.interfaces_len
        }
    }

    /// Copies the fields and strings of another event (for remove events that carry last-known
    /// attributes, and for device-table records). Keeps this event's sequence and timestamp.
    @inlinable
    public mutating func copyAttributes(from other: UnsafePointer<pb_event>) {
        let seq = event.pointee.sequence
        let ts = event.pointee.timestamp_ns
        let action = event.pointee.action
        let size = min(Int(other.pointee.total_size), capacity)
        memcpy(base, other, size)
        event.pointee.sequence = seq
        event.pointee.timestamp_ns = ts
        event.pointee.action = action
        stringEnd = size
    }
}
