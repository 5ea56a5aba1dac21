/// Redis key and channel names for one host. `{HOST}` is a Redis Cluster hash tag: one host's
/// streams live in one slot, so the events stream and its plugin streams can share a pipeline.
public struct StreamKeys: Sendable, Equatable {
    public var host: String

    public init(host: String) { self.host = host }

    /// `plugboard:{HOST}:events`: the device-event stream.
    public var events: String { "plugboard:{\(host)}:events" }
    /// `plugboard:{HOST}:events`, used as the PUBLISH channel too (channels and keys do not collide).
    public var channel: String { events }
    /// `plugboard:{HOST}:plugin:`: prefix of each plugin's output stream (append the plugin name).
    public var pluginPrefix: String { "plugboard:{\(host)}:plugin:" }
    /// `plugboard:{HOST}:wait`: a small string the publisher sets at each connect when it waits for
    /// replicas (`redis.wait_replicas`), so that `WAIT` covers entries a replay found already stored.
    public var waitMark: String { "plugboard:{\(host)}:wait" }
    /// `plugboard:{HOST}:plugin:<name>`.
    public func plugin(_ name: String) -> String { pluginPrefix + name }

    /// This machine's host name (gethostname), or "localhost".
    public static var localHost: String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "localhost" }
        let name = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "localhost" : name
    }
}

#if canImport(Glibc)
import Glibc
#endif
