/// A USB device as the testbed creates it: sysfs attributes like a real one, the kernel's
/// uevent properties, and optionally the properties udevd would add (ID_*).
public struct SimulatedUSBDevice: Sendable {
    public var bus: Int = 1
    /// Port path below the root hub, e.g. "1" or "2.3" (sysname "1-2.3").
    public var port: String = "1"
    public var devnum: Int = 2
    public var vendorID: UInt16 = 0x1d6b
    public var productID: UInt16 = 0x0001
    public var bcdDevice: UInt16 = 0x0100
    public var deviceClass: UInt8 = 0, deviceSubclass: UInt8 = 0, deviceProtocol: UInt8 = 0
    /// sysfs `speed`, Mbit/s as the kernel writes it ("1.5", "12", "480", "5000").
    public var speed: String = "480"
    public var serial: [UInt8]? = nil
    public var manufacturer: [UInt8]? = nil
    public var product: [UInt8]? = nil
    public var driver: String = "usb"
    /// Interfaces (class, subclass, protocol); each becomes a `usb_interface` child.
    public var interfaces: [(UInt8, UInt8, UInt8)] = []
    /// Add the properties udevd's rules would add (ID_VENDOR_ID, ID_SERIAL_SHORT, ID_USB_INTERFACES...).
    public var udevProperties: Bool = true
    /// Extra properties (override the generated ones of the same name).
    public var extraProperties: [(String, [UInt8])] = []
    /// Extra or overriding sysfs attributes.
    public var extraAttributes: [(String, String)] = []

    public init() {}

    public var sysname: String { "\(bus)-\(port)" }
    public var devnode: String { "/dev/bus/usb/" + pad3(bus) + "/" + pad3(devnum) }

    func pad3(_ n: Int) -> String {
        let s = String(n)
        return String(repeating: "0", count: max(0, 3 - s.count)) + s
    }

    func hex(_ v: some BinaryInteger, _ digits: Int) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, digits - s.count)) + s
    }

    var attributes: [(String, [UInt8])] {
        var a: [(String, [UInt8])] = [
            ("busnum", "\(bus)"), ("devnum", "\(devnum)"), ("idVendor", hex(vendorID, 4)), ("idProduct", hex(productID, 4)),
            ("bcdDevice", hex(bcdDevice, 4)), ("bDeviceClass", hex(deviceClass, 2)), ("bDeviceSubClass", hex(deviceSubclass, 2)),
            ("bDeviceProtocol", hex(deviceProtocol, 2)), ("speed", speed), ("bNumInterfaces", " \(interfaces.count)"),
        ].map { ($0.0, Array($0.1.utf8)) }
        if let serial { a.append(("serial", serial)) }
        if let manufacturer { a.append(("manufacturer", manufacturer)) }
        if let product { a.append(("product", product)) }
        for (k, v) in extraAttributes {
            a.removeAll { $0.0 == k }
            a.append((k, Array(v.utf8)))
        }
        return a
    }

    /// udev's `\xNN` escaping of descriptor strings (blanks, backslashes and bytes outside
    /// printable ASCII are escaped), as in ID_VENDOR_ENC.
    static func udevEncoded(_ bytes: [UInt8]) -> [UInt8] {
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for c in bytes {
            if c > 0x20 && c < 0x7f && c != 0x5c {
                out.append(c)
            } else {
                out += [0x5c, 0x78, hex[Int(c >> 4)], hex[Int(c & 15)]]
            }
        }
        return out
    }

    var properties: [(String, [UInt8])] {
        func b(_ s: String) -> [UInt8] { Array(s.utf8) }
        var p: [(String, [UInt8])] = [
            ("DEVTYPE", b("usb_device")), ("DEVNAME", b("bus/usb/" + pad3(bus) + "/" + pad3(devnum))),
            ("PRODUCT", b("\(String(vendorID, radix: 16))/\(String(productID, radix: 16))/\(String(bcdDevice, radix: 16))")),
            ("TYPE", b("\(deviceClass)/\(deviceSubclass)/\(deviceProtocol)")),
            ("BUSNUM", b(pad3(bus))), ("DEVNUM", b(pad3(devnum))),
        ]
        if !driver.isEmpty { p.append(("DRIVER", b(driver))) }
        if udevProperties {
            p += [("ID_VENDOR_ID", b(hex(vendorID, 4))), ("ID_MODEL_ID", b(hex(productID, 4))), ("ID_REVISION", b(hex(bcdDevice, 4)))]
            if let serial { p.append(("ID_SERIAL_SHORT", serial)) }
            if let manufacturer { p.append(("ID_VENDOR_ENC", Self.udevEncoded(manufacturer))) }
            if let product { p.append(("ID_MODEL_ENC", Self.udevEncoded(product))) }
            if !interfaces.isEmpty {
                p.append(("ID_USB_INTERFACES", b(":" + interfaces.map { hex($0.0, 2) + hex($0.1, 2) + hex($0.2, 2) + ":" }.joined())))
            }
        }
        for (k, v) in extraProperties {
            p.removeAll { $0.0 == k }
            p.append((k, v))
        }
        return p
    }
}

extension Testbed {
    /// Adds a root hub `usb<bus>` (so devices have a realistic parent) unless present; returns its syspath.
    @discardableResult
    public func addRootHub(bus: Int = 1) throws -> String {
        var hub = SimulatedUSBDevice()
        hub.bus = bus
        hub.devnum = 1
        hub.vendorID = 0x1d6b
        hub.productID = 0x0002
        hub.deviceClass = 9
        hub.manufacturer = Array("Linux 6.1.0 xhci-hcd".utf8)
        hub.product = Array("xHCI Host Controller".utf8)
        hub.interfaces = [(9, 0, 0)]
        return try add(hub, name: "usb\(bus)", parent: nil)
    }

    /// Adds `device` (and its interfaces) below `parent` (a hub's syspath) and sends the add uevents.
    /// - Returns: the device's syspath.
    @discardableResult
    public func add(_ device: SimulatedUSBDevice, parent: String?) throws -> String {
        try add(device, name: device.sysname, parent: parent)
    }

    func add(_ device: SimulatedUSBDevice, name: String, parent: String?) throws -> String {
        let path = try addDevice(subsystem: "usb", name: name, parent: parent, binaryAttributes: device.attributes,
                                 properties: device.properties)
        // libudev reads a device's driver from its `driver` link (the uevent file's DRIVER is
        // only used for uevents), so enumerated devices need the link too.
        if !device.driver.isEmpty { setAttributeLink(path, "driver", "../../../bus/usb/drivers/" + device.driver) }
        for (i, t) in device.interfaces.enumerated() {
            let iname = "\(name):1.\(i)"
            let h = { (v: UInt8) in device.hex(v, 2) }
            try addDevice(subsystem: "usb", name: iname, parent: path,
                          attributes: [("bInterfaceNumber", h(UInt8(i))), ("bInterfaceClass", h(t.0)),
                                       ("bInterfaceSubClass", h(t.1)), ("bInterfaceProtocol", h(t.2))],
                          properties: [("DEVTYPE", Array("usb_interface".utf8)), ("INTERFACE", Array("\(t.0)/\(t.1)/\(t.2)".utf8))])
        }
        return path
    }

    /// Unplugs a device as the kernel does: remove uevents (interfaces, then the device), then
    /// sysfs disappears.
    public func unplug(_ syspath: String, interfaces: Int = 0) {
        let name = syspath.split(separator: "/").last.map(String.init) ?? ""
        for i in 0..<interfaces { uevent(syspath + "/\(name):1.\(i)", "remove") }
        uevent(syspath, "remove")
        removeDevice(syspath)
    }
}
