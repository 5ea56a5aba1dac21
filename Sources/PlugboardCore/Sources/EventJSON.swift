import CPlugboard

/// The JSON form of a `pb_event`: one object per line in replay files and in
/// `plugboard monitor --json`, written and read through `EventSchema` (the same names and
/// values as the Redis stream entry, the PUBLISH payload and `tail --json`).
/// docs/replay-format.md describes every field. Reading a replay line (`decode`) lives in
/// PlugboardReplay: it needs Foundation's JSON parser, which the worker process does not load.
///
///     {"sequence":1,...,"action":"add","vendor_id":"046d","product_id":"c52b","syspath":"/sys/devices/...",...}
public enum EventJSON {
    /// Replay pacing, the one key of a replay line that is not an event field.
    public static let delayKey = "delay_ms"

    /// Every field a replay line may have (names, the older names they replace, and `delay_ms`).
    public static var fields: [String] { EventSchema.acceptedNames + [delayKey] }

    /// Encodes an event as one JSON object (keys in schema order).
    public static func encode(_ e: UnsafePointer<pb_event>) -> String {
        var w = JSONWriter()
        EventSchema.writeJSON(e, into: &w)
        return w.text
    }

    /// A JSON string literal for `s`.
    public static func quote(_ s: String) -> String { Text.jsonQuoted(s) }

    /// One decoded replay line, ready to be written into a slot.
    public typealias Record = EventRecord
}

extension EventField {
    /// The schema field of event string `s`.
    public init(_ s: EventStringField) {
        self = EventSchema.entries.first { $0.stringField == s }!.field
    }
}
