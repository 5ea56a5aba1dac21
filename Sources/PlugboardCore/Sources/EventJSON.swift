import CPlugboard
import Foundation

/// The JSON form of a `pb_event`: one object per line in replay files and in
/// `plugboard monitor --json`. docs/replay-format.md describes every field.
///
///     {"action":"add","vendor_id":"046d","product_id":"c52b","syspath":"/sys/devices/...",...}
///
/// Numbers that udev shows in hex (ids, bcdDevice, classes) are hex strings here too.
public enum EventJSON {
    /// Every field a replay line may have.
    public static let fields: [String] = [
        "action", "flags", "sequence", "timestamp_ns", "seqnum", "busnum", "devnum", "vendor_id", "product_id",
        "bcd_device", "device_class", "device_subclass", "device_protocol", "speed_kbps", "num_interfaces",
        "interfaces", "syspath", "devnode", "serial", "manufacturer", "product", "driver", "delay_ms",
    ]

    /// Encodes an event as one JSON object (keys in a fixed order).
    public static func encode(_ e: UnsafePointer<pb_event>) -> String {
        func hex4(_ v: UInt16) -> String { String(format: "%04x", v) }
        func hex2(_ v: UInt8) -> String { String(format: "%02x", v) }
        var parts: [String] = []
        parts.append("\"sequence\":\(e.pointee.sequence)")
        parts.append("\"timestamp_ns\":\(e.pointee.timestamp_ns)")
        parts.append("\"action\":\"\(e.action.name)\"")
        let flags = EventFlags.names.filter { e.flags.contains($0.0) }.map { "\"\($0.1)\"" }
        parts.append("\"flags\":[\(flags.joined(separator: ","))]")
        parts.append("\"seqnum\":\(e.pointee.kernel_seqnum)")
        parts.append("\"busnum\":\(e.pointee.busnum)")
        parts.append("\"devnum\":\(e.pointee.devnum)")
        parts.append("\"vendor_id\":\"\(hex4(e.pointee.vendor_id))\"")
        parts.append("\"product_id\":\"\(hex4(e.pointee.product_id))\"")
        parts.append("\"bcd_device\":\"\(hex4(e.pointee.bcd_device))\"")
        parts.append("\"device_class\":\"\(hex2(e.pointee.device_class))\"")
        parts.append("\"device_subclass\":\"\(hex2(e.pointee.device_subclass))\"")
        parts.append("\"device_protocol\":\"\(hex2(e.pointee.device_protocol))\"")
        parts.append("\"speed_kbps\":\(e.pointee.speed_kbps)")
        parts.append("\"num_interfaces\":\(e.pointee.num_interfaces)")
        let ifs = e.interfaces.map { "\"\(hex2($0.0))\(hex2($0.1))\(hex2($0.2))\"" }
        parts.append("\"interfaces\":[\(ifs.joined(separator: ","))]")
        for f in EventStringField.allCases {
            parts.append("\"\(f.name)\":\(quote(e.string(f)))")
        }
        return "{" + parts.joined(separator: ",") + "}"
    }

    /// A JSON string literal for `s`.
    public static func quote(_ s: String) -> String { Text.jsonQuoted(s) }

    /// One decoded replay line, ready to be written into a slot.
    public struct Record: Sendable, Equatable {
        public var action: EventAction = .add
        public var flags: EventFlags = []
        public var seqnum: UInt64 = 0
        public var busnum: UInt16 = 0, devnum: UInt16 = 0
        public var vendorID: UInt16 = 0, productID: UInt16 = 0, bcdDevice: UInt16 = 0
        public var deviceClass: UInt8 = 0, deviceSubclass: UInt8 = 0, deviceProtocol: UInt8 = 0
        public var speedKbps: UInt32 = 0
        public var numInterfaces: UInt8? = nil
        public var interfaces: [(UInt8, UInt8, UInt8)] = []
        public var strings: [EventStringField: String] = [:]
        public var delayMilliseconds: Double = 0

        public static func == (a: Record, b: Record) -> Bool {
            a.action == b.action && a.flags == b.flags && a.seqnum == b.seqnum && a.busnum == b.busnum
                && a.devnum == b.devnum && a.vendorID == b.vendorID && a.productID == b.productID
                && a.bcdDevice == b.bcdDevice && a.deviceClass == b.deviceClass
                && a.deviceSubclass == b.deviceSubclass && a.deviceProtocol == b.deviceProtocol
                && a.speedKbps == b.speedKbps && a.numInterfaces == b.numInterfaces
                && a.interfaces.elementsEqual(b.interfaces, by: ==) && a.strings == b.strings
                && a.delayMilliseconds == b.delayMilliseconds
        }

        /// Writes the record into an event being built.
        public func write(into w: inout EventWriter) {
            w.action = action
            w.insert(flags: flags)
            let e = w.event
            e.pointee.kernel_seqnum = seqnum
            e.pointee.busnum = busnum
            e.pointee.devnum = devnum
            e.pointee.vendor_id = vendorID
            e.pointee.product_id = productID
            e.pointee.bcd_device = bcdDevice
            e.pointee.device_class = deviceClass
            e.pointee.device_subclass = deviceSubclass
            e.pointee.device_protocol = deviceProtocol
            e.pointee.speed_kbps = speedKbps
            for i in interfaces { w.appendInterface(class: i.0, subclass: i.1, protocol: i.2) }
            if let numInterfaces { e.pointee.num_interfaces = max(numInterfaces, e.pointee.interfaces_len) }
            for f in EventStringField.allCases { if let s = strings[f] { w.setString(f, s) } }
        }
    }

    /// Decodes one line. `file` and `line` go into error messages.
    /// - Throws: `PlugboardError` naming the file, line, field and the fix.
    public static func decode(line text: String, file: String, line: Int) throws -> Record {
        let place = "\(file):\(line)"
        func bad(_ field: String?, _ reason: String, _ fix: String) -> PlugboardError {
            PlugboardError(code: "replay.field", file: place, field: field, reason: reason, fix: fix)
        }
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: Data(text.utf8)) } catch {
            throw bad(nil, "not valid JSON", "write one JSON object per line (docs/replay-format.md)")
        }
        guard let dict = object as? [String: Any] else {
            throw bad(nil, "expected a JSON object, found \(type(of: object))", "write one JSON object per line")
        }
        var r = Record()
        for key in dict.keys where !fields.contains(key) {
            let hint = Text.closestMatch(to: key, in: fields).map { " (did you mean '\($0)'?)" } ?? ""
            throw bad(key, "unknown field\(hint)", "remove it or use one of: \(fields.joined(separator: ", "))")
        }
        func hex<T: FixedWidthInteger & UnsignedInteger>(_ key: String, _: T.Type, digits: Int) throws -> T? {
            guard let v = dict[key] else { return nil }
            if let s = v as? String, !s.isEmpty, s.count <= digits, let n = T(s, radix: 16) { return n }
            if let n = v as? Int, n >= 0, n <= Int(T.max) { return T(n) }
            throw bad(key, "expected \(digits) hex digits like \"\(String(repeating: "0", count: digits - 1))1\", found \(v)",
                      "write the value in hexadecimal as udev shows it")
        }
        func int<T: FixedWidthInteger>(_ key: String, _: T.Type) throws -> T? {
            guard let v = dict[key] else { return nil }
            guard let n = v as? Int, let t = T(exactly: n) else {
                throw bad(key, "expected an integer from \(T.min) to \(T.max), found \(v)", "fix the number")
            }
            return t
        }
        guard let action = dict["action"] as? String else {
            throw bad("action", "missing or not a string", "add \"action\": one of add, remove, change, bind, unbind")
        }
        guard let a = EventAction(name: action), a != .unknown, a != .resync else {
            throw bad("action", "unknown action '\(action)'", "use one of add, remove, change, bind, unbind")
        }
        r.action = a
        if let fl = dict["flags"] {
            guard let names = fl as? [String] else { throw bad("flags", "expected an array of strings", "e.g. [\"coldplug\"]") }
            for n in names {
                guard let f = EventFlags.names.first(where: { $0.1 == n }) else {
                    throw bad("flags", "unknown flag '\(n)'", "use \(EventFlags.names.map(\.1).joined(separator: ", "))")
                }
                r.flags.insert(f.0)
            }
        }
        r.seqnum = try int("seqnum", UInt64.self) ?? 0
        r.busnum = try int("busnum", UInt16.self) ?? 0
        r.devnum = try int("devnum", UInt16.self) ?? 0
        r.vendorID = try hex("vendor_id", UInt16.self, digits: 4) ?? 0
        r.productID = try hex("product_id", UInt16.self, digits: 4) ?? 0
        r.bcdDevice = try hex("bcd_device", UInt16.self, digits: 4) ?? 0
        r.deviceClass = try hex("device_class", UInt8.self, digits: 2) ?? 0
        r.deviceSubclass = try hex("device_subclass", UInt8.self, digits: 2) ?? 0
        r.deviceProtocol = try hex("device_protocol", UInt8.self, digits: 2) ?? 0
        r.speedKbps = try int("speed_kbps", UInt32.self) ?? 0
        r.numInterfaces = try int("num_interfaces", UInt8.self)
        if let ifs = dict["interfaces"] {
            guard let list = ifs as? [String] else {
                throw bad("interfaces", "expected an array of 6-hex-digit strings", "e.g. [\"030101\"] (class, subclass, protocol)")
            }
            for s in list {
                guard s.count == 6, let v = UInt32(s, radix: 16) else {
                    throw bad("interfaces", "'\(s)' is not 6 hex digits", "write class, subclass, protocol as e.g. \"080650\"")
                }
                r.interfaces.append((UInt8(v >> 16), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)))
            }
        }
        for f in EventStringField.allCases {
            guard let v = dict[f.name] else { continue }
            guard let s = v as? String else { throw bad(f.name, "expected a string", "quote the value") }
            if !s.isEmpty { r.strings[f] = s }
        }
        guard r.strings[.syspath] != nil else {
            throw bad("syspath", "missing", "every event needs the device's syspath, e.g. \"/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1\"")
        }
        if let d = dict["delay_ms"] {
            guard let ms = d as? Double, ms >= 0, ms <= 60_000 else {
                throw bad("delay_ms", "expected a number of milliseconds from 0 to 60000", "fix the delay")
            }
            r.delayMilliseconds = ms
        }
        return r
    }
}
