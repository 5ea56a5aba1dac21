import CPlugboard
#if canImport(Glibc)
import Glibc
#endif

// The two shapes of a field's value: a JSON value (monitor, replay, PUBLISH, tail --json, /devices)
// and a text value (a Redis stream entry). Both are written and parsed here, from the table.

extension EventSchema.Entry {
    // MARK: Writing (no allocation: the PUBLISH payload and the XADD fields are written per event)

    /// Writes `"name":value` of event `e`.
    @inlinable
    public func writeJSON<S: JSONSink>(_ e: UnsafePointer<pb_event>, into w: inout JSONWriter<S>) {
        w.key(name)
        writeJSONValue(e, into: &w)
    }

    /// Writes the JSON value of this field of event `e` (after a key the caller wrote).
    @inlinable
    public func writeJSONValue<S: JSONSink>(_ e: UnsafePointer<pb_event>, into w: inout JSONWriter<S>) {
        switch format {
        case .decimal: w.number(read(e))
        case .hex(let digits): w.hexString(read(e), digits: digits)
        case .action: w.string(utf8: EventSchema.actionName(read(e)))
        case .flags:
            w.beginArray()
            let bits = read(e)
            for (flag, name) in EventFlags.names where bits & UInt64(flag.rawValue) != 0 { w.string(name) }
            w.endArray()
        case .interfaces:
            w.beginArray()
            EventSchema.forEachInterface(e) { w.hexString(UInt64($0), digits: 6) }
            w.endArray()
        case .string: w.string(utf8: e.bytes(stringField!))
        }
    }

    /// Writes the stream-entry text of this field of event `e` into `sink`.
    @inlinable
    public func writeText<S: JSONSink>(_ e: UnsafePointer<pb_event>, into sink: inout S) {
        Self.writeText(format: format, read: read, stringField: stringField, e, into: &sink)
    }

    /// `writeText` from the parts of a row it uses, for a hot loop that keeps those parts and not
    /// the whole row (copying an `Entry` retains its strings and closures: the Redis encoder).
    @inlinable
    public static func writeText<S: JSONSink>(format: EventValueFormat, read: (UnsafePointer<pb_event>) -> UInt64,
                                              stringField: EventStringField?, _ e: UnsafePointer<pb_event>, into sink: inout S) {
        switch format {
        case .decimal: sink.writeDecimal(read(e))
        case .hex(let digits): sink.writeHex(read(e), digits: digits)
        case .action: sink.write(EventSchema.actionName(read(e)))
        case .flags:
            let bits = read(e)
            var first = true
            for (flag, name) in EventFlags.names where bits & UInt64(flag.rawValue) != 0 {
                if !first { sink.write(UInt8(ascii: ",")) }
                first = false
                var name = name
                name.withUTF8 { sink.write(UnsafeRawBufferPointer($0)) }
            }
        case .interfaces:
            var first = true
            EventSchema.forEachInterface(e) {
                if !first { sink.write(UInt8(ascii: ",")) }
                first = false
                sink.writeHex(UInt64($0), digits: 6)
            }
        case .string: sink.write(e.bytes(stringField!))
        }
    }

    /// The stream-entry text of this field of event `e` (allocates: for tools and tests).
    public func text(of e: UnsafePointer<pb_event>) -> String {
        var bytes: [UInt8] = []
        writeText(e, into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: Parsing

    /// Parses this field's value from a JSON value (as `JSONSerialization` returns it).
    /// Hex fields also take a JSON number (the value itself, for hand-written files).
    /// - Throws: `EventSchema.ValueError` saying what was expected.
    public func parse(json v: Any) throws -> EventValue {
        switch format {
        case .decimal:
            guard let n = v as? UInt64, n <= max else { throw fail("an integer from 0 to \(max), found \(v)", "fix the number") }
            return .number(n)
        case .hex(let digits):
            if let s = v as? String { return try parse(text: s) }
            if let n = v as? UInt64, n <= max { return .number(n) }
            throw fail("\(digits) hex digits like \"\(String(repeating: "0", count: digits - 1))1\", found \(v)",
                       "write the value in hexadecimal as udev shows it")
        case .action, .string:
            guard let s = v as? String else { throw fail("a string, found \(v)", "quote the value") }
            return try parse(text: s)
        case .flags:
            guard let names = v as? [String] else { throw fail("an array of strings, found \(v)", "e.g. [\"coldplug\"]") }
            return try parseFlags(names)
        case .interfaces:
            guard let list = v as? [String] else {
                throw fail("an array of 6-hex-digit strings, found \(v)", "e.g. [\"030101\"] (class, subclass, protocol)")
            }
            return try parseInterfaces(list)
        }
    }

    /// Parses this field's value from stream-entry text. Also reads what older daemons wrote:
    /// `flags` as decimal bits and `ifaces` as `cc:ss:pp` triples.
    /// - Throws: `EventSchema.ValueError` saying what was expected.
    public func parse(text s: String) throws -> EventValue {
        switch format {
        case .decimal:
            guard let n = UInt64(s), n <= max else { throw fail("an integer from 0 to \(max), found \"\(s)\"", "fix the number") }
            return .number(n)
        case .hex(let digits):
            guard !s.isEmpty, s.count <= digits, let n = UInt64(s, radix: 16), n <= max else {
                throw fail("\(digits) hex digits like \"\(String(repeating: "0", count: digits - 1))1\", found \"\(s)\"",
                           "write the value in hexadecimal as udev shows it")
            }
            return .number(n)
        case .action:
            guard let a = EventAction(name: s) else {
                throw fail("an action name, found '\(s)'", "use one of \(EventAction.allCases.map(\.name).joined(separator: ", "))")
            }
            return .number(UInt64(a.rawValue))
        case .flags:
            if let bits = UInt16(s) { return .number(UInt64(bits)) }  // an older daemon's decimal bits
            return try parseFlags(s.isEmpty ? [] : s.split(separator: ",").map(String.init))
        case .interfaces:
            return try parseInterfaces(s.isEmpty ? [] : s.split(separator: ",").map { $0.filter { $0 != ":" } })
        case .string:
            return .string(s)
        }
    }

    private func parseFlags(_ names: [String]) throws -> EventValue {
        var bits: UInt64 = 0
        for n in names {
            guard let f = EventFlags.names.first(where: { $0.1 == n }) else {
                throw fail("an unknown flag '\(n)'", "use \(EventFlags.names.map(\.1).joined(separator: ", "))")
            }
            bits |= UInt64(f.0.rawValue)
        }
        return .number(bits)
    }

    private func parseInterfaces(_ list: [String]) throws -> EventValue {
        try .interfaces(list.map { s in
            guard s.count == 6, let v = UInt32(s, radix: 16) else {
                throw fail("6 hex digits per interface, found '\(s)'", "write class, subclass, protocol as e.g. \"080650\"")
            }
            return v
        })
    }

    private func fail(_ expected: String, _ fix: String) -> EventSchema.ValueError {
        EventSchema.ValueError(field: name, expected: expected, fix: fix)
    }
}

extension EventSchema {
    /// A value that does not match its field's format.
    public struct ValueError: Error, Sendable, CustomStringConvertible {
        public var field: String
        /// "expected ..., found ...".
        public var expected: String
        public var fix: String
        public var description: String { "\(field): expected \(expected) (fix: \(fix))" }
    }

    /// Writes event `e` as one JSON object: `fields` in table order (all by default), after
    /// `leading` members the caller writes itself (the PUBLISH payload's "id").
    @inlinable
    public static func writeJSON<S: JSONSink>(_ e: UnsafePointer<pb_event>, into w: inout JSONWriter<S>,
                                              fields: Set<EventField>? = nil,
                                              leading: (inout JSONWriter<S>) -> Void = { _ in }) {
        w.beginObject()
        leading(&w)
        for entry in entries where fields?.contains(entry.field) ?? true { entry.writeJSON(e, into: &w) }
        w.endObject()
    }

    /// Reads a JSON object's fields, by name or alias; other keys are left to the caller.
    /// - Throws: `ValueError` for a value that does not match its field.
    public static func record(json object: [String: Any]) throws -> EventRecord {
        var r = EventRecord()
        for entry in entries {
            guard let v = entry.acceptedNames.lazy.compactMap({ object[$0] }).first else { continue }
            r[entry.field] = try entry.parse(json: v)
        }
        return r
    }

    /// Reads the fields of a stream entry (name/value pairs), by name or alias; unknown names are
    /// skipped (a newer daemon may add fields).
    /// - Throws: `ValueError` for a value that does not match its field.
    public static func record(text pairs: [(name: String, value: String)]) throws -> EventRecord {
        var r = EventRecord()
        for (name, value) in pairs {
            guard let entry = entry(named: name) else { continue }
            if r[entry.field] != nil && entry.name != name { continue }  // the current name wins over an alias
            r[entry.field] = try entry.parse(text: value)
        }
        return r
    }

    /// Every name a JSON event object may use (names and aliases).
    public static var acceptedNames: [String] { entries.flatMap(\.acceptedNames) }

    /// The name of action code `a`, as bytes of a static C string.
    @inlinable
    public static func actionName(_ a: UInt64) -> UnsafeRawBufferPointer {
        let p = pb_action_name(UInt16(truncatingIfNeeded: a))!
        return UnsafeRawBufferPointer(start: p, count: strlen(p))
    }

    /// Calls `body` with each stored interface of `e` as `class << 16 | subclass << 8 | protocol`.
    @inlinable
    public static func forEachInterface(_ e: UnsafePointer<pb_event>, _ body: (UInt32) -> Void) {
        let count = min(Int(e.pointee.interfaces_len), Int(PB_MAX_INTERFACES))
        withUnsafeBytes(of: e.pointee.interfaces) { raw in
            for i in 0..<count {
                body(UInt32(raw[i * 3]) << 16 | UInt32(raw[i * 3 + 1]) << 8 | UInt32(raw[i * 3 + 2]))
            }
        }
    }
}
