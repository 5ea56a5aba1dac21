import CPlugboard

/// A device described by hand (`plugboard explain --device 046d:c52b:03`), turned into a real
/// `pb_event` for the match index, and explained rule by rule.
public struct DeviceQuery: Sendable, Equatable {
    public var vendor: UInt16
    public var product: UInt16
    /// Checked against both the device class and the interface classes (a device presents its class
    /// in either place; HID keyboards, for instance, have device class 00 and interface class 03).
    /// nil: device class 00 and no interfaces.
    public var classCode: UInt8?
    public var serial: String?
    public var action: UInt16

    public init(vendor: UInt16, product: UInt16, classCode: UInt8? = nil, serial: String? = nil, action: UInt16 = UInt16(PB_ACTION_ADD)) {
        self.vendor = vendor
        self.product = product
        self.classCode = classCode
        self.serial = serial
        self.action = action
    }

    /// Parses `VID:PID` or `VID:PID:CLASS` (hex). Throws a `ManifestError` naming `--device` and the fix.
    public init(parsing text: String, serial: String? = nil, action: String = "add") throws {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        let fix = "write --device VID:PID or VID:PID:CLASS in hex, e.g. 046d:c52b or 046d:c52b:03"
        guard parts.count == 2 || parts.count == 3,
              parts[0].count <= 4, parts[1].count <= 4, !parts[0].isEmpty, !parts[1].isEmpty,
              let v = UInt16(parts[0], radix: 16), let p = UInt16(parts[1], radix: 16) else {
            throw ManifestError(.field, file: "command line", field: "--device", problem: "\"\(text)\" is not VID:PID[:CLASS]", fix: fix)
        }
        var cls: UInt8?
        if parts.count == 3 {
            guard parts[2].count <= 2, let c = UInt8(parts[2], radix: 16) else {
                throw ManifestError(.field, file: "command line", field: "--device", problem: "\"\(parts[2])\" is not a class code", fix: fix)
            }
            cls = c
        }
        guard let a = MatchRule.Actions.names.firstIndex(where: { $0.0 == action }) else {
            throw ManifestError(.field, file: "command line", field: "--action", problem: "\"\(action)\" is not an action",
                                fix: "use one of: \(MatchRule.Actions.names.map(\.0).joined(separator: ", "))")
        }
        self.init(vendor: v, product: p, classCode: cls, serial: serial, action: UInt16(a + 1))
    }

    public var label: String {
        "\(hex4(vendor)):\(hex4(product))" + (classCode.map { ":" + hex2($0) } ?? "")
    }

    /// Calls `body` with a `pb_event` describing the device (strings in the same buffer, like a ring slot).
    public func withEvent<R>(_ body: (UnsafePointer<pb_event>) throws -> R) rethrows -> R {
        let size = Int(PB_EVENT_MAX_SIZE)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: MemoryLayout<pb_event>.alignment)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        let e = raw.bindMemory(to: pb_event.self, capacity: 1)
        let header = MemoryLayout<pb_event>.size
        e.pointee.size = UInt32(header)
        e.pointee.total_size = UInt32(header)
        e.pointee.action = action
        e.pointee.vendor_id = vendor
        e.pointee.product_id = product
        if let c = classCode {
            e.pointee.device_class = c
            e.pointee.num_interfaces = 1
            e.pointee.interfaces_len = 1
            e.pointee.interfaces.0 = pb_usb_interface(iface_class: c, iface_subclass: 0, iface_protocol: 0)
        }
        if let s = serial {
            let bytes = Array(s.utf8.prefix(Int(PB_STRING_MAX)))
            (raw + header).copyMemory(from: bytes, byteCount: bytes.count)
            e.pointee.serial = pb_str(offset: UInt16(header), length: UInt16(bytes.count))
            e.pointee.total_size = UInt32(header + bytes.count + 1)
        }
        return try body(e)
    }

    /// Why `rule` does not match this device, or nil when it does. For people; the index decides for hosts.
    public func mismatch(_ rule: MatchRule) -> String? {
        if let v = rule.vendor, !v.contains(vendor) { return "vendor is \(rangeText(v)), the device's is \(hex4(vendor))" }
        if let p = rule.product, !p.contains(product) { return "product is \(rangeText(p)), the device's is \(hex4(product))" }
        if !rule.actions.isEmpty, !rule.actions.contains(MatchRule.Actions(rawValue: UInt8(truncatingIfNeeded: 1 << min(action, 7)))) {
            return "actions are \(rule.actions.names.joined(separator: ",")), the event is \((1...6).contains(action) ? MatchRule.Actions.names[Int(action) - 1].0 : "unknown")"
        }
        if let c = rule.deviceClass, c != (classCode ?? 0) { return "device_class is \(hex2(c)), the device's is \(classCode.map(hex2) ?? "00 (add :CLASS to give one)")" }
        if let c = rule.interfaceClass, c != classCode { return "interface_class is \(hex2(c)), the device's is \(classCode.map(hex2) ?? "not given (add :CLASS)")" }
        if let p = rule.serial {
            guard let s = serial else { return "serial must match \"\(p)\" (pass --serial to check)" }
            if !Glob.matches(pattern: p, s) { return "serial must match \"\(p)\", the device's is \"\(s)\"" }
        }
        return nil
    }
}
