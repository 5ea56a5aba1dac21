import CPlugboardSupport
import CUdev

#if canImport(Glibc)
import Glibc
#endif

/// What the source reads from one device, whichever way it came: a uevent parsed in place from
/// the monitor socket (`ReceivedUevent`, every hotplug event) or a libudev device made from a
/// syspath (`LibudevDevice`, the enumeration at start and after an overflow). `fill` and `handle`
/// are generic over it, so both paths build events with the same code (docs/udev.md, "Reading
/// uevents"). Every string is valid until the device is released or the next message is read.
protocol UdevDeviceFields {
    var syspath: UnsafePointer<CChar>? { get }
    var devtype: UnsafePointer<CChar>? { get }
    var actionName: UnsafePointer<CChar>? { get }
    var seqnum: UInt64 { get }
    var devnode: UnsafePointer<CChar>? { get }
    var driver: UnsafePointer<CChar>? { get }
    func property(_ name: UnsafePointer<CChar>) -> UnsafePointer<CChar>?
    func sysattr(_ name: UnsafePointer<CChar>) -> UnsafePointer<CChar>?
    /// For `UdevSource.onEvent` (`plugboard monitor --properties`).
    var view: UdevDeviceView { get }
}

/// A `struct udev_device` (not owned).
struct LibudevDevice: UdevDeviceFields {
    let raw: OpaquePointer
    var syspath: UnsafePointer<CChar>? { udev_device_get_syspath(raw) }
    var devtype: UnsafePointer<CChar>? { udev_device_get_devtype(raw) }
    var actionName: UnsafePointer<CChar>? { udev_device_get_action(raw) }
    var seqnum: UInt64 { udev_device_get_seqnum(raw) }
    var devnode: UnsafePointer<CChar>? { udev_device_get_devnode(raw) }
    var driver: UnsafePointer<CChar>? { udev_device_get_driver(raw) }
    func property(_ name: UnsafePointer<CChar>) -> UnsafePointer<CChar>? { udev_device_get_property_value(raw, name) }
    func sysattr(_ name: UnsafePointer<CChar>) -> UnsafePointer<CChar>? { udev_device_get_sysattr_value(raw, name) }
    var view: UdevDeviceView { UdevDeviceView(raw: raw) }
}

/// The message last read into the session's `pbs_uevent` buffer (`pbs_uevent_receive`).
struct ReceivedUevent: UdevDeviceFields {
    let raw: OpaquePointer
    var syspath: UnsafePointer<CChar>? { pbs_uevent_syspath(raw) }
    var devtype: UnsafePointer<CChar>? { pbs_uevent_devtype(raw) }
    var actionName: UnsafePointer<CChar>? { pbs_uevent_action(raw) }
    var seqnum: UInt64 { pbs_uevent_seqnum(raw) }
    var devnode: UnsafePointer<CChar>? { pbs_uevent_devnode(raw) }
    var driver: UnsafePointer<CChar>? { pbs_uevent_driver(raw) }
    func property(_ name: UnsafePointer<CChar>) -> UnsafePointer<CChar>? { pbs_uevent_get(raw, name) }
    func sysattr(_ name: UnsafePointer<CChar>) -> UnsafePointer<CChar>? { pbs_uevent_sysattr(raw, name) }
    var view: UdevDeviceView { UdevDeviceView(uevent: raw) }
}

extension UdevDeviceFields {
    /// `property` for a literal name: no String bridging per lookup.
    @inline(__always) func property(_ name: StaticString) -> UnsafePointer<CChar>? {
        property(UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self))
    }

    /// `sysattr` for a literal name: no String bridging per lookup.
    @inline(__always) func sysattr(_ name: StaticString) -> UnsafePointer<CChar>? {
        sysattr(UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self))
    }
}
