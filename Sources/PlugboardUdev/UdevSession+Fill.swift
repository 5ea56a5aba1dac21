import CPlugboard
import CUdev
import PlugboardCore

#if canImport(Glibc)
import Glibc
#endif

extension UdevSession {
    /// Fills the event being written from a device (a received uevent or a libudev device).
    ///
    /// Each field has an ordered list of sources (docs/udev.md, "Where each field comes
    /// from"); the first usable one wins. In kernel mode the udev-only properties (ID_*)
    /// are skipped, since raw uevents never carry them. A value that is present but
    /// unusable (non-hex id, number out of range) is counted in `badValues` and the next
    /// source is tried; the field stays 0 when none is usable. Strings are copied as bytes
    /// (UTF-8 is not required) and cut to PB_STRING_MAX with the truncated flag set.
    ///
    /// `known` is the device's table record for a change, bind or unbind: its link speed and
    /// interfaces cannot have changed without a new add (interface adds are folded into the
    /// record), so they are copied instead of read from sysfs again (two to a dozen reads).
    func fill<D: UdevDeviceFields>(_ w: inout EventWriter, _ dev: D, action: EventAction, flags: EventFlags, receipt: UInt64,
              known: UnsafePointer<pb_event>? = nil) {
        let udevProps = mode == .udev
        let e = w.event
        w.action = action
        w.insert(flags: flags)
        e.pointee.timestamp_ns = receipt
        e.pointee.kernel_seqnum = dev.seqnum

        // StaticString names: no String bridging per lookup.
        func prop(_ name: StaticString) -> UnsafePointer<CChar>? { dev.property(name) }
        func attr(_ name: StaticString) -> UnsafePointer<CChar>? { dev.sysattr(name) }
        /// The first of two candidates that parses (the second is read only if needed);
        /// counts present-but-unusable values.
        func first<T>(_ a: UnsafePointer<CChar>?, _ b: @autoclosure () -> UnsafePointer<CChar>? = nil,
                      parse: (UnsafePointer<CChar>) -> T?) -> T? {
            if let a {
                if let v = parse(a) { return v }
                counters.badValues.add(1, ordering: .relaxed)
            }
            if let b = b() {
                if let v = parse(b) { return v }
                counters.badValues.add(1, ordering: .relaxed)
            }
            return nil
        }
        let dec16: (UnsafePointer<CChar>) -> UInt16? = { UdevValue.decimal($0, max: 0xffff).map { UInt16($0) } }

        e.pointee.busnum = first(prop("BUSNUM"), attr("busnum"), parse: dec16) ?? 0
        e.pointee.devnum = first(prop("DEVNUM"), attr("devnum"), parse: dec16) ?? 0

        // vendor/product: ID_VENDOR_ID/ID_MODEL_ID, else PRODUCT (hex "46d/c52b/1201"), else sysattrs.
        var haveIDs = false
        if udevProps, let v = first(prop("ID_VENDOR_ID"), parse: UdevValue.hex16),
           let p = first(prop("ID_MODEL_ID"), parse: UdevValue.hex16)
        {
            e.pointee.vendor_id = v
            e.pointee.product_id = p
            haveIDs = true
        }
        let product = first(prop("PRODUCT"), parse: { UdevValue.triple($0, radix: 16, maxDigits: 4, max: 0xffff) })
        if !haveIDs, let product {
            e.pointee.vendor_id = UInt16(product.0)
            e.pointee.product_id = UInt16(product.1)
            haveIDs = true
        }
        if !haveIDs {
            e.pointee.vendor_id = first(attr("idVendor"), parse: UdevValue.hex16) ?? 0
            e.pointee.product_id = first(attr("idProduct"), parse: UdevValue.hex16) ?? 0
        }
        if let bcd = first(udevProps ? prop("ID_REVISION") : nil, parse: UdevValue.hex16) {
            e.pointee.bcd_device = bcd
        } else if let product {
            e.pointee.bcd_device = UInt16(product.2)
        } else {
            e.pointee.bcd_device = first(attr("bcdDevice"), parse: UdevValue.hex16) ?? 0
        }

        // class/subclass/protocol: TYPE (decimal "9/0/3"), else sysattrs (hex).
        if let t = first(prop("TYPE"), parse: { UdevValue.triple($0, radix: 10, maxDigits: 3, max: 255) }) {
            e.pointee.device_class = UInt8(t.0)
            e.pointee.device_subclass = UInt8(t.1)
            e.pointee.device_protocol = UInt8(t.2)
        } else {
            e.pointee.device_class = first(attr("bDeviceClass"), parse: UdevValue.hex8) ?? 0
            e.pointee.device_subclass = first(attr("bDeviceSubClass"), parse: UdevValue.hex8) ?? 0
            e.pointee.device_protocol = first(attr("bDeviceProtocol"), parse: UdevValue.hex8) ?? 0
        }
        if let known {
            e.pointee.speed_kbps = known.pointee.speed_kbps
        } else {
            e.pointee.speed_kbps = first(attr("speed"), parse: UdevValue.speedKbps) ?? 0
        }

        // Strings, in slot order.
        w.setString(.syspath, cString: dev.syspath)
        w.setString(.devnode, cString: dev.devnode)
        if !udevProps, let known {
            // Kernel mode: the descriptor strings are read by the kernel once, when the device is
            // enumerated, and cached in sysfs until it goes away, so a known device's are the ones
            // in its record (three sysfs reads spared).
            w.setString(.serial, known.bytes(.serial))
            w.setString(.manufacturer, known.bytes(.manufacturer))
            w.setString(.product, known.bytes(.product))
            if known.pointee.flags & UInt16(PB_EVENT_TRUNCATED) != 0 { w.insert(flags: .truncated) }
        } else {
            if udevProps, let s = prop("ID_SERIAL_SHORT") {
                w.setString(.serial, cString: s)
            } else {
                w.setString(.serial, cString: attr("serial"))
            }
            // udev's `_ENC` properties hold the descriptor strings byte for byte (escaped), so in udev
            // mode they spare two sysfs reads per event; sysfs is the fallback, then udev's sanitised form.
            setDescriptorString(&w, .manufacturer, encoded: udevProps ? prop("ID_VENDOR_ENC") : nil, attr: attr("manufacturer"),
                                plain: udevProps ? prop("ID_VENDOR") : nil)
            setDescriptorString(&w, .product, encoded: udevProps ? prop("ID_MODEL_ENC") : nil, attr: attr("product"),
                                plain: udevProps ? prop("ID_MODEL") : nil)
        }
        w.setString(.driver, cString: dev.driver)

        // Interfaces: the distinct (class, subclass, protocol) triples of every interface descriptor,
        // alternate settings included: ID_USB_INTERFACES (":030101:030102:", which udev builds from
        // the `descriptors` file), else that file read here (so kernel mode lists the same), else
        // the usb_interface children (active settings only).
        if let known {
            let n = Int(known.pointee.interfaces_len)
            withUnsafeBytes(of: known.pointee.interfaces) { raw in
                for i in 0..<n { w.appendInterface(class: raw[i * 3], subclass: raw[i * 3 + 1], protocol: raw[i * 3 + 2]) }
            }
            if known.pointee.flags & UInt16(PB_EVENT_TRUNCATED) != 0 && known.pointee.interfaces_len >= PB_MAX_INTERFACES {
                w.insert(flags: .truncated)
            }
            e.pointee.num_interfaces = known.pointee.num_interfaces
            return
        }
        if udevProps, let list = prop("ID_USB_INTERFACES") {
            appendInterfaceList(&w, list)
        } else if !appendDescriptorInterfaces(&w, dev) {
            appendChildInterfaces(&w, dev)
        }
        // bNumInterfaces counts interfaces, not alternate settings: a USB 2.0 hub lists two settings
        // of its one interface (":090001:090002:"), so the triples only stand in when it is absent.
        if let n = first(attr("bNumInterfaces"), parse: { UdevValue.decimal($0, max: 255) }) {
            e.pointee.num_interfaces = UInt8(n)
        }
    }

    /// udev's decoded `_ENC` form if present, else the device's string from sysfs (read only
    /// then), else udev's sanitised form (underscores for blanks).
    private func setDescriptorString(_ w: inout EventWriter, _ field: EventStringField, encoded: UnsafePointer<CChar>?,
                                     attr: @autoclosure () -> UnsafePointer<CChar>?, plain: @autoclosure () -> UnsafePointer<CChar>?) {
        if let encoded {
            let (n, cut) = UdevValue.decodeEscapes(encoded, into: decodeBuffer)
            w.setString(field, UnsafeRawBufferPointer(rebasing: decodeBuffer[0..<n]))
            if cut { w.insert(flags: .truncated) }
        } else if let attr = attr() {
            w.setString(field, cString: attr)
        } else if let plain = plain() {
            w.setString(field, cString: plain)
        }
    }

    /// Parses ID_USB_INTERFACES: 6-hex-digit triples between colons. Bad entries are skipped and counted.
    private func appendInterfaceList(_ w: inout EventWriter, _ list: UnsafePointer<CChar>) {
        var q = UnsafeRawPointer(list).assumingMemoryBound(to: UInt8.self)
        while q.pointee != 0 {
            if q.pointee == UInt8(ascii: ":") { q += 1; continue }
            var v: UInt32 = 0, n = 0
            while q.pointee != 0, q.pointee != UInt8(ascii: ":") {
                if let d = UdevValue.hexDigit(q.pointee), n < 6 { v = v << 4 | d } else { n = 99 }
                n += 1
                q += 1
            }
            if n == 6 {
                appendUnique(&w, UInt8(v >> 16), UInt8((v >> 8) & 0xff), UInt8(v & 0xff))
            } else {
                counters.badValues.add(1, ordering: .relaxed)
            }
        }
    }

    /// Appends the interface triples of the device's `descriptors` sysfs file (the device
    /// descriptor, then the raw configuration descriptors), as udev's usb_id builds
    /// ID_USB_INTERFACES from it. Reads at most 4 KiB, on the stack.
    /// - Returns: false when the file cannot be read or holds no interface descriptor.
    private func appendDescriptorInterfaces<D: UdevDeviceFields>(_ w: inout EventWriter, _ dev: D) -> Bool {
        guard let syspath = dev.syspath else { return false }
        let before = UnsafePointer(w.event).pointee.interfaces_len
        var found = false
        withUnsafeTemporaryAllocation(byteCount: 4096 + 512, alignment: 1) { buf in
            // The path first (syspaths are well under 512 bytes), then the file's bytes.
            let pathLen = strlen(syspath)
            let suffix = "/descriptors"
            guard pathLen + suffix.utf8.count + 1 <= 512 else { return }
            let path = buf.baseAddress!
            memcpy(path, syspath, pathLen)
            _ = suffix.withCString { memcpy(path + pathLen, $0, suffix.utf8.count + 1) }
            let fd = open(path.assumingMemoryBound(to: CChar.self), O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return }
            defer { close(fd) }
            let data = UnsafeMutableRawBufferPointer(rebasing: buf[512...])
            var size = 0
            while size < data.count {
                let n = read(fd, data.baseAddress! + size, data.count - size)
                if n < 0, errno == EINTR { continue }
                if n <= 0 { break }
                size += n
            }
            UdevValue.forEachInterfaceDescriptor(UnsafeRawBufferPointer(rebasing: data[..<size])) { c, s, p in
                appendUnique(&w, c, s, p)
                found = true
            }
        }
        return found || UnsafePointer(w.event).pointee.interfaces_len > before
    }

    /// Reads the interface descriptors of the device's `usb_interface` children from sysfs:
    /// through libudev's enumeration for a device libudev made, and straight from the device's
    /// directory for a received uevent (its `<name>:<config>.<interface>` entries, in the order
    /// libudev sorts them). Not through a libudev device made from the syspath: that resolves
    /// the path component by component and checks the file system (`fstatfs`) per event, and
    /// umockdev answers `fstatfs` from buffers shared by every thread, so the source and the
    /// test's uevent sender doing it at once made the sender drop uevents (2 of 3 runs of the
    /// 10,000-uevent burst test).
    private func appendChildInterfaces<D: UdevDeviceFields>(_ w: inout EventWriter, _ dev: D) {
        if let d = dev as? LibudevDevice {
            appendChildInterfaces(&w, parent: d.raw)
        } else if let syspath = dev.syspath {
            appendChildInterfaces(&w, directory: String(cString: syspath))
        }
    }

    private func appendChildInterfaces(_ w: inout EventWriter, directory: String) {
        guard let name = directory.split(separator: "/").last, let dir = opendir(directory) else { return }
        let prefix = name + ":"
        var children: [String] = []
        while let entry = readdir(dir) {
            let child = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if child.hasPrefix(prefix) { children.append(child) }
        }
        closedir(dir)
        for child in children.sorted() {
            func attribute(_ file: String) -> UInt8? {
                let fd = open("\(directory)/\(child)/\(file)", O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { return nil }
                defer { close(fd) }
                var buf = [CChar](repeating: 0, count: 16)
                var n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 15) }
                guard n > 0 else { return nil }
                while n > 0 && (buf[n - 1] == 10 || buf[n - 1] == 13) { n -= 1 }  // trailing newlines, as libudev cuts them
                buf[n] = 0
                return buf.withUnsafeBufferPointer { UdevValue.hex8($0.baseAddress) }
            }
            guard let c = attribute("bInterfaceClass") else {
                counters.badValues.add(1, ordering: .relaxed)
                continue
            }
            appendUnique(&w, c, attribute("bInterfaceSubClass") ?? 0, attribute("bInterfaceProtocol") ?? 0)
        }
    }

    private func appendChildInterfaces(_ w: inout EventWriter, parent dev: OpaquePointer) {
        guard let children = try? UdevEnumeration(context: udev, parent: dev) else { return }
        let own = udev_device_get_syspath(dev)
        children.forEachSyspath { path in
            if let own, strcmp(own, path) == 0 { return }
            guard let child = udev_device_new_from_syspath(udev.raw, path) else { return }
            defer { udev_device_unref(child) }
            guard let t = udev_device_get_devtype(child), strcmp(t, "usb_interface") == 0 else { return }
            // Only direct children: a hub's enumeration also lists its downstream devices' interfaces.
            guard let parent = udev_device_get_parent(child), let pp = udev_device_get_syspath(parent),
                  let own, strcmp(pp, own) == 0 else { return }
            guard let c = UdevValue.hex8(udev_device_get_sysattr_value(child, "bInterfaceClass")) else {
                counters.badValues.add(1, ordering: .relaxed)
                return
            }
            let s = UdevValue.hex8(udev_device_get_sysattr_value(child, "bInterfaceSubClass")) ?? 0
            let p = UdevValue.hex8(udev_device_get_sysattr_value(child, "bInterfaceProtocol")) ?? 0
            appendUnique(&w, c, s, p)
        }
    }

    private func appendUnique(_ w: inout EventWriter, _ c: UInt8, _ s: UInt8, _ p: UInt8) {
        let e = UnsafePointer(w.event)
        let n = Int(e.pointee.interfaces_len)
        let dup = withUnsafeBytes(of: e.pointee.interfaces) { raw in
            (0..<n).contains { raw[$0 * 3] == c && raw[$0 * 3 + 1] == s && raw[$0 * 3 + 2] == p }
        }
        if !dup { w.appendInterface(class: c, subclass: s, protocol: p) }
    }
}
