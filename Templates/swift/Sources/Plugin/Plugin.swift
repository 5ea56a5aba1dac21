// {{name}}: a Plugboard plugin in Swift (made by `plugboard new --language swift`; edit freely).
//
// It counts the events it receives per action, logs one line per event, carries its counts over a
// hot reload (saveState / restoreState) and publishes a summary when it shuts down. The SDK calls
// every method on the plugin's own worker thread, one at a time (docs/abi.md, docs/plugin-guide.md).
import PlugboardSDK

final class Plugin: PlugboardPlugin {
    static let name = "{{name}}"
    static let version = "0.1.0"

    private let host: PluginHost
    private var counts = [Int](repeating: 0, count: 8) // events per action (PB_ACTION_*)

    init(host: PluginHost) throws {
        self.host = host
    }

    func handle(_ events: EventBatch) throws {
        for e in events {
            let action = Int(e.action.rawValue)
            counts[action < 8 ? action : 0] += 1
            host.log(.info, "\(e.sequence) action=\(e.action.rawValue) \(e.id) \(e.syspath)")
        }
    }

    /// Hot reload (plugboard run --watch): the counts survive a rebuild, as "n,n,n,...".
    func saveState() -> [UInt8]? {
        Array(counts.map(String.init).joined(separator: ",").utf8)
    }

    func restoreState(_ state: [UInt8]) throws {
        let values = String(decoding: state, as: UTF8.self).split(separator: ",").compactMap { Int($0) }
        if values.count == counts.count { counts = values } // another build's format: start afresh
    }

    func shutdown() {
        host.publish(topic: "summary", "{\"events\":\(counts.reduce(0, +))}")
    }
}

@_cdecl("pb_plugin_entry")
public func pb_plugin_entry(_ input: UnsafePointer<pb_negotiate_in>?, _ output: UnsafeMutablePointer<pb_negotiate_out>?) -> Int32 {
    PluginExport.negotiate(Plugin.self, input, output)
}
