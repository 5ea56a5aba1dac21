@_exported import CPlugboard

#if canImport(Glibc)
import Glibc
#endif

/// The Swift side of the plugin ABI (SDK/include/plugboard.h, docs/abi.md): write a class that
/// conforms to `PlugboardPlugin` and export it from your library with one function:
///
/// ```swift
/// @_cdecl("pb_plugin_entry")
/// public func pb_plugin_entry(_ input: UnsafePointer<pb_negotiate_in>?,
///                             _ output: UnsafeMutablePointer<pb_negotiate_out>?) -> Int32 {
///     PluginExport.negotiate(MyPlugin.self, input, output)
/// }
/// ```
///
/// The host calls every method on the plugin's own worker thread, one call at a time. Images
/// that contain Swift are never unloaded (the runtime does not support it); a hot reload keeps
/// the replaced build mapped.
public protocol PlugboardPlugin: AnyObject {
    /// The plugin's name, as in its manifest.
    static var name: String { get }
    /// The plugin's own version, e.g. "1.0.0".
    static var version: String { get }
    /// Sets the plugin up. Throwing refuses the load; the error's description is logged.
    init(host: PluginHost) throws
    /// Handles events, oldest first. The events are valid only during the call: copy what you keep.
    func handle(_ events: EventBatch) throws
    /// The plugin missed events: these are all the devices present now.
    func resync(_ devices: EventBatch) throws
    /// Before a hot reload: the state to hand to the next build (nil: none).
    func saveState() -> [UInt8]?
    /// After a hot reload: what the previous build's `saveState` returned.
    func restoreState(_ state: [UInt8]) throws
    /// Called once, last.
    func shutdown()
}

public extension PlugboardPlugin {
    func resync(_ devices: EventBatch) throws {}
    func saveState() -> [UInt8]? { nil }
    func restoreState(_ state: [UInt8]) throws {}
    func shutdown() {}
}

/// The host's services for one plugin (pb_host_api).
public struct PluginHost: @unchecked Sendable {
    public enum LogLevel: Int32 { case trace = 0, debug, info, warning, error }
    let raw: OpaquePointer
    let api: UnsafePointer<pb_host_api>

    /// Logs through the host (the daemon's log, tagged with the plugin's name).
    public func log(_ level: LogLevel, _ message: String) {
        api.pointee.log(raw, level.rawValue, message)
    }

    /// Publishes a record (to Redis when configured). False when the host's queue is full.
    @discardableResult
    public func publish(topic: String, _ data: [UInt8]) -> Bool {
        data.withUnsafeBytes { api.pointee.publish(raw, topic, $0.baseAddress, $0.count) } == PB_OK
    }

    @discardableResult
    public func publish(topic: String, _ text: String) -> Bool { publish(topic: topic, Array(text.utf8)) }

    /// A configuration value ([config] of the manifest, or --plugin-config), nil when unset.
    public func config(_ key: String) -> String? {
        api.pointee.config_get(raw, key).map { String(cString: $0) }
    }
}

/// One event, a view into the host's ring slot (valid only during the callback).
public struct Event {
    public enum Action: UInt16 { case unknown = 0, add, remove, change, bind, unbind, resync }
    let raw: UnsafePointer<pb_event>

    public var sequence: UInt64 { raw.pointee.sequence }
    public var action: Action { Action(rawValue: raw.pointee.action) ?? .unknown }
    public var vendorID: UInt16 { raw.pointee.vendor_id }
    public var productID: UInt16 { raw.pointee.product_id }
    public var busnum: UInt16 { raw.pointee.busnum }
    public var devnum: UInt16 { raw.pointee.devnum }
    public var speedKbps: UInt32 { raw.pointee.speed_kbps }
    public var isColdplug: Bool { raw.pointee.flags & UInt16(PB_EVENT_COLDPLUG) != 0 }
    public var syspath: String { string(raw.pointee.syspath) }
    public var serial: String { string(raw.pointee.serial) }
    public var manufacturer: String { string(raw.pointee.manufacturer) }
    public var product: String { string(raw.pointee.product) }
    public var driver: String { string(raw.pointee.driver) }
    public var devnode: String { string(raw.pointee.devnode) }
    /// `PB_EVENT_*` bits (coldplug, resync, truncated, from table).
    public var flags: UInt16 { raw.pointee.flags }
    /// The kernel's SEQNUM of the uevent (0 when none).
    public var kernelSeqnum: UInt64 { raw.pointee.kernel_seqnum }
    public var bcdDevice: UInt16 { raw.pointee.bcd_device }
    public var deviceClass: UInt8 { raw.pointee.device_class }
    public var deviceSubclass: UInt8 { raw.pointee.device_subclass }
    public var deviceProtocol: UInt8 { raw.pointee.device_protocol }
    /// bNumInterfaces of the active configuration.
    public var numInterfaces: UInt8 { raw.pointee.num_interfaces }
    /// The interfaces the event lists: (class, subclass, protocol) each.
    public var interfaces: [(class: UInt8, subclass: UInt8, protocol: UInt8)] {
        withUnsafeBytes(of: raw.pointee.interfaces) { bytes in
            let all = bytes.bindMemory(to: pb_usb_interface.self)
            return (0..<min(Int(raw.pointee.interfaces_len), all.count)).map {
                (all[$0].iface_class, all[$0].iface_subclass, all[$0].iface_protocol)
            }
        }
    }
    /// The C event itself, for anything this view does not name (valid only during the callback).
    public var pointer: UnsafePointer<pb_event> { raw }
    /// "046d:c52b".
    public var id: String { hex(vendorID) + ":" + hex(productID) }

    private func string(_ s: pb_str) -> String { String(cString: pb_event_string(raw, s)) }
    private func hex(_ v: UInt16) -> String {
        let digits = String(v, radix: 16)
        return String(repeating: "0", count: 4 - digits.count) + digits
    }
}

/// The events of one callback.
public struct EventBatch: RandomAccessCollection {
    let pointers: UnsafePointer<UnsafePointer<pb_event>?>
    public let count: Int
    public var startIndex: Int { 0 }
    public var endIndex: Int { count }
    public subscript(i: Int) -> Event { Event(raw: pointers[i]!) }
}

/// Negotiation and the C table behind a `PlugboardPlugin`.
public enum PluginExport {
    /// Answers the host's negotiation for `type` (call it from your `pb_plugin_entry`).
    public static func negotiate<P: PlugboardPlugin>(_ type: P.Type, _ input: UnsafePointer<pb_negotiate_in>?,
                                                     _ output: UnsafeMutablePointer<pb_negotiate_out>?) -> Int32 {
        Registration.shared.hostAPI = input?.pointee.host_api
        Registration.shared.install(type)
        return pb_negotiate_default(input, output, Registration.shared.table)
    }
}

/// One plugin type per library image: its factory, name, version and the C table pointing at
/// the trampolines below (kept for the image's life: it is never unloaded).
final class Registration: @unchecked Sendable {
    static let shared = Registration()
    nonisolated(unsafe) var hostAPI: UnsafePointer<pb_host_api>?
    var make: ((PluginHost) throws -> any PlugboardPlugin)?
    let table = UnsafeMutablePointer<pb_plugin_api>.allocate(capacity: 1)

    func install<P: PlugboardPlugin>(_ type: P.Type) {
        make = { try P(host: $0) }
        table.initialize(to: pb_plugin_api(
            size: UInt32(MemoryLayout<pb_plugin_api>.size),
            abi_version: UInt32(PB_ABI_MAJOR) << 16 | UInt32(PB_ABI_MINOR),
            name: UnsafePointer(strdup(P.name)), version: UnsafePointer(strdup(P.version)),
            init: { host, _, state in
                guard let host, let state, let make = Registration.shared.make,
                      let api = Registration.shared.hostAPI else { return PB_ERR_INVALID }
                let ph = PluginHost(raw: host, api: api)
                do {
                    let plugin = try make(ph)
                    state.pointee = Unmanaged.passRetained(Box(plugin, ph)).toOpaque()
                    return PB_OK
                } catch {
                    ph.log(.error, "init failed: \(error)")
                    return PB_ERR_GENERIC
                }
            },
            events: { state, events, count in
                Box.call(state) { b in try b.plugin.handle(EventBatch(pointers: events!, count: Int(count))) }
            },
            resync: { state, devices, count in
                Box.call(state) { b in try b.plugin.resync(EventBatch(pointers: devices!, count: Int(count))) }
            },
            save_state: { state, buffer, capacity, length in
                guard let state, let length else { return PB_ERR_INVALID }
                let b = Unmanaged<Box>.fromOpaque(state).takeUnretainedValue()
                guard let saved = b.plugin.saveState() else { return PB_ERR_UNSUPPORTED }
                length.pointee = saved.count
                guard saved.count <= capacity else { return PB_ERR_FULL }
                if !saved.isEmpty, let buffer { saved.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: saved.count) } }
                return PB_OK
            },
            restore_state: { state, data, length in
                Box.call(state) { b in
                    let bytes = data.map { Array(UnsafeRawBufferPointer(start: $0, count: length)) } ?? []
                    try b.plugin.restoreState(bytes)
                }
            },
            shutdown: { state in
                guard let state else { return }
                let b = Unmanaged<Box>.fromOpaque(state).takeRetainedValue()
                b.plugin.shutdown()
            }))
    }

    /// The instance behind the C state pointer.
    final class Box {
        let plugin: any PlugboardPlugin
        let host: PluginHost
        init(_ plugin: any PlugboardPlugin, _ host: PluginHost) {
            self.plugin = plugin
            self.host = host
        }

        /// Runs `body` on the plugin; a thrown error is logged and reported as PB_ERR_GENERIC.
        static func call(_ state: UnsafeMutableRawPointer?, _ body: (Box) throws -> Void) -> Int32 {
            guard let state else { return PB_ERR_INVALID }
            let b = Unmanaged<Box>.fromOpaque(state).takeUnretainedValue()
            do {
                try body(b)
                return PB_OK
            } catch {
                b.host.log(.error, "\(error)")
                return PB_ERR_GENERIC
            }
        }
    }
}
