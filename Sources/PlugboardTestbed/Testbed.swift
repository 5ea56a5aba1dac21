import CUmockdev

#if canImport(Glibc)
import Glibc
#endif

/// A simulated sysfs and uevent bus (umockdev), in this process.
///
/// The process must run under umockdev's preload (`umockdev-wrapper`): it redirects `/sys`
/// and the uevent netlink sockets of this process and of its children (which inherit
/// `UMOCKDEV_DIR`) into the testbed. One testbed at a time per process: umockdev keeps its
/// location in the environment. Owns the `UMockdevTestbed` (g_object_unref on deinit,
/// which deletes the testbed directory).
public final class Testbed {
    let raw: UnsafeMutablePointer<UMockdevTestbed>

    /// - Throws: `TestbedError` when the preload is missing.
    public init() throws {
        raw = umockdev_testbed_new()
        // Only answers true once a testbed exists (the preload looks at UMOCKDEV_DIR).
        guard umockdev_in_mock_environment() != 0 else {
            g_object_unref(UnsafeMutableRawPointer(raw))
            throw TestbedError(
                "umockdev's preload is not active: run under umockdev-wrapper (make test does), e.g. `umockdev-wrapper swift test`")
        }
    }

    deinit { g_object_unref(UnsafeMutableRawPointer(raw)) }

    /// The testbed's root directory (holds `sys/`, `dev/` and the uevent sockets `event<N>`).
    public var rootDir: String { takeString(umockdev_testbed_get_root_dir(raw)) }
    /// The testbed's sysfs root.
    public var sysDir: String { takeString(umockdev_testbed_get_sys_dir(raw)) }

    /// Adds every device of a `umockdev-record` recording (its `P:`/`E:`/`A:`/`H:`/`L:` lines),
    /// parents before children. The corresponding C function is `umockdev_testbed_add_from_string`.
    /// - Throws: `TestbedError` with umockdev's message when the recording cannot be parsed.
    public func addRecording(_ text: String) throws {
        var error: UnsafeMutablePointer<GError>? = nil
        guard umockdev_testbed_add_from_string(raw, text, &error) != 0 else {
            let message = error.flatMap { $0.pointee.message.map { String(cString: $0) } } ?? "unknown error"
            if let error { g_error_free(error) }
            throw TestbedError("umockdev could not add the recording: \(message)")
        }
    }

    /// Adds a device and sends its `add` uevent (umockdev 0.17 does both).
    /// - Returns: the device's syspath, e.g. `/sys/devices/usb1/1-1`.
    @discardableResult
    public func addDevice(subsystem: String, name: String, parent: String?, attributes: [(String, String)],
                          properties: [(String, [UInt8])]) throws -> String {
        try addDevice(subsystem: subsystem, name: name, parent: parent,
                      binaryAttributes: attributes.map { ($0.0, Array($0.1.utf8)) }, properties: properties)
    }

    /// Adds a device whose attribute values are arbitrary bytes (no NUL), and sends its `add` uevent.
    @discardableResult
    public func addDevice(subsystem: String, name: String, parent: String?, binaryAttributes attributes: [(String, [UInt8])],
                          properties: [(String, [UInt8])]) throws -> String {
        var attrs: [UnsafeMutablePointer<CChar>?] = attributes.flatMap { [strdup($0.0), Self.cBytes($0.1)] } + [nil]
        var props: [UnsafeMutablePointer<CChar>?] = properties.flatMap { [strdup($0.0), Self.cBytes($0.1)] } + [nil]
        defer {
            attrs.forEach { free($0) }
            props.forEach { free($0) }
        }
        let path = attrs.withUnsafeMutableBufferPointer { a in
            props.withUnsafeMutableBufferPointer { p in
                umockdev_testbed_add_devicev(raw, subsystem, name, parent, a.baseAddress, p.baseAddress)
            }
        }
        guard let path else { throw TestbedError("umockdev could not add device \(name) (subsystem \(subsystem))") }
        return takeString(path)
    }

    /// Sends a uevent for the device (its properties come from its `uevent` file).
    public func uevent(_ syspath: String, _ action: String) { umockdev_testbed_uevent(raw, syspath, action) }

    /// Removes the device (and its children) from sysfs. umockdev 0.17 sends no uevent for it.
    /// umockdev 0.17 leaves the device's `/sys/bus/<subsystem>/devices/<name>` links behind,
    /// which makes adding a device with the same name again (a replug) abort; they are removed here.
    public func removeDevice(_ syspath: String) {
        umockdev_testbed_remove_device(raw, syspath)
        var g = glob_t()
        defer { globfree(&g) }
        guard glob(sysDir + "/bus/*/devices/*", 0, nil, &g) == 0 else { return }
        var st = stat()
        for i in 0..<Int(g.gl_pathc) {
            guard let p = g.gl_pathv[i] else { continue }
            if stat(p, &st) != 0 && errno == ENOENT { unlink(p) }  // a dangling link
        }
    }

    /// Sets a sysfs attribute (a file in the device's directory).
    public func setAttribute(_ syspath: String, _ name: String, _ value: [UInt8]) {
        var v = value
        v.withUnsafeMutableBufferPointer { b in
            umockdev_testbed_set_attribute_binary(raw, syspath, name, b.baseAddress, Int32(b.count))
        }
    }

    /// Makes a sysfs symlink in the device's directory (e.g. `driver`).
    public func setAttributeLink(_ syspath: String, _ name: String, _ target: String) {
        umockdev_testbed_set_attribute_link(raw, syspath, name, target)
    }

    /// Sets a udev property (a line in the device's `uevent` file), sent with its next uevents.
    public func setProperty(_ syspath: String, _ name: String, _ value: [UInt8]) {
        let v = Self.cBytes(value)
        defer { free(v) }
        umockdev_testbed_set_property(raw, syspath, name, v)
    }

    /// The uevent sockets listening now (one per open monitor, in this process or a child).
    public var listeners: [String] {
        var g = glob_t()
        defer { globfree(&g) }
        guard glob(rootDir + "/event[0-9]*", 0, nil, &g) == 0 else { return [] }
        return (0..<Int(g.gl_pathc)).compactMap { g.gl_pathv[$0].map { String(cString: $0) } }
    }

    /// Sends `bytes` as one raw datagram to every listening monitor: for malformed-message tests.
    /// - Returns: how many monitors it reached.
    @discardableResult
    public func sendRaw(_ bytes: [UInt8]) -> Int {
        var n = 0
        for path in listeners {
            let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { p in
                let b = Array(path.utf8.prefix(p.count - 1))
                p.copyBytes(from: b)
                p[b.count] = 0
            }
            let r = bytes.withUnsafeBytes { b in
                withUnsafePointer(to: &addr) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                    }
                }
            }
            if r >= 0 { n += 1 }
        }
        return n
    }

    static func cBytes(_ b: [UInt8]) -> UnsafeMutablePointer<CChar> {
        let p = malloc(b.count + 1)!.assumingMemoryBound(to: CChar.self)
        b.withUnsafeBytes { if let src = $0.baseAddress { UnsafeMutableRawPointer(p).copyMemory(from: src, byteCount: b.count) } }
        p[b.count] = 0
        return p
    }
}

/// Takes ownership of a g_malloc'd string.
func takeString(_ p: UnsafeMutablePointer<gchar>?) -> String {
    guard let p else { return "" }
    defer { g_free(p) }
    return String(cString: p)
}

/// A testbed that could not be set up, with what to do.
public struct TestbedError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}
