import CPlugboard

/// One field of the event schema: the names every form of a `pb_event` uses.
///
/// `EventSchema.entries` holds one row per case, in this order; `monitor --json`, replay files,
/// the Redis stream entry, the PUBLISH payload, `tail --json` and `/devices` all come from it.
public enum EventField: Int, CaseIterable, Sendable {
    case sequence, timestampNs, action, flags, seqnum, busnum, devnum, vendorID, productID, bcdDevice
    case deviceClass, deviceSubclass, deviceProtocol, speedKbps, numInterfaces, interfaces
    case syspath, devnode, serial, manufacturer, product, driver

    /// This field's row of the schema.
    public var schema: EventSchema.Entry { EventSchema.entries[rawValue] }
    /// The field's name in every form ("vendor_id").
    public var name: String { schema.name }
}

/// How a field's value is written: the same value in every form. JSON forms (monitor, replay,
/// PUBLISH, `tail --json`, `/devices`) use the JSON type given; a Redis stream entry holds text.
public enum EventValueFormat: Sendable, Equatable {
    /// An unsigned integer: a JSON number; decimal digits in a stream entry.
    case decimal
    /// Exactly `digits` lowercase hex digits ("046d"): a JSON string; the same text in a stream entry.
    case hex(digits: Int)
    /// The action name (`pb_action_name`: "add", "remove"...): a string.
    case action
    /// The flag names set, in bit order ("coldplug", "from_table"): a JSON array of strings;
    /// joined by "," in a stream entry ("" when none).
    case flags
    /// The stored interfaces, each 6 hex digits: class, subclass, protocol ("080650"): a JSON
    /// array of strings; joined by "," in a stream entry ("" when none).
    case interfaces
    /// One of the event's strings, as udev gave it: a string.
    case string
}

/// A field's value, parsed from any form or read from an event.
public enum EventValue: Sendable, Equatable {
    /// `.decimal`, `.hex`, `.action` (the `PB_ACTION_*` code) and `.flags` (the `PB_EVENT_*` bits).
    case number(UInt64)
    /// `.interfaces`: each `class << 16 | subclass << 8 | protocol`.
    case interfaces([UInt32])
    /// `.string`.
    case string(String)
}

/// The event schema: one row per `pb_event` field, with its name, the names older versions
/// wrote (still read), its value format and how it is read from and written to a `pb_event`.
///
/// The names are the ABI's (SDK/include/plugboard.h): what plugin authors see in `pb_event`
/// and in recorded sessions. docs/replay-format.md and docs/redis.md list the same table.
public enum EventSchema {
    /// One row of the schema.
    public struct Entry: Sendable {
        public let field: EventField
        /// The name in every form.
        public let name: String
        /// Names older Plugboard versions wrote (the Redis stream before the schema was unified):
        /// still accepted when reading a replay file or a stream entry.
        public let aliases: [String]
        public let format: EventValueFormat
        /// The `pb_event` member it mirrors.
        public let member: String
        /// One line for the docs.
        public let meaning: String
        /// The host assigns it on receipt: a replay line's value is ignored.
        public let hostAssigned: Bool
        /// The largest value the `pb_event` member holds (numeric formats).
        public let max: UInt64
        /// The numeric value in an event (`.decimal`, `.hex`, `.action`, `.flags`); 0 for the others.
        public let read: @Sendable (UnsafePointer<pb_event>) -> UInt64
        /// Stores a numeric value (at most `max`) into an event; does nothing for the other formats.
        public let write: @Sendable (UnsafeMutablePointer<pb_event>, UInt64) -> Void
        /// The string this row names (`.string` format).
        public let stringField: EventStringField?

        /// Every name this field is read under: its name, then its aliases.
        public var acceptedNames: [String] { [name] + aliases }
    }

    /// The schema, in the order every form writes the fields.
    public static let entries: [Entry] = [
        number(.sequence, "sequence", aliases: ["seq"], .decimal, UInt64.self, host: true,
               "host sequence: 1, 2, 3... without gaps for one run", { $0.pointee.sequence }, { $0.pointee.sequence = $1 }),
        number(.timestampNs, "timestamp_ns", aliases: ["ts_ns"], .decimal, UInt64.self, host: true,
               "receipt time, CLOCK_MONOTONIC nanoseconds", { $0.pointee.timestamp_ns }, { $0.pointee.timestamp_ns = $1 }),
        number(.action, "action", .action, UInt16.self, "add, remove, change, bind, unbind (resync, unknown)",
               { $0.pointee.action }, { $0.pointee.action = $1 }, member: "action"),
        number(.flags, "flags", .flags, UInt16.self, "truncated, resync, coldplug, from_table (PB_EVENT_* bits)",
               { $0.pointee.flags }, { $0.pointee.flags |= $1 }, member: "flags"),
        number(.seqnum, "seqnum", aliases: ["kseq"], .decimal, UInt64.self, "the kernel's SEQNUM, 0 when unknown",
               { $0.pointee.kernel_seqnum }, { $0.pointee.kernel_seqnum = $1 }, member: "kernel_seqnum"),
        number(.busnum, "busnum", aliases: ["bus"], .decimal, UInt16.self, "USB bus number, 0 when unknown",
               { $0.pointee.busnum }, { $0.pointee.busnum = $1 }),
        number(.devnum, "devnum", aliases: ["dev"], .decimal, UInt16.self, "device address on the bus, 0 when unknown",
               { $0.pointee.devnum }, { $0.pointee.devnum = $1 }),
        number(.vendorID, "vendor_id", aliases: ["vid"], .hex(digits: 4), UInt16.self, "idVendor",
               { $0.pointee.vendor_id }, { $0.pointee.vendor_id = $1 }),
        number(.productID, "product_id", aliases: ["pid"], .hex(digits: 4), UInt16.self, "idProduct",
               { $0.pointee.product_id }, { $0.pointee.product_id = $1 }),
        number(.bcdDevice, "bcd_device", aliases: ["bcd"], .hex(digits: 4), UInt16.self, "bcdDevice (device release, BCD)",
               { $0.pointee.bcd_device }, { $0.pointee.bcd_device = $1 }),
        number(.deviceClass, "device_class", aliases: ["class"], .hex(digits: 2), UInt8.self, "bDeviceClass",
               { $0.pointee.device_class }, { $0.pointee.device_class = $1 }),
        number(.deviceSubclass, "device_subclass", aliases: ["subclass"], .hex(digits: 2), UInt8.self, "bDeviceSubClass",
               { $0.pointee.device_subclass }, { $0.pointee.device_subclass = $1 }),
        number(.deviceProtocol, "device_protocol", aliases: ["protocol"], .hex(digits: 2), UInt8.self, "bDeviceProtocol",
               { $0.pointee.device_protocol }, { $0.pointee.device_protocol = $1 }),
        number(.speedKbps, "speed_kbps", .decimal, UInt32.self, "link speed in kbit/s (480000 high speed, 1500 low speed), 0 when unknown",
               { $0.pointee.speed_kbps }, { $0.pointee.speed_kbps = $1 }),
        number(.numInterfaces, "num_interfaces", aliases: ["num_ifaces"], .decimal, UInt8.self,
               "interfaces the device has (at least the stored ones)",
               { $0.pointee.num_interfaces }, { $0.pointee.num_interfaces = $1 }),
        Entry(field: .interfaces, name: "interfaces", aliases: ["ifaces"], format: .interfaces, member: "interfaces",
              meaning: "the stored interfaces (at most 32)", hostAssigned: false, max: 0,
              read: { _ in 0 }, write: { _, _ in }, stringField: nil),
        string(.syspath, .syspath, "/sys/devices/... (required in a replay line)"),
        string(.devnode, .devnode, "/dev/bus/usb/BBB/DDD"),
        string(.serial, .serial, "serial number string"),
        string(.manufacturer, .manufacturer, "manufacturer string"),
        string(.product, .product, "product string"),
        string(.driver, .driver, "bound driver name"),
    ]

    /// The entry named `name` or one of its aliases.
    public static func entry(named name: String) -> Entry? {
        entries.first { $0.name == name } ?? entries.first { $0.aliases.contains(name) }
    }

    private static func number<T: FixedWidthInteger & UnsignedInteger & SendableMetatype>(
        _ field: EventField, _ name: String, aliases: [String] = [], _ format: EventValueFormat, _: T.Type,
        host: Bool = false, _ meaning: String,
        _ read: @escaping @Sendable (UnsafePointer<pb_event>) -> T,
        _ write: @escaping @Sendable (UnsafeMutablePointer<pb_event>, T) -> Void, member: String? = nil
    ) -> Entry {
        Entry(field: field, name: name, aliases: aliases, format: format, member: member ?? name, meaning: meaning,
              hostAssigned: host, max: UInt64(T.max),
              read: { UInt64(read($0)) }, write: { write($0, T(truncatingIfNeeded: $1)) }, stringField: nil)
    }

    private static func string(_ field: EventField, _ s: EventStringField, _ meaning: String) -> Entry {
        Entry(field: field, name: s.name, aliases: [], format: .string, member: s.name, meaning: meaning,
              hostAssigned: false, max: 0, read: { _ in 0 }, write: { _, _ in }, stringField: s)
    }
}

extension EventSchema.Entry {
    /// This field's value in event `e` (allocates for lists and strings: for tools and tests).
    public func value(in e: UnsafePointer<pb_event>) -> EventValue {
        switch format {
        case .decimal, .hex, .action, .flags: return .number(read(e))
        case .interfaces: return .interfaces(e.interfaces.map { UInt32($0.0) << 16 | UInt32($0.1) << 8 | UInt32($0.2) })
        case .string: return .string(e.string(stringField!))
        }
    }
}

/// Field values parsed from one form: enough to write a `pb_event` (see `write(into:)`).
public struct EventRecord: Sendable, Equatable {
    public var values: [EventField: EventValue] = [:]
    /// Replay pacing: wait this long before the event (not part of the event).
    public var delayMilliseconds: Double = 0

    public init(values: [EventField: EventValue] = [:]) { self.values = values }

    /// Every field of `event`.
    public init(event: UnsafePointer<pb_event>) {
        for entry in EventSchema.entries { values[entry.field] = entry.value(in: event) }
    }

    public subscript(_ field: EventField) -> EventValue? {
        get { values[field] }
        set { values[field] = newValue }
    }

    /// The numeric value of `field`, or nil when absent or not a number.
    public func number(_ field: EventField) -> UInt64? {
        if case .number(let n) = values[field] { n } else { nil }
    }

    /// The string `field`, or nil when absent.
    public func string(_ field: EventField) -> String? {
        if case .string(let s) = values[field] { s } else { nil }
    }

    /// Writes the values into an event being built; absent fields stay zero (or empty).
    /// - Parameter hostFields: also write `sequence` and `timestamp_ns` (a replay leaves them to the host).
    public func write(into w: inout EventWriter, hostFields: Bool = false) {
        for entry in EventSchema.entries {
            guard let v = values[entry.field], hostFields || !entry.hostAssigned else { continue }
            switch (entry.format, v) {
            case (.interfaces, .interfaces(let list)):
                // After num_interfaces (table order): appending raises the count to at least the list's.
                for i in list { w.appendInterface(class: UInt8(i >> 16 & 0xff), subclass: UInt8(i >> 8 & 0xff), protocol: UInt8(i & 0xff)) }
            case (.string, .string(let s)):
                w.setString(entry.stringField!, s)
            case (_, .number(let n)):
                entry.write(w.event, n)
            default:
                break
            }
        }
    }
}
