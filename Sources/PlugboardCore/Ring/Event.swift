import CPlugboard

/// The string fields of a `pb_event`.
public enum EventStringField: Int, CaseIterable, Sendable {
    case syspath, devnode, serial, manufacturer, product, driver

    /// The JSON and display name of the field.
    public var name: String {
        switch self {
        case .syspath: "syspath"
        case .devnode: "devnode"
        case .serial: "serial"
        case .manufacturer: "manufacturer"
        case .product: "product"
        case .driver: "driver"
        }
    }
}

/// Event actions, mirroring `PB_ACTION_*`.
public enum EventAction: UInt16, CaseIterable, Sendable {
    case unknown = 0, add = 1, remove = 2, change = 3, bind = 4, unbind = 5, resync = 6

    /// The lowercase name used by udev and in JSON ("add", "remove"...).
    public var name: String {
        switch self {
        case .unknown: "unknown"
        case .add: "add"
        case .remove: "remove"
        case .change: "change"
        case .bind: "bind"
        case .unbind: "unbind"
        case .resync: "resync"
        }
    }

    /// Parses a udev ACTION or JSON action name.
    public init?(name: String) {
        guard let a = EventAction.allCases.first(where: { $0.name == name }) else { return nil }
        self = a
    }
}

/// Event flag bits, mirroring `PB_EVENT_*`.
public struct EventFlags: OptionSet, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let truncated = EventFlags(rawValue: UInt16(PB_EVENT_TRUNCATED))
    public static let resync = EventFlags(rawValue: UInt16(PB_EVENT_RESYNC))
    public static let coldplug = EventFlags(rawValue: UInt16(PB_EVENT_COLDPLUG))
    public static let fromTable = EventFlags(rawValue: UInt16(PB_EVENT_FROM_TABLE))

    /// Flag names for JSON, in bit order.
    public static let names: [(EventFlags, String)] = [
        (.truncated, "truncated"), (.resync, "resync"), (.coldplug, "coldplug"), (.fromTable, "from_table"),
    ]
}

extension UnsafePointer where Pointee == pb_event {
    /// The string `field` of this event, decoded as UTF-8 with invalid bytes replaced.
    ///
    /// Allocates: for tools and tests, not for the per-event hot path.
    public func string(_ field: EventStringField) -> String {
        let s = pointee[field]
        guard s.offset != 0, UInt32(s.offset) + UInt32(s.length) < pointee.total_size else { return "" }
        let base = UnsafeRawPointer(self) + Int(s.offset)
        return String(decoding: UnsafeRawBufferPointer(start: base, count: Int(s.length)), as: UTF8.self)
    }

    /// The raw bytes of string `field` (valid as long as the event is).
    public func bytes(_ field: EventStringField) -> UnsafeRawBufferPointer {
        let s = pointee[field]
        guard s.offset != 0, UInt32(s.offset) + UInt32(s.length) < pointee.total_size else {
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        return UnsafeRawBufferPointer(start: UnsafeRawPointer(self) + Int(s.offset), count: Int(s.length))
    }

    /// The interfaces stored in the event, as (class, subclass, protocol).
    public var interfaces: [(UInt8, UInt8, UInt8)] {
        withUnsafeBytes(of: pointee.interfaces) { raw in
            let n = Int(pointee.interfaces_len)
            return (0..<n).map { (raw[$0 * 3], raw[$0 * 3 + 1], raw[$0 * 3 + 2]) }
        }
    }

    public var action: EventAction { EventAction(rawValue: pointee.action) ?? .unknown }
    public var flags: EventFlags { EventFlags(rawValue: pointee.flags) }
}

extension pb_event {
    /// The `pb_str` of `field`.
    public subscript(field: EventStringField) -> pb_str {
        get {
            switch field {
            case .syspath: syspath
            case .devnode: devnode
            case .serial: serial
            case .manufacturer: manufacturer
            case .product: product
            case .driver: driver
            }
        }
        set {
            switch field {
            case .syspath: syspath = newValue
            case .devnode: devnode = newValue
            case .serial: serial = newValue
            case .manufacturer: manufacturer = newValue
            case .product: product = newValue
            case .driver: driver = newValue
            }
        }
    }
}

/// Sizes from the ABI header.
public enum EventLayout {
    /// Bytes of one slot: the largest event, header plus strings.
    public static let maxSize = Int(PB_EVENT_MAX_SIZE)
    /// Bytes of the pb_event header this host writes.
    public static let headerSize = MemoryLayout<pb_event>.size
    /// Longest string stored (excluding NUL).
    public static let stringMax = Int(PB_STRING_MAX)
    /// Most interfaces stored.
    public static let maxInterfaces = Int(PB_MAX_INTERFACES)
}
