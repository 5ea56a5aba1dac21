import PlugboardCore
import PlugboardRedis

/// What a run did not deliver, for its exit status (docs/operations.md, "Exit codes": 3).
extension HostAssembly {
    /// One line per place events did not reach, empty when every event reached Redis (when it is
    /// configured) and every plugin. Read after the shutdown.
    /// - Parameter plugins: also plugins' undelivered events (`run`); `serve` reports those in
    ///   /metrics and leaves its exit status to Redis.
    /// Not counted: events a plugin's manifest filter did not select, and plugins refused at load
    /// or in init (`run --strict` is about those).
    public func undelivered(plugins: Bool = true) -> [String] {
        var lines: [String] = []
        if let redis, let line = Self.undelivered(redis.publisher) { lines.append(line) }
        guard plugins else { return lines }
        for s in runtime.pluginStats where s.missed > 0 || s.skipped > 0 || s.state == .quarantined {
            var parts: [String] = []
            if s.missed > 0 { parts.append("\(s.missed) missed (the ring lapped it)") }
            if s.skipped > 0 { parts.append("\(s.skipped) skipped (poison events it crashed on)") }
            if s.state == .quarantined {
                parts.append("quarantined after \(s.events) events, it got none after that (\(s.quarantineReason ?? "crashed too often"))")
            }
            lines.append("plugin \(s.name): " + parts.joined(separator: "; "))
        }
        return lines
    }

    /// The publisher's undelivered counts as one line, nil when it delivered everything.
    static func undelivered(_ publisher: RedisPublisher) -> String? {
        let st = publisher.stats
        let events = st.pending + st.dropped + st.rejected + st.lapped
        let records = st.pluginPending + st.pluginRejected
        guard events > 0 || records > 0 else { return nil }
        var why: [String] = []
        if st.pending > 0 { why.append("\(st.pending) not acknowledged by Redis when the publisher stopped") }
        if st.dropped > 0 { why.append("\(st.dropped) dropped (spill buffer full while Redis was down)") }
        if st.rejected > 0 { why.append("\(st.rejected) rejected by Redis") }
        if st.lapped > 0 { why.append("\(st.lapped) lapped by the ring") }
        if st.pluginPending > 0 { why.append("\(st.pluginPending) plugin records not acknowledged") }
        if st.pluginRejected > 0 { why.append("\(st.pluginRejected) plugin records rejected") }
        var line = "redis \(publisher.configuration.url.redacted): \(events) events not stored in \(publisher.streamKey)"
        if records > 0 { line += " and \(records) plugin records" }
        line += " (" + why.joined(separator: "; ") + ")"
        if let e = st.lastError { line += "; last error: \(e)" }
        if let state = publisher.configuration.state, st.pending + st.pluginPending > 0 {
            line += "; the \(st.pending + st.pluginPending) not acknowledged are kept in \(state.directory) and published first by the next start"
        }
        return line
    }
}
