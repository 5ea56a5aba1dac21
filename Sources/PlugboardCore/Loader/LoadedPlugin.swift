import CPlugboard
import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

/// A plugin that was opened and negotiated: its handle and its callback table.
///
/// Calls into the plugin (`initialize`, `deliver`, `resync`, `shutdown`) must come
/// from one thread at a time: the plugin's worker.
public final class LoadedPlugin: @unchecked Sendable {
    // @unchecked: the handle and tables are immutable after loading; `state` is
    // set by `initialize` and used only by the worker thread that owns the plugin.
    public let path: String
    public let image: ELFImage
    /// Name and version the plugin reports in its table.
    public let name: String
    public let version: String
    /// The ABI minor the plugin speaks.
    public let abiMinor: UInt16
    let library: DynamicLibrary
    let api: UnsafePointer<pb_plugin_api>
    var state: UnsafeMutableRawPointer?
    private(set) var isInitialised = false
    private(set) var isUnloaded = false

    init(path: String, image: ELFImage, library: DynamicLibrary, api: UnsafePointer<pb_plugin_api>,
         abiMinor: UInt16, name: String, version: String) {
        self.path = path
        self.image = image
        self.library = library
        self.api = api
        self.abiMinor = abiMinor
        self.name = name
        self.version = version
    }

    /// Calls the plugin's `init` with the context's configuration.
    /// - Throws: `.initFailed` with the status and the last message the plugin logged.
    public func initialize(context: PluginContext) throws(PluginLoadError) {
        if let initFn = api.pointee.`init` {
            var s: UnsafeMutableRawPointer?
            let status = initFn(context.hostPointer, UnsafePointer(context.cConfig), &s)
            guard status == PB_OK else {
                throw PluginLoadError(file: path, kind: .initFailed(status: status, lastLog: context.lastWarningOrError))
            }
            state = s
        }
        isInitialised = true
    }

    /// Hands `count` events to the plugin. Returns its status.
    @inline(__always)
    public func deliver(_ events: UnsafePointer<UnsafePointer<pb_event>?>, count: UInt32) -> Int32 {
        api.pointee.events!(state, events, count)
    }

    /// Hands the device table to the plugin's `resync`, if it has one.
    public func resync(_ devices: UnsafePointer<UnsafePointer<pb_event>?>, count: UInt32) -> Int32 {
        guard let fn = api.pointee.resync else { return PB_OK }
        return fn(state, devices, count)
    }

    /// Whether the plugin implements save/restore (hot reload keeps its state).
    public var supportsStateTransfer: Bool { api.pointee.save_state != nil && api.pointee.restore_state != nil }

    /// Calls `save_state`, growing the buffer as the plugin asks.
    public func saveState() -> [UInt8]? {
        guard let save = api.pointee.save_state else { return nil }
        var cap = 4096
        for _ in 0..<8 {
            var buf = [UInt8](repeating: 0, count: cap)
            var len = 0
            let status = buf.withUnsafeMutableBytes { save(state, $0.baseAddress, cap, &len) }
            if status == PB_OK { return Array(buf.prefix(min(len, cap))) }
            if status == PB_ERR_FULL, len > cap { cap = len; continue }
            return nil
        }
        return nil
    }

    /// Calls `restore_state`.
    public func restoreState(_ data: [UInt8]) -> Int32 {
        guard let restore = api.pointee.restore_state else { return PB_ERR_UNSUPPORTED }
        return data.withUnsafeBytes { restore(state, $0.baseAddress, $0.count) }
    }

    /// Calls the plugin's `shutdown` once (only if init succeeded).
    public func shutdown() {
        guard isInitialised else { return }
        isInitialised = false
        api.pointee.shutdown?(state)
        state = nil
    }

    /// Releases the handle. Images that contain Swift are never `dlclose`d (the Swift
    /// runtime does not support unloading them); this includes C plugins linked by
    /// SwiftPM, which carry the runtime's registration sections.
    /// - Returns: whether the image was actually closed.
    @discardableResult
    public func unload() -> Bool {
        guard !isUnloaded else { return false }
        isUnloaded = true
        if image.containsSwift { return false }
        do { try library.close() } catch { return false }
        return true
    }
}
