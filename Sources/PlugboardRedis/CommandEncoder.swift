import CPlugboard
import PlugboardCore

/// Builds the argv of one Redis command from an event or a plugin record, without allocating:
/// constant arguments (the field names of `EventSchema`) live in an arena made once, other values
/// are written into a scratch buffer by the schema, and string fields point straight into the
/// (copied) event. The argv is valid until the next
/// encode call; `redisAppendCommandArgv` copies it into hiredis' output buffer at once.
final class CommandEncoder {
    static let maxArgs = 64
    static let scratchSize = 16 * 1024

    let argv: UnsafeMutablePointer<UnsafePointer<CChar>?>
    let lengths: UnsafeMutablePointer<Int>
    private let scratch: UnsafeMutablePointer<UInt8>
    private var used = 0
    private let arena: UnsafeMutablePointer<UInt8>
    
    private typealias Text = (UnsafePointer<CChar>, Int)
    private let empty: Text
    private let xadd: Text
    private let publish: Text
    private let eventsKey: Text
    private let channel: Text
    private let pluginPrefix: Text
    private let maxlenWord: Text
    private let tilde: Text
    private let maxlen: Text
    private let minidWord: Text
    /// With time retention: the `MINID ~` threshold, ms since the epoch, set once per batch.
    var minID: UInt64?
    private let topicWord: Text
    private let dataWord: Text
    /// By `EventSchema.entries` index: the stream field names, and `"name":` for the PUBLISH payload.
    private let fieldNames: UnsafeMutablePointer<Text>
    private let jsonKeys: [Text]
    private let hasMaxLength: Bool
    /// Values of the last encoded event, by `EventSchema.entries` index.
    private let values: UnsafeMutablePointer<Text>
    /// How each field's value is written, by `EventSchema.entries` index (`Plan`).
    private let plans: UnsafeMutablePointer<Plan>
    private let fieldCount: Int

    /// One field of the schema reduced to what its stream-entry text needs, made once. The
    /// per-event loop used to copy each `EventSchema.Entry` (four strings and arrays, two
    /// closures: a dozen reference counts per field, 22 fields per event) and to write the
    /// encoder's own properties under Swift's dynamic exclusivity checks: together about a third
    /// of the publisher thread's time (docs/benchmarks.md, "The publisher's field loop").
    private struct Plan {
        /// A string field points into the event; any other is written by the schema's writer.
        let string: EventStringField?
        let format: EventValueFormat
        let read: @Sendable (UnsafePointer<pb_event>) -> UInt64
    }

    init(keys: StreamKeys, maxLength: Int?, timeRetention: Bool = false) {
        argv = .allocate(capacity: CommandEncoder.maxArgs)
        lengths = .allocate(capacity: CommandEncoder.maxArgs)
        scratch = .allocate(capacity: CommandEncoder.scratchSize)
        let arena = UnsafeMutablePointer<UInt8>.allocate(capacity: 4096)
        self.arena = arena
        var arenaUsed = 0
        func intern(_ s: String) -> Text {
            let bytes = Array(s.utf8)
            precondition(arenaUsed + bytes.count + 1 <= 4096, "host name too long for the key arena")
            let p = arena + arenaUsed
            bytes.withUnsafeBufferPointer { if let b = $0.baseAddress { p.update(from: b, count: bytes.count) } }
            p[bytes.count] = 0
            arenaUsed += bytes.count + 1
            return (UnsafeRawPointer(p).assumingMemoryBound(to: CChar.self), bytes.count)
        }
        empty = intern("")
        let entries = EventSchema.entries
        fieldCount = entries.count
        values = .allocate(capacity: entries.count)
        values.initialize(repeating: empty, count: entries.count)
        plans = .allocate(capacity: entries.count)
        for (i, entry) in entries.enumerated() {
            (plans + i).initialize(to: Plan(string: entry.stringField, format: entry.format, read: entry.read))
        }
        xadd = intern("XADD")
        publish = intern("PUBLISH")
        eventsKey = intern(keys.events)
        channel = intern(keys.channel)
        pluginPrefix = intern(keys.pluginPrefix)
        maxlenWord = intern("MAXLEN")
        tilde = intern("~")
        maxlen = intern(maxLength.map(String.init) ?? "")
        hasMaxLength = maxLength != nil && !timeRetention
        minidWord = intern("MINID")
        minID = timeRetention ? 0 : nil
        topicWord = intern("topic")
        dataWord = intern("data")
        fieldNames = .allocate(capacity: entries.count)
        for (i, entry) in entries.enumerated() { (fieldNames + i).initialize(to: intern(entry.name)) }
        jsonKeys = EventSchema.entries.map { intern(PlugboardCore.Text.jsonQuoted($0.name) + ":") }
    }

    deinit {
        plans.deinitialize(count: fieldCount)
        plans.deallocate()
        values.deallocate()
        fieldNames.deallocate()
        argv.deallocate()
        lengths.deallocate()
        scratch.deallocate()
        arena.deallocate()
    }

    // MARK: Commands

    /// `XADD plugboard:{HOST}:events [MAXLEN ~ N | MINID ~ MS] <epoch>-<seq> field value ...`
    /// - Returns: argc.
    func encodeXADD(_ e: UnsafePointer<pb_event>, epochMs: UInt64) -> Int32 {
        used = 0
        var n = 0
        put(&n, xadd); put(&n, eventsKey)
        putTrim(&n)
        put(&n, id(epochMs, e.pointee.sequence))
        fillValues(e)
        for f in 0..<fieldCount {
            put(&n, fieldNames[f]); put(&n, values[f])
        }
        return Int32(n)
    }

    /// `PUBLISH <channel> <json>`: the event as `monitor --json` writes it, with "id" first.
    /// Call after `encodeXADD` for the same event when both are sent (it keeps that scratch), or alone.
    func encodePUBLISH(_ e: UnsafePointer<pb_event>, epochMs: UInt64, valuesFresh: Bool) -> Int32 {
        if !valuesFresh { used = 0 }
        let start = used
        var w = JSONWriter(sink: ScratchSink(base: scratch, used: used))
        w.beginObject()
        w.key("id")
        w.value { sink in
            sink.write(UInt8(ascii: "\""))
            sink.writeDecimal(epochMs)
            sink.write(UInt8(ascii: "-"))
            sink.writeDecimal(e.pointee.sequence)
            sink.write(UInt8(ascii: "\""))
        }
        for (i, entry) in EventSchema.entries.enumerated() {
            w.key(prepared: UnsafeRawBufferPointer(start: jsonKeys[i].0, count: jsonKeys[i].1))
            entry.writeJSONValue(e, into: &w)
        }
        w.endObject()
        used = w.sink.used
        precondition(used <= CommandEncoder.scratchSize, "PUBLISH payload overran the scratch buffer")
        var n = 0
        put(&n, publish); put(&n, channel)
        put(&n, (UnsafeRawPointer(scratch + start).assumingMemoryBound(to: CChar.self), used - start))
        return Int32(n)
    }

    /// `XADD plugboard:{HOST}:plugin:<name> [MAXLEN ~ N | MINID ~ MS] <epoch>-<outseq> topic <topic> data <bytes>`
    func encodePluginXADD(_ r: PluginRecord, epochMs: UInt64) -> Int32 {
        used = 0
        var n = 0
        put(&n, xadd)
        let keyStart = used
        appendBytes(pluginPrefix)
        appendBytes(r.name)
        put(&n, (UnsafeRawPointer(scratch + keyStart).assumingMemoryBound(to: CChar.self), used - keyStart))
        putTrim(&n)
        put(&n, id(epochMs, r.sequence))
        put(&n, topicWord); put(&n, r.topic)
        put(&n, dataWord); put(&n, r.data)
        return Int32(n)
    }

    // MARK: Fields

    private func fillValues(_ e: UnsafePointer<pb_event>) {
        // The scratch position lives in a local sink for the whole loop (one store at the end).
        var sink = ScratchSink(base: scratch, used: used)
        for i in 0..<fieldCount {
            if let field = plans[i].string {
                values[i] = string(e, e.pointee[field])
                continue
            }
            let start = sink.used
            EventSchema.Entry.writeText(format: plans[i].format, read: plans[i].read, stringField: nil, e, into: &sink)
            values[i] = (UnsafeRawPointer(scratch + start).assumingMemoryBound(to: CChar.self), sink.used - start)
        }
        used = sink.used
    }

    /// A string of the event, bounds-checked like `pb_event_string`: absent or out of range is "".
    private func string(_ e: UnsafePointer<pb_event>, _ s: pb_str) -> Text {
        let total = min(e.pointee.total_size, UInt32(PB_EVENT_MAX_SIZE))
        guard s.offset != 0, UInt32(s.offset) + UInt32(s.length) < total else { return empty }
        let p = UnsafeRawPointer(e) + Int(s.offset)
        return (p.assumingMemoryBound(to: CChar.self), Int(min(s.length, UInt16(PB_STRING_MAX))))
    }

    /// The trimming arguments: `MAXLEN ~ N`, `MINID ~ MS` (MS written into the scratch), or none.
    private func putTrim(_ n: inout Int) {
        if hasMaxLength {
            put(&n, maxlenWord); put(&n, tilde); put(&n, maxlen)
        } else if let minID {
            let start = used
            appendDecimal(minID)
            put(&n, minidWord); put(&n, tilde); put(&n, text(from: start))
        }
    }

    private func id(_ epochMs: UInt64, _ seq: UInt64) -> Text {
        let start = used
        appendDecimal(epochMs)
        appendByte(UInt8(ascii: "-"))
        appendDecimal(seq)
        return text(from: start)
    }

    // MARK: Scratch writing

    @inline(__always) private func put(_ n: inout Int, _ t: Text) {
        argv[n] = t.0
        lengths[n] = t.1
        n += 1
    }

    private func text(from start: Int) -> Text {
        (UnsafeRawPointer(scratch + start).assumingMemoryBound(to: CChar.self), used - start)
    }

    @inline(__always) private func appendByte(_ b: UInt8) {
        scratch[used] = b
        used += 1
    }

    private func appendBytes(_ t: Text) {
        UnsafeMutableRawPointer(scratch + used).copyMemory(from: t.0, byteCount: t.1)
        used += t.1
    }

    private func appendDecimal(_ value: UInt64) {
        // Digits come out least significant first: write them, then reverse in place.
        var v = value
        let start = used
        repeat {
            appendByte(UInt8(ascii: "0") + UInt8(v % 10))
            v /= 10
        } while v > 0
        var i = start, j = used - 1
        while i < j { scratch.swapAt(i, j); i += 1; j -= 1 }
    }
}

extension UnsafeMutablePointer where Pointee == UInt8 {
    @inline(__always) fileprivate func swapAt(_ i: Int, _ j: Int) {
        let t = self[i]; self[i] = self[j]; self[j] = t
    }
}

/// The scratch buffer as a `JSONSink`: the schema writes values and the PUBLISH payload into it.
/// Capacity is checked by the caller (one event's text is far below `CommandEncoder.scratchSize`).
struct ScratchSink: JSONSink {
    let base: UnsafeMutablePointer<UInt8>
    var used: Int

    @inline(__always) mutating func write(_ byte: UInt8) {
        base[used] = byte
        used += 1
    }

    @inline(__always) mutating func write(_ bytes: UnsafeRawBufferPointer) {
        guard let src = bytes.baseAddress, bytes.count > 0 else { return }
        UnsafeMutableRawPointer(base + used).copyMemory(from: src, byteCount: bytes.count)
        used += bytes.count
    }
}
