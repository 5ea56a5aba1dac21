/// Where a `JSONWriter` puts its bytes: a growable `[UInt8]`, or a caller's fixed buffer on a hot path.
public protocol JSONSink {
    mutating func write(_ byte: UInt8)
    mutating func write(_ bytes: UnsafeRawBufferPointer)
}

extension JSONSink {
    /// Appends `v` in decimal.
    @inlinable
    public mutating func writeDecimal(_ v: UInt64) {
        // At most 20 digits: build them on the stack, least significant last.
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { buf in
            var v = v
            var i = 24
            repeat {
                i -= 1
                buf[i] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
            } while v > 0
            write(UnsafeRawBufferPointer(rebasing: buf[i..<24]))
        }
    }

    /// Appends the low `digits` hex digits of `v`, lowercase.
    @inlinable
    public mutating func writeHex(_ v: UInt64, digits: Int) {
        for k in stride(from: digits - 1, through: 0, by: -1) {
            let d = UInt8((v >> (UInt64(k) * 4)) & 0xf)
            write(d < 10 ? UInt8(ascii: "0") + d : UInt8(ascii: "a") + d - 10)
        }
    }
}

extension Array: JSONSink where Element == UInt8 {
    @inlinable public mutating func write(_ byte: UInt8) { append(byte) }
    @inlinable public mutating func write(_ bytes: UnsafeRawBufferPointer) { append(contentsOf: bytes) }
}

/// The one JSON writer of Plugboard: `monitor --json`, the Redis PUBLISH payload, `tail --json`,
/// the HTTP endpoints, `config check --json` and the manifest commands all write through it.
///
/// It writes straight into its sink and keeps its nesting state in one word, so with a sink
/// over a fixed buffer it never allocates (the PUBLISH payload is written per event).
/// Strings are escaped as RFC 8259 requires (quotes, backslashes, control characters) and
/// nothing more: slashes and non-ASCII characters pass through. Bytes that are not UTF-8 become
/// U+FFFD, one per maximal invalid subpart, as `String(decoding:as:)` does, so the output is
/// always valid JSON.
///
///     var w = JSONWriter()
///     w.beginObject(); w.key("vendor_id"); w.string("046d"); w.endObject()
///     w.text  // {"vendor_id":"046d"}
@frozen
public struct JSONWriter<Sink: JSONSink> {
    public var sink: Sink
    /// Bit `depth` set: the container at that depth already has a member (the next one needs a comma).
    @usableFromInline var hasMember: UInt64 = 0
    @usableFromInline var depth = 0
    /// A key was just written: the next value follows its colon, without a comma.
    @usableFromInline var afterKey = false
    /// Pretty-printing: indent nested members by this many spaces (0 = compact, one line).
    @usableFromInline let indent: Int

    @inlinable
    public init(sink: Sink, indent: Int = 0) {
        self.sink = sink
        self.indent = indent
    }

    // MARK: Structure

    @inlinable public mutating func beginObject() { open(UInt8(ascii: "{")) }
    @inlinable public mutating func endObject() { close(UInt8(ascii: "}")) }
    @inlinable public mutating func beginArray() { open(UInt8(ascii: "[")) }
    @inlinable public mutating func endArray() { close(UInt8(ascii: "]")) }

    /// The key of the next object member, given as UTF-8 bytes (escaped like a string).
    @inlinable
    public mutating func key(utf8 bytes: UnsafeRawBufferPointer) {
        separate()
        quoted(bytes)
        sink.write(UInt8(ascii: ":"))
        if indent > 0 { sink.write(UInt8(ascii: " ")) }
        afterKey = true
    }

    /// The key of the next object member, already quoted and escaped, with its colon: `"name":`
    /// (a caller that writes the same keys for every event prepares them once).
    @inlinable
    public mutating func key(prepared bytes: UnsafeRawBufferPointer) {
        separate()
        sink.write(bytes)
        if indent > 0 { sink.write(UInt8(ascii: " ")) }
        afterKey = true
    }

    /// The key of the next object member.
    @inlinable
    public mutating func key(_ name: String) {
        var name = name
        name.withUTF8 { key(utf8: UnsafeRawBufferPointer($0)) }
    }

    // MARK: Values

    @inlinable
    public mutating func string(utf8 bytes: UnsafeRawBufferPointer) {
        separate()
        quoted(bytes)
    }

    @inlinable
    public mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { string(utf8: UnsafeRawBufferPointer($0)) }
    }

    /// `v` as a quoted string of exactly `digits` lowercase hex digits ("046d").
    @inlinable
    public mutating func hexString(_ v: UInt64, digits: Int) {
        separate()
        sink.write(UInt8(ascii: "\""))
        hexDigits(v, digits: digits)
        sink.write(UInt8(ascii: "\""))
    }

    @inlinable
    public mutating func number(_ v: UInt64) {
        separate()
        decimal(v)
    }

    @inlinable
    public mutating func number(_ v: Int) {
        separate()
        if v < 0 { sink.write(UInt8(ascii: "-")) }
        decimal(UInt64(v.magnitude))
    }

    /// A finite double in its shortest round-tripping form (Swift's `description`); allocates.
    public mutating func number(_ v: Double) {
        guard v.isFinite else { return null() }
        separate()
        var text = v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : "\(v)"
        text.withUTF8 { sink.write(UnsafeRawBufferPointer($0)) }
    }

    /// A value the caller writes itself, straight into the sink (it must be valid JSON): for a
    /// hot path that formats a value in parts without building it first.
    @inlinable
    public mutating func value(_ write: (inout Sink) -> Void) {
        separate()
        write(&sink)
    }

    @inlinable
    public mutating func bool(_ v: Bool) {
        separate()
        raw(v ? "true" : "false")
    }

    @inlinable
    public mutating func null() {
        separate()
        raw("null")
    }

    // MARK: Building blocks (no separators)

    /// Appends `v` in decimal, no separator.
    @inlinable public mutating func decimal(_ v: UInt64) { sink.writeDecimal(v) }

    /// Appends the low `digits` hex digits of `v`, lowercase, no separator.
    @inlinable public mutating func hexDigits(_ v: UInt64, digits: Int) { sink.writeHex(v, digits: digits) }

    @inlinable
    mutating func raw(_ s: StaticString) {
        sink.write(UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    @inlinable
    mutating func open(_ bracket: UInt8) {
        separate()
        sink.write(bracket)
        depth += 1
        precondition(depth < 64, "JSON nested deeper than 63 levels")
        hasMember &= ~(1 << UInt64(depth))
    }

    @inlinable
    mutating func close(_ bracket: UInt8) {
        let hadMembers = hasMember & (1 << UInt64(depth)) != 0
        depth -= 1
        if indent > 0 && hadMembers { newline() }
        sink.write(bracket)
    }

    /// Before a member: a comma when it is not the first, and the indentation.
    @inlinable
    mutating func separate() {
        if afterKey {
            afterKey = false
            return
        }
        guard depth > 0 else { return }
        let bit: UInt64 = 1 << UInt64(depth)
        if hasMember & bit != 0 { sink.write(UInt8(ascii: ",")) }
        hasMember |= bit
        if indent > 0 { newline() }
    }

    @inlinable
    mutating func newline() {
        sink.write(UInt8(ascii: "\n"))
        for _ in 0..<(depth * indent) { sink.write(UInt8(ascii: " ")) }
    }

    /// `bytes` as a JSON string literal: see the type's summary for the escaping rules.
    @inlinable
    mutating func quoted(_ bytes: UnsafeRawBufferPointer) {
        sink.write(UInt8(ascii: "\""))
        var i = 0
        let n = bytes.count
        while i < n {
            let b = bytes[i]
            if b < 0x80 {
                switch b {
                case UInt8(ascii: "\""): sink.write(UInt8(ascii: "\\")); sink.write(b)
                case UInt8(ascii: "\\"): sink.write(UInt8(ascii: "\\")); sink.write(b)
                case UInt8(ascii: "\n"): sink.write(UInt8(ascii: "\\")); sink.write(UInt8(ascii: "n"))
                case UInt8(ascii: "\r"): sink.write(UInt8(ascii: "\\")); sink.write(UInt8(ascii: "r"))
                case UInt8(ascii: "\t"): sink.write(UInt8(ascii: "\\")); sink.write(UInt8(ascii: "t"))
                case 0..<0x20:
                    raw("\\u00")
                    hexDigits(UInt64(b), digits: 2)
                default: sink.write(b)
                }
                i += 1
                continue
            }
            let valid = JSONText.validUTF8Prefix(bytes, at: i)
            if valid.complete {
                sink.write(UnsafeRawBufferPointer(rebasing: bytes[i..<(i + valid.length)]))
            } else {
                sink.write(0xEF); sink.write(0xBF); sink.write(0xBD)  // U+FFFD
            }
            i += valid.length
        }
        sink.write(UInt8(ascii: "\""))
    }
}

extension JSONWriter where Sink == [UInt8] {
    /// A writer into a fresh byte array. `indent` > 0 pretty-prints.
    @inlinable
    public init(indent: Int = 0) { self.init(sink: [], indent: indent) }

    /// What was written so far.
    public var text: String { String(decoding: sink, as: UTF8.self) }
}

/// UTF-8 checks for `JSONWriter`.
public enum JSONText {
    /// At `i` (a byte >= 0x80): the length of the UTF-8 sequence there and whether it is complete
    /// and valid; when not, `length` is its maximal invalid subpart (at least 1 byte), which is
    /// replaced by one U+FFFD.
    @inlinable
    public static func validUTF8Prefix(_ bytes: UnsafeRawBufferPointer, at i: Int) -> (length: Int, complete: Bool) {
        let b0 = bytes[i]
        let need: Int
        var lo: UInt8 = 0x80, hi: UInt8 = 0xBF  // allowed range of the second byte
        switch b0 {
        case 0xC2...0xDF: need = 1
        case 0xE0: need = 2; lo = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: need = 2
        case 0xED: need = 2; hi = 0x9F
        case 0xF0: need = 3; lo = 0x90
        case 0xF1...0xF3: need = 3
        case 0xF4: need = 3; hi = 0x8F
        default: return (1, false)
        }
        var k = 1
        while k <= need {
            guard i + k < bytes.count else { return (k, false) }
            let b = bytes[i + k]
            let (l, h) = k == 1 ? (lo, hi) : (UInt8(0x80), UInt8(0xBF))
            guard b >= l && b <= h else { return (k, false) }
            k += 1
        }
        return (need + 1, true)
    }
}
