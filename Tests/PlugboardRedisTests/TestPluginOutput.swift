import PlugboardRedis
import Synchronization

/// A bounded plugin-output queue standing in for the core's `OutputQueue` until it lands: the test
/// pushes records, the publisher drains them through `PluginOutputSource`.
final class TestPluginOutput: PluginOutputSource, Sendable {
    private let records = Mutex<[(String, String, [UInt8])]>([])
    private let hook = Mutex<(@Sendable () -> Void)?>(nil)

    func push(plugin: String, topic: String, data: [UInt8]) {
        records.withLock { $0.append((plugin, topic, data)) }
        hook.withLock { $0 }?()
    }

    var isEmpty: Bool { records.withLock { $0.isEmpty } }

    func setPushHook(_ h: (@Sendable () -> Void)?) { hook.withLock { $0 = h } }

    func drain(max: Int, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void) -> Int {
        let taken: [(String, String, [UInt8])] = records.withLock { r in
            let n = min(max, r.count)
            let head = Array(r.prefix(n))
            r.removeFirst(n)
            return head
        }
        for (name, topic, data) in taken {
            Array(name.utf8).withUnsafeBytes { n in
                Array(topic.utf8).withUnsafeBytes { t in
                    data.withUnsafeBytes { d in body(n, t, d) }
                }
            }
        }
        return taken.count
    }
}
