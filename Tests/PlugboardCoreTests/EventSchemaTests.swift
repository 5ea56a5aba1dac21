import CPlugboard
import Foundation
import PlugboardCore
import Testing

@Suite("Event schema: one table for every form of an event")
struct EventSchemaTests {
    /// An event with every field set, to `big` values or to small ones.
    static func withEvent<R>(big: Bool, _ body: (UnsafePointer<pb_event>) throws -> R) rethrows -> R {
        let buf = UnsafeMutableRawPointer.allocate(byteCount: EventLayout.maxSize, alignment: 64)
        defer { buf.deallocate() }
        // 64-bit fields up to Int64.max: what JSON readers (JSONSerialization among them) hold exactly.
        let big64 = UInt64(Int64.max)
        var w = EventWriter(at: buf, sequence: big ? big64 : 1)
        let e = w.event
        e.pointee.timestamp_ns = big ? big64 : 0
        w.action = big ? .unbind : .add
        w.insert(flags: big ? [.truncated, .resync, .coldplug, .fromTable] : [.coldplug])
        e.pointee.kernel_seqnum = big ? big64 : 0
        e.pointee.busnum = big ? .max : 1
        e.pointee.devnum = big ? .max : 2
        e.pointee.vendor_id = big ? 0xffff : 0x0781
        e.pointee.product_id = big ? 0xfedc : 0x0001
        e.pointee.bcd_device = big ? 0x9999 : 0
        e.pointee.device_class = big ? 0xff : 0
        e.pointee.device_subclass = big ? 0xfe : 0x02
        e.pointee.device_protocol = big ? 0xfd : 0x01
        e.pointee.speed_kbps = big ? .max : 1500
        e.pointee.num_interfaces = big ? 255 : 1
        w.appendInterface(class: 8, subclass: 6, protocol: 0x50)
        if big { for i in 0..<31 { w.appendInterface(class: 0xff, subclass: UInt8(i), protocol: 0x0a) } }
        w.setString(.syspath, "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1")
        w.setString(.devnode, "/dev/bus/usb/001/002")
        w.setString(.serial, big ? "quote \" backslash \\ tab \t nl \n bell \u{07} ünï 😀" : "")
        w.setString(.manufacturer, "Acme, Inc.")
        w.setString(.product, big ? String(repeating: "p", count: 255) : "x")
        w.setString(.driver, "usb")
        return try body(UnsafePointer(e))
    }

    @Test("the table lists each field once, in EventField order, with distinct names and aliases")
    func tableIsConsistent() {
        #expect(EventSchema.entries.map(\.field) == EventField.allCases)
        let names = EventSchema.entries.flatMap(\.acceptedNames)
        #expect(Set(names).count == names.count)
        #expect(EventSchema.entries.map(\.name) == [
            "sequence", "timestamp_ns", "action", "flags", "seqnum", "busnum", "devnum", "vendor_id", "product_id",
            "bcd_device", "device_class", "device_subclass", "device_protocol", "speed_kbps", "num_interfaces",
            "interfaces", "syspath", "devnode", "serial", "manufacturer", "product", "driver",
        ])
    }

    @Test("every field round-trips through the JSON form (monitor, replay, PUBLISH, tail --json)", arguments: [false, true])
    func jsonRoundTrip(big: Bool) throws {
        try Self.withEvent(big: big) { e in
            var w = JSONWriter()
            EventSchema.writeJSON(e, into: &w)
            let object = try #require(JSONSerialization.jsonObject(with: Data(w.text.utf8)) as? [String: Any])
            #expect(object.count == EventSchema.entries.count)
            for entry in EventSchema.entries {
                let v = try #require(object[entry.name], "\(entry.name) missing")
                #expect(try entry.parse(json: v) == entry.value(in: e), "\(entry.name)")
            }
            #expect(try EventSchema.record(json: object) == EventRecord(event: e))
        }
    }

    @Test("every field round-trips through the stream-entry text form (XADD fields, tail)", arguments: [false, true])
    func textRoundTrip(big: Bool) throws {
        try Self.withEvent(big: big) { e in
            for entry in EventSchema.entries {
                #expect(try entry.parse(text: entry.text(of: e)) == entry.value(in: e), "\(entry.name): \(entry.text(of: e))")
                // Under an older name too.
                for alias in entry.aliases {
                    let r = try EventSchema.record(text: [(alias, entry.text(of: e))])
                    #expect(r[entry.field] == entry.value(in: e), "\(alias)")
                }
            }
            let pairs = EventSchema.entries.map { (name: $0.name, value: $0.text(of: e)) }
            #expect(try EventSchema.record(text: pairs) == EventRecord(event: e))
        }
    }

    @Test("a record read from an event writes the same event back", arguments: [false, true])
    func writeBack(big: Bool) {
        Self.withEvent(big: big) { e in
            let record = EventRecord(event: e)
            let buf = UnsafeMutableRawPointer.allocate(byteCount: EventLayout.maxSize, alignment: 64)
            defer { buf.deallocate() }
            var w = EventWriter(at: buf, sequence: 0)
            record.write(into: &w, hostFields: true)
            #expect(EventRecord(event: UnsafePointer(w.event)) == record)
            #expect(EventJSON.encode(UnsafePointer(w.event)) == EventJSON.encode(e))
        }
    }

    @Test("value formats: hex ids of fixed width, flags and interfaces as lists, in every form")
    func formats() {
        Self.withEvent(big: false) { e in
            let text = Dictionary(uniqueKeysWithValues: EventSchema.entries.map { ($0.name, $0.text(of: e)) })
            #expect(text["vendor_id"] == "0781" && text["product_id"] == "0001" && text["bcd_device"] == "0000")
            #expect(text["device_subclass"] == "02" && text["flags"] == "coldplug" && text["interfaces"] == "080650")
            let json = EventJSON.encode(e)
            #expect(json.contains(#""vendor_id":"0781","product_id":"0001","bcd_device":"0000""#))
            #expect(json.contains(#""flags":["coldplug"]"#) && json.contains(#""interfaces":["080650"]"#))
            #expect(json.contains(#""devnode":"/dev/bus/usb/001/002""#), "slashes are not escaped")
        }
    }

    @Test("older stream values still parse: flags as decimal bits, interfaces as cc:ss:pp")
    func legacyTextValues() throws {
        let r = try EventSchema.record(text: [("flags", "12"), ("ifaces", "03:01:02,08:06:50"), ("vid", "1d6b")])
        #expect(r[.flags] == .number(12))
        #expect(r[.interfaces] == .interfaces([0x030102, 0x080650]))
        #expect(r[.vendorID] == .number(0x1d6b))
    }

    @Test("values that do not match the format are refused with the field and a fix", arguments: [
        ("vendor_id", "12345"), ("vendor_id", "xyz"), ("busnum", "70000"), ("action", "plug"), ("flags", "sticky"),
        ("interfaces", "0806"), ("sequence", "-1"),
    ])
    func badTextValues(name: String, value: String) {
        #expect { try EventSchema.record(text: [(name, value)]) } throws: { e in
            "\(e)".hasPrefix(name + ": expected") && "\(e)".contains("fix:")
        }
    }
}

@Suite("JSON writer")
struct JSONWriterTests {
    @Test("strings: quotes, backslashes and control characters escaped; slashes and non-ASCII not")
    func escaping() throws {
        let s = "a\"b\\c/d\n\r\t\u{01}é😀"
        let quoted = Text.jsonQuoted(s)
        #expect(quoted == #""a\"b\\c/d\n\r\t\u0001é😀""#)
        let back = try JSONSerialization.jsonObject(with: Data("[\(quoted)]".utf8)) as? [String]
        #expect(back == [s])
    }

    @Test("bytes that are not UTF-8 become U+FFFD as String(decoding:) makes them, so the output stays valid JSON",
          arguments: [[0x61, 0xff, 0x62], [0xe2, 0x82], [0xe2, 0x82, 0x41], [0xf0, 0x9f, 0x98], [0xed, 0xa0, 0x80], [0xc0, 0xaf]] as [[UInt8]])
    func invalidUTF8(bytes: [UInt8]) throws {
        var w = JSONWriter()
        bytes.withUnsafeBytes { w.string(utf8: $0) }
        #expect(w.text == Text.jsonQuoted(String(decoding: bytes, as: UTF8.self)))
        _ = try JSONSerialization.jsonObject(with: Data("[\(w.text)]".utf8))
    }

    @Test("objects, arrays and numbers, compact and indented, parse back")
    func structure() throws {
        for indent in [0, 2] {
            var w = JSONWriter(indent: indent)
            w.beginObject()
            w.key("a"); w.number(UInt64(Int64.max))
            w.key("b"); w.beginArray(); w.number(-5); w.number(0.25); w.bool(true); w.null(); w.beginObject(); w.endObject(); w.endArray()
            w.key("c"); w.hexString(0x2a, digits: 4)
            w.key("d"); w.beginArray(); w.endArray()
            w.endObject()
            let o = try #require(JSONSerialization.jsonObject(with: Data(w.text.utf8)) as? [String: Any])
            #expect(o["a"] as? Int == Int.max)
            #expect((o["b"] as? [Any])?.count == 5 && o["c"] as? String == "002a" && (o["d"] as? [Any])?.isEmpty == true)
            if indent == 0 { #expect(w.text == #"{"a":9223372036854775807,"b":[-5,0.25,true,null,{}],"c":"002a","d":[]}"#) }
        }
    }
}
