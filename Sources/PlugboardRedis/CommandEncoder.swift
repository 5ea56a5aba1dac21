import CPlugboard

/// Builds the argv of one Redis command from an event or a plugin record, without allocating:
/// constant arguments live in an arena made once, numbers are formatted into a scratch buffer,
/// and string fields point straight into the (copied) event. The argv is valid until the next
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
    private let topicWord: Text
    private let dataWord: Text
    private let fieldNames: [Text]
    private let jsonKeys: [Text]   // `"name":` for the PUBLISH payload
    private let isNumber: [Bool]   // by EventField raw value: a JSON number, not a string
    private let hasMaxLength: Bool
    /// Values of the last encoded event, by EventField raw value (reused by the JSON payload).
    private var values: [Text]

    init(keys: StreamKeys, maxLength: Int?) {
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
        values = Array(repeating: empty, count: EventField.allCases.count)
        xadd = intern("XADD")
        publish = intern("PUBLISH")
        eventsKey = intern(keys.events)
        channel = intern(keys.channel)
        pluginPrefix = intern(keys.pluginPrefix)
        maxlenWord = intern("MAXLEN")
        tilde = intern("~")
        maxlen = intern(maxLength.map(String.init) ?? "")
        hasMaxLength = maxLength != nil
        topicWord = intern("topic")
        dataWord = intern("data")
        fieldNames = EventField.allCases.map { intern($0.name) }
        jsonKeys = EventField.allCases.map { intern("\"\($0.name)\":") }
        isNumber = EventField.allCases.map(\.isNumber)
    }

    deinit {
        argv.deallocate()
        lengths.deallocate()
        scratch.deallocate()
        arena.deallocate()
    }

    // MARK: Commands

    /// `XADD plugboard:{HOST}:events [MAXLEN ~ N] <epoch>-<seq> field value ...`
    /// - Returns: argc.
    func encodeXADD(_ e: UnsafePointer<pb_event>, epochMs: UInt64) -> Int32 {
        used = 0
        var n = 0
        put(&n, xadd); put(&n, eventsKey)
        if hasMaxLength { put(&n, maxlenWord); put(&n, tilde); put(&n, maxlen) }
        put(&n, id(epochMs, e.pointee.sequence))
        fillValues(e)
        for f in 0..<values.count {
            put(&n, fieldNames[f]); put(&n, values[f])
        }
        return Int32(n)
    }

    /// `PUBLISH <channel> <json>`, with the same fields as the XADD entry plus "id".
    /// Call after `encodeXADD` for the same event when both are sent (it reuses the values), or alone.
    func encodePUBLISH(_ e: UnsafePointer<pb_event>, epochMs: UInt64, valuesFresh: Bool) -> Int32 {
        if !valuesFresh { used = 0; fillValues(e) }
        let start = used
        appendByte(UInt8(ascii: "{"))
        appendRaw("\"id\":\"")
        let idText = id(epochMs, e.pointee.sequence)
        appendBytes(idText)
        appendByte(UInt8(ascii: "\""))
        for f in 0..<values.count {
            appendByte(UInt8(ascii: ","))
            appendBytes(jsonKeys[f])
            if isNumber[f] {
                appendBytes(values[f])
            } else {
                appendJSONString(values[f])
            }
        }
        appendByte(UInt8(ascii: "}"))
        var n = 0
        put(&n, publish); put(&n, channel)
        put(&n, (UnsafeRawPointer(scratch + start).assumingMemoryBound(to: CChar.self), used - start))
        return Int32(n)
    }

    /// `XADD plugboard:{HOST}:plugin:<name> [MAXLEN ~ N] <epoch>-<outseq> topic <topic> data <bytes>`
    func encodePluginXADD(_ r: PluginRecord, epochMs: UInt64) -> Int32 {
        used = 0
        var n = 0
        put(&n, xadd)
        let keyStart = used
        appendBytes(pluginPrefix)
        appendBytes(r.name)
        put(&n, (UnsafeRawPointer(scratch + keyStart).assumingMemoryBound(to: CChar.self), used - keyStart))
        if hasMaxLength { put(&n, maxlenWord); put(&n, tilde); put(&n, maxlen) }
        put(&n, id(epochMs, r.sequence))
        put(&n, topicWord); put(&n, r.topic)
        put(&n, dataWord); put(&n, r.data)
        return Int32(n)
    }

    // MARK: Fields

    private func fillValues(_ e: UnsafePointer<pb_event>) {
        let ev = e.pointee
        values[EventField.seq.rawValue] = decimal(ev.sequence)
        values[EventField.action.rawValue] = actionName(ev.action)
        values[EventField.flags.rawValue] = decimal(UInt64(ev.flags))
        values[EventField.tsNs.rawValue] = decimal(ev.timestamp_ns)
        values[EventField.kseq.rawValue] = decimal(ev.kernel_seqnum)
        values[EventField.bus.rawValue] = decimal(UInt64(ev.busnum))
        values[EventField.dev.rawValue] = decimal(UInt64(ev.devnum))
        values[EventField.vid.rawValue] = hex(UInt64(ev.vendor_id), digits: 4)
        values[EventField.pid.rawValue] = hex(UInt64(ev.product_id), digits: 4)
        values[EventField.bcd.rawValue] = hex(UInt64(ev.bcd_device), digits: 4)
        values[EventField.deviceClass.rawValue] = hex(UInt64(ev.device_class), digits: 2)
        values[EventField.deviceSubclass.rawValue] = hex(UInt64(ev.device_subclass), digits: 2)
        values[EventField.deviceProtocol.rawValue] = hex(UInt64(ev.device_protocol), digits: 2)
        values[EventField.numInterfaces.rawValue] = decimal(UInt64(ev.num_interfaces))
        values[EventField.interfaces.rawValue] = interfaces(e)
        values[EventField.speedKbps.rawValue] = decimal(UInt64(ev.speed_kbps))
        values[EventField.syspath.rawValue] = string(e, ev.syspath)
        values[EventField.devnode.rawValue] = string(e, ev.devnode)
        values[EventField.serial.rawValue] = string(e, ev.serial)
        values[EventField.manufacturer.rawValue] = string(e, ev.manufacturer)
        values[EventField.product.rawValue] = string(e, ev.product)
        values[EventField.driver.rawValue] = string(e, ev.driver)
    }

    /// A string of the event, bounds-checked like `pb_event_string`: absent or out of range is "".
    private func string(_ e: UnsafePointer<pb_event>, _ s: pb_str) -> Text {
        let total = min(e.pointee.total_size, UInt32(PB_EVENT_MAX_SIZE))
        guard s.offset != 0, UInt32(s.offset) + UInt32(s.length) < total else { return empty }
        let p = UnsafeRawPointer(e) + Int(s.offset)
        return (p.assumingMemoryBound(to: CChar.self), Int(min(s.length, UInt16(PB_STRING_MAX))))
    }

    /// "cc:ss:pp,cc:ss:pp" in hex, the first interfaces_len entries.
    private func interfaces(_ e: UnsafePointer<pb_event>) -> Text {
        let count = min(Int(e.pointee.interfaces_len), Int(PB_MAX_INTERFACES))
        let start = used
        withUnsafeBytes(of: e.pointee.interfaces) { raw in
            for i in 0..<count {
                if i > 0 { appendByte(UInt8(ascii: ",")) }
                appendHex(UInt64(raw[i * 3]), digits: 2); appendByte(UInt8(ascii: ":"))
                appendHex(UInt64(raw[i * 3 + 1]), digits: 2); appendByte(UInt8(ascii: ":"))
                appendHex(UInt64(raw[i * 3 + 2]), digits: 2)
            }
        }
        return text(from: start)
    }

    private func actionName(_ a: UInt16) -> Text {
        let p = pb_action_name(a)!
        return (p, strlenSafe(p))
    }

    private func id(_ epochMs: UInt64, _ seq: UInt64) -> Text {
        let start = used
        appendDecimal(epochMs)
        appendByte(UInt8(ascii: "-"))
        appendDecimal(seq)
        return text(from: start)
    }

    private func decimal(_ v: UInt64) -> Text {
        let start = used
        appendDecimal(v)
        return text(from: start)
    }

    private func hex(_ v: UInt64, digits: Int) -> Text {
        let start = used
        appendHex(v, digits: digits)
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

    private func appendRaw(_ s: StaticString) {
        s.withUTF8Buffer { for b in $0 { appendByte(b) } }
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

    private func appendHex(_ value: UInt64, digits: Int) {
        let hexDigits: StaticString = "0123456789abcdef"
        hexDigits.withUTF8Buffer { table in
            for k in stride(from: digits - 1, through: 0, by: -1) {
                appendByte(table[Int((value >> (UInt64(k) * 4)) & 0xf)])
            }
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped; other bytes as they are.
    private func appendJSONString(_ t: Text) {
        appendByte(UInt8(ascii: "\""))
        let raw = UnsafeRawBufferPointer(start: t.0, count: t.1)
        for b in raw {
            switch b {
            case UInt8(ascii: "\""): appendByte(UInt8(ascii: "\\")); appendByte(b)
            case UInt8(ascii: "\\"): appendByte(UInt8(ascii: "\\")); appendByte(b)
            case 0..<0x20:
                appendRaw("\\u00")
                appendHex(UInt64(b), digits: 2)
            default: appendByte(b)
            }
        }
        appendByte(UInt8(ascii: "\""))
    }

    private func strlenSafe(_ p: UnsafePointer<CChar>) -> Int {
        var n = 0
        while p[n] != 0 { n += 1 }
        return n
    }
}

extension UnsafeMutablePointer where Pointee == UInt8 {
    @inline(__always) fileprivate func swapAt(_ i: Int, _ j: Int) {
        let t = self[i]; self[i] = self[j]; self[j] = t
    }
}
