import PlugboardSystem

/// A plugin's frequent host calls (publish, metrics, log) as records of the worker's shared
/// queue (`SharedQueue`): one memcpy into shared memory per call, no system call unless the host
/// sleeps. The payload layouts, little-endian:
///
///     publish    u16 topic length, topic, payload
///     counter    u64 delta, name
///     gauge      f64 value, name
///     histogram  f64 value, name
///     log        u32 level, message
///     mark       u64 cursor: every record before it belongs to events up to `cursor` (a canary)
public enum HostCallRecord: UInt8, Sendable {
    case publish = 1, counter = 2, gauge = 3, histogram = 4, log = 5, mark = 6

    /// One record read back on the host, checked (the worker is untrusted).
    public enum Decoded: Sendable {
        case publish(topic: String, payload: [UInt8])
        case counter(name: String, delta: UInt64)
        case gauge(name: String, value: Double)
        case histogram(name: String, value: Double)
        case log(level: Int32, message: String)
        case mark(cursor: UInt64)
    }

    /// nil for an unknown kind or a payload too short for its kind.
    public static func decode(kind: UInt8, _ p: UnsafeRawBufferPointer) -> Decoded? {
        func u64(_ o: Int) -> UInt64 { var v: UInt64 = 0; for i in 0..<8 { v |= UInt64(p[o + i]) << (8 * UInt64(i)) }; return v }
        func text(from o: Int, count: Int? = nil) -> String {
            String(decoding: UnsafeRawBufferPointer(rebasing: p[o..<(o + (count ?? p.count - o))]), as: UTF8.self)
        }
        switch HostCallRecord(rawValue: kind) {
        case .publish:
            guard p.count >= 2 else { return nil }
            let n = Int(p[0]) | Int(p[1]) << 8
            guard p.count >= 2 + n else { return nil }
            return .publish(topic: text(from: 2, count: n), payload: Array(UnsafeRawBufferPointer(rebasing: p[(2 + n)...])))
        case .counter:
            guard p.count >= 8 else { return nil }
            return .counter(name: text(from: 8), delta: u64(0))
        case .gauge, .histogram:
            guard p.count >= 8 else { return nil }
            let v = Double(bitPattern: u64(0))
            return kind == HostCallRecord.gauge.rawValue ? .gauge(name: text(from: 8), value: v) : .histogram(name: text(from: 8), value: v)
        case .log:
            guard p.count >= 4 else { return nil }
            let level = Int32(bitPattern: UInt32(p[0]) | UInt32(p[1]) << 8 | UInt32(p[2]) << 16 | UInt32(p[3]) << 24)
            return .log(level: level, message: text(from: 4))
        case .mark:
            guard p.count >= 8 else { return nil }
            return .mark(cursor: u64(0))
        case nil:
            return nil
        }
    }
}
