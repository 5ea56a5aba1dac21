/// The field schema of one XADD entry on `plugboard:{HOST}:events` (docs/redis.md, "Field schema").
/// The encoder writes the fields in this order; `tail` and the tests read them by name.
public enum EventField: Int, CaseIterable, Sendable {
    case seq, action, flags, tsNs, kseq, bus, dev, vid, pid, bcd, deviceClass, deviceSubclass, deviceProtocol
    case numInterfaces, interfaces, speedKbps, syspath, devnode, serial, manufacturer, product, driver

    /// The field name as stored in Redis.
    public var name: String {
        switch self {
        case .seq: return "seq"
        case .action: return "action"
        case .flags: return "flags"
        case .tsNs: return "ts_ns"
        case .kseq: return "kseq"
        case .bus: return "bus"
        case .dev: return "dev"
        case .vid: return "vid"
        case .pid: return "pid"
        case .bcd: return "bcd"
        case .deviceClass: return "class"
        case .deviceSubclass: return "subclass"
        case .deviceProtocol: return "protocol"
        case .numInterfaces: return "num_ifaces"
        case .interfaces: return "ifaces"
        case .speedKbps: return "speed_kbps"
        case .syspath: return "syspath"
        case .devnode: return "devnode"
        case .serial: return "serial"
        case .manufacturer: return "manufacturer"
        case .product: return "product"
        case .driver: return "driver"
        }
    }

    /// Written as a JSON number in the PUBLISH payload (the rest are JSON strings).
    var isNumber: Bool {
        switch self {
        case .seq, .flags, .tsNs, .kseq, .bus, .dev, .numInterfaces, .speedKbps: return true
        default: return false
        }
    }
}

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
