import PlugboardSDK

/// Test plugin for the Swift SDK's error paths: `fail_init = 1` makes init throw; otherwise
/// every events callback throws.
final class SwiftThrows: PlugboardPlugin {
    struct Refused: Error, CustomStringConvertible { let description: String }
    static let name = "swift-throws"
    static let version = "0.0.1"

    init(host: PluginHost) throws {
        if host.config("fail_init") == "1" { throw Refused(description: "fail_init is set, refusing to start") }
    }

    func handle(_ events: EventBatch) throws {
        throw Refused(description: "cannot handle event \(events.first?.sequence ?? 0)")
    }
}

@_cdecl("pb_plugin_entry")
public func pb_plugin_entry(_ input: UnsafePointer<pb_negotiate_in>?, _ output: UnsafeMutablePointer<pb_negotiate_out>?) -> Int32 {
    PluginExport.negotiate(SwiftThrows.self, input, output)
}
