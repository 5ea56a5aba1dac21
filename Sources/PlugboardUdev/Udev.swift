import CPlugboardSupport
import CUdev
import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

/// A libudev context. Owns one `struct udev` reference.
///
/// The corresponding C functions are `udev_new` and `udev_unref`.
final class UdevContext {
    let raw: OpaquePointer

    /// - Throws: `PlugboardError` when libudev cannot create a context (out of memory).
    init() throws {
        guard let u = udev_new() else {
            throw UdevError.make("udev.context", reason: "udev_new failed: \(errnoText(errno))",
                                 fix: "check that libudev1 is installed and the process is not out of memory")
        }
        raw = u
    }

    deinit { udev_unref(raw) }
}

/// A libudev netlink monitor. Owns one `struct udev_monitor` reference (and its socket).
///
/// The corresponding C functions are `udev_monitor_new_from_netlink` and `udev_monitor_unref`.
final class UdevMonitor {
    let raw: OpaquePointer
    let context: UdevContext
    /// The netlink group: "udev" (events processed by udevd, with properties) or "kernel" (raw uevents).
    let group: String

    /// Creates the monitor and installs the BPF filter on subsystem `usb`; does not receive yet.
    init(context: UdevContext, group: String, receiveBufferBytes: Int) throws {
        self.context = context
        self.group = group
        guard let m = udev_monitor_new_from_netlink(context.raw, group) else {
            throw UdevError.make("udev.monitor", field: "netlink group \(group)",
                                 reason: "cannot open a uevent netlink socket: \(errnoText(errno))",
                                 fix: "run on Linux with netlink uevents available (in a container: share the host network namespace)")
        }
        raw = m
        // The filter must be in place before enable_receiving: libudev compiles it into the
        // socket's BPF program then, so non-USB uevents never reach this process.
        let r = udev_monitor_filter_add_match_subsystem_devtype(m, "usb", nil)
        if r < 0 {
            throw UdevError.make("udev.monitor", field: "filter", reason: "cannot add the usb subsystem filter: \(errnoText(-r))")
        }
        if receiveBufferBytes > 0 {
            // libudev tries SO_RCVBUF, then SO_RCVBUFFORCE (root / CAP_NET_ADMIN can exceed rmem_max).
            _ = udev_monitor_set_receive_buffer_size(m, Int32(clamping: receiveBufferBytes))
        }
    }

    deinit { udev_monitor_unref(raw) }

    /// Installs the filter in the kernel and binds the socket.
    func enableReceiving() throws {
        let r = udev_monitor_enable_receiving(raw)
        if r < 0 {
            throw UdevError.make("udev.monitor", field: "netlink group \(group)",
                                 reason: "cannot bind the uevent socket: \(errnoText(-r))",
                                 fix: "run as a user allowed to open NETLINK_KOBJECT_UEVENT sockets")
        }
    }

    /// The socket to poll.
    var fd: Int32 { udev_monitor_get_fd(raw) }

    /// The receive buffer the kernel actually granted (as `getsockopt(SO_RCVBUF)` reports it:
    /// Linux reports twice the requested size, the extra half being its bookkeeping).
    var effectiveReceiveBuffer: Int {
        var size: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, &len) == 0 else { return -1 }
        return Int(size)
    }
}

/// One enumeration of `usb_device`s. Owns one `struct udev_enumerate` reference.
///
/// The corresponding C functions are `udev_enumerate_new`, `udev_enumerate_scan_devices`
/// and `udev_enumerate_unref`.
final class UdevEnumeration {
    let raw: OpaquePointer
    let context: UdevContext

    /// Scans subsystem `usb`; `parent` restricts the scan to one device's subtree.
    init(context: UdevContext, parent: OpaquePointer? = nil) throws {
        self.context = context
        guard let e = udev_enumerate_new(context.raw) else {
            throw UdevError.make("udev.enumerate", reason: "udev_enumerate_new failed: \(errnoText(errno))")
        }
        raw = e
        _ = udev_enumerate_add_match_subsystem(e, "usb")
        if let parent { _ = udev_enumerate_add_match_parent(e, parent) }
        let r = udev_enumerate_scan_devices(e)
        if r < 0 {
            throw UdevError.make("udev.enumerate", field: "/sys/bus/usb/devices",
                                 reason: "cannot scan sysfs: \(errnoText(-r))", fix: "check that /sys is mounted")
        }
    }

    deinit { udev_enumerate_unref(raw) }

    /// Calls `body` with each syspath found, in sysfs order (parents before children).
    /// `udev_list_entry_foreach` is a macro, so this walks the list with `udev_list_entry_get_next`.
    func forEachSyspath(_ body: (UnsafePointer<CChar>) throws -> Void) rethrows {
        var entry = udev_enumerate_get_list_entry(raw)
        while let e = entry {
            if let name = udev_list_entry_get_name(e) { try body(name) }
            entry = udev_list_entry_get_next(e)
        }
    }
}

/// A non-owning view of a device's uevent (a `struct udev_device`, or a message the source
/// parsed itself), valid during the `UdevSource.onEvent` call it is handed to (for
/// `plugboard monitor --properties`).
public struct UdevDeviceView {
    let raw: OpaquePointer
    /// True: `raw` is a `pbs_uevent`; false: a `struct udev_device`.
    let isUevent: Bool

    init(raw: OpaquePointer) {
        self.raw = raw
        isUevent = false
    }

    init(uevent: OpaquePointer) {
        raw = uevent
        isUevent = true
    }

    /// Every udev property of the device (KEY, VALUE), sorted by key as libudev lists them.
    public var properties: [(String, String)] {
        func text(_ p: UnsafePointer<CChar>?) -> String {
            p.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: strlen($0)), as: UTF8.self) } ?? ""
        }
        var out: [(String, String)] = []
        if isUevent {
            // As libudev lists them: one per key (the last), sorted by key.
            var byKey: [String: String] = [:]
            for i in 0..<pbs_uevent_count(raw) { byKey[text(pbs_uevent_key(raw, i))] = text(pbs_uevent_value(raw, i)) }
            return byKey.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        }
        var entry = udev_device_get_properties_list_entry(raw)
        while let e = entry {
            if let n = udev_list_entry_get_name(e) { out.append((String(cString: n), text(udev_list_entry_get_value(e)))) }
            entry = udev_list_entry_get_next(e)
        }
        return out
    }

    /// The device's syspath.
    public var syspath: String {
        (isUevent ? pbs_uevent_syspath(raw) : udev_device_get_syspath(raw)).map { String(cString: $0) } ?? ""
    }
}

/// "Text (errno N)", as `Errno.reason` writes it.
func errnoText(_ code: Int32) -> String { Errno(code: code, call: "").reason }
