import PlugboardSDK

/// A plugin written in Swift with PlugboardSDK: counts events per vendor:product, keeps the
/// counts over a hot reload and publishes them as JSON when it shuts down.
final class SwiftCounter: PlugboardPlugin {
    static let name = "swift-counter"
    static let version = "1.0.0"

    private let host: PluginHost
    private var counts: [String: Int] = [:]
    private var total = 0

    init(host: PluginHost) throws {
        self.host = host
        host.log(.info, "swift-counter ready")
    }

    func handle(_ events: EventBatch) throws {
        for e in events {
            counts[e.id, default: 0] += 1
            total += 1
        }
    }

    /// "total\nid=count\n..." (a format of this plugin's own).
    func saveState() -> [UInt8]? {
        Array((["\(total)"] + counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }).joined(separator: "\n").utf8)
    }

    func restoreState(_ state: [UInt8]) throws {
        let lines = String(decoding: state, as: UTF8.self).split(separator: "\n")
        guard let first = lines.first, let t = Int(first) else { return }
        total = t
        for line in lines.dropFirst() {
            let kv = line.split(separator: "=")
            if kv.count == 2, let n = Int(kv[1]) { counts[String(kv[0])] = n }
        }
    }

    func shutdown() {
        let devices = counts.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",")
        host.publish(topic: "summary", "{\"events\":\(total),\"devices\":{\(devices)}}")
    }
}

@_cdecl("pb_plugin_entry")
public func pb_plugin_entry(_ input: UnsafePointer<pb_negotiate_in>?, _ output: UnsafeMutablePointer<pb_negotiate_out>?) -> Int32 {
    PluginExport.negotiate(SwiftCounter.self, input, output)
}
