import CPlugboard
import Foundation
import PlugboardCore

extension EventJSON {
    /// Decodes one replay line. `file` and `line` go into error messages.
    /// - Throws: `PlugboardError` naming the file, line, field and the fix.
    public static func decode(line text: String, file: String, line: Int) throws -> EventRecord {
        let place = "\(file):\(line)"
        func bad(_ field: String?, _ reason: String, _ fix: String) -> PlugboardError {
            PlugboardError(code: "replay.field", file: place, field: field, reason: reason, fix: fix)
        }
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: Data(text.utf8)) } catch {
            throw bad(nil, "not valid JSON", "write one JSON object per line (docs/replay-format.md)")
        }
        guard let dict = object as? [String: Any] else {
            throw bad(nil, "expected a JSON object, found \(type(of: object))", "write one JSON object per line")
        }
        let known = fields
        for key in dict.keys.sorted() where !known.contains(key) {
            let names = EventSchema.entries.map(\.name) + [delayKey]
            let hint = Text.closestMatch(to: key, in: names).map { " (did you mean '\($0)'?)" } ?? ""
            throw bad(key, "unknown field\(hint)", "remove it or use one of: \(names.joined(separator: ", "))")
        }
        let replayable = EventAction.allCases.filter { $0 != .unknown && $0 != .resync }
        guard let action = dict["action"] as? String else {
            throw bad("action", "missing or not a string", "add \"action\": one of \(replayable.map(\.name).joined(separator: ", "))")
        }
        guard let a = EventAction(name: action), replayable.contains(a) else {
            throw bad("action", "unknown action '\(action)'", "use one of \(replayable.map(\.name).joined(separator: ", "))")
        }
        var r: EventRecord
        do { r = try EventSchema.record(json: dict) } catch let e as EventSchema.ValueError {
            throw bad(e.field, "expected \(e.expected)", e.fix)
        }
        for f in EventStringField.allCases {
            // An empty string is an absent one, as in a pb_event.
            if case .string("")? = r[EventField(f)] { r[EventField(f)] = nil }
        }
        guard r[.syspath] != nil else {
            throw bad("syspath", "missing", "every event needs the device's syspath, e.g. \"/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1\"")
        }
        if let d = dict[delayKey] {
            guard let ms = d as? Double, ms >= 0, ms <= 60_000 else {
                throw bad(delayKey, "expected a number of milliseconds from 0 to 60000", "fix the delay")
            }
            r.delayMilliseconds = ms
        }
        return r
    }
}
