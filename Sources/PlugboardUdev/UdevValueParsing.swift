import PlugboardCore

/// Errors of the udev source, as `PlugboardError`s with a `udev.` code.
enum UdevError {
    static func make(_ code: String, field: String? = nil, reason: String, fix: String? = nil) -> PlugboardError {
        PlugboardError(code: code, file: nil, field: field, reason: reason, fix: fix)
    }
}

/// Parsers for the values udev and sysfs hand out, straight from C strings.
///
/// They never allocate and never trap: a value that is missing, not a number, or out of
/// range returns nil (the caller then tries the next source of the field, or leaves it 0
/// and counts the bad value). Leading and trailing blanks are skipped, as sysfs pads some
/// attributes (`bNumInterfaces` is " 1").
enum UdevValue {
    @inline(__always)
    static func hexDigit(_ c: UInt8) -> UInt32? {
        switch c {
        case 0x30...0x39: UInt32(c - 0x30)
        case 0x61...0x66: UInt32(c - 0x61 + 10)
        case 0x41...0x46: UInt32(c - 0x41 + 10)
        default: nil
        }
    }

    @inline(__always)
    static func isBlank(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0a }

    /// A number of 1 to `maxDigits` digits in `radix` (10 or 16) at `p`, up to the NUL or `stop`;
    /// nil unless the whole span (blanks aside) is digits and the value is at most `max`.
    /// - Returns: the value and the position after the number (at `stop` or the NUL).
    static func number(_ p: UnsafePointer<CChar>, radix: UInt32, maxDigits: Int, max: UInt64,
                       stop: UInt8 = 0) -> (UInt64, UnsafePointer<CChar>)? {
        var q = UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self)
        while isBlank(q.pointee) { q += 1 }
        var v: UInt64 = 0
        var digits = 0
        while true {
            let c = q.pointee
            guard let d = hexDigit(c), d < radix else { break }
            digits += 1
            if digits > maxDigits { return nil }
            // Absurdly long numbers must not trap: overflow is just a bad value.
            let (m, o1) = v.multipliedReportingOverflow(by: UInt64(radix))
            let (a, o2) = m.addingReportingOverflow(UInt64(d))
            if o1 || o2 { return nil }
            v = a
            q += 1
        }
        guard digits > 0, v <= max else { return nil }
        while isBlank(q.pointee) { q += 1 }
        guard q.pointee == 0 || (stop != 0 && q.pointee == stop) else { return nil }
        return (v, UnsafeRawPointer(q).assumingMemoryBound(to: CChar.self))
    }

    /// A hexadecimal id such as `046d` (1 to 4 digits).
    static func hex16(_ p: UnsafePointer<CChar>?) -> UInt16? {
        guard let p, let (v, _) = number(p, radix: 16, maxDigits: 4, max: 0xffff) else { return nil }
        return UInt16(v)
    }

    /// A hexadecimal byte such as `09` (1 or 2 digits).
    static func hex8(_ p: UnsafePointer<CChar>?) -> UInt8? {
        guard let p, let (v, _) = number(p, radix: 16, maxDigits: 2, max: 0xff) else { return nil }
        return UInt8(v)
    }

    /// A decimal number no larger than `max` (BUSNUM "001", DEVNUM, bNumInterfaces " 1").
    static func decimal(_ p: UnsafePointer<CChar>?, max: UInt64) -> UInt64? {
        guard let p, let (v, _) = number(p, radix: 10, maxDigits: 20, max: max) else { return nil }
        return v
    }

    /// Three numbers separated by `/`: PRODUCT "46d/c52b/1201" (hex), TYPE "9/0/3" and
    /// INTERFACE "8/6/80" (decimal). Each must fit in `max`.
    static func triple(_ p: UnsafePointer<CChar>?, radix: UInt32, maxDigits: Int, max: UInt64)
        -> (UInt64, UInt64, UInt64)?
    {
        let slash = UInt8(ascii: "/")
        guard let p, let (a, r1) = number(p, radix: radix, maxDigits: maxDigits, max: max, stop: slash),
              r1.pointee == CChar(bitPattern: slash),
              let (b, r2) = number(r1 + 1, radix: radix, maxDigits: maxDigits, max: max, stop: slash),
              r2.pointee == CChar(bitPattern: slash),
              let (c, _) = number(r2 + 1, radix: radix, maxDigits: maxDigits, max: max)
        else { return nil }
        return (a, b, c)
    }

    /// Calls `body` with (bInterfaceClass, bInterfaceSubClass, bInterfaceProtocol) of each
    /// interface descriptor (type 4) in `bytes`, a chain of USB descriptors as in sysfs
    /// `descriptors`, in order. Stops at a descriptor shorter than 2 bytes or cut off by the end.
    static func forEachInterfaceDescriptor(_ bytes: UnsafeRawBufferPointer, _ body: (UInt8, UInt8, UInt8) -> Void) {
        var pos = 0
        while pos + 2 <= bytes.count {
            let length = Int(bytes[pos])
            guard length >= 2, pos + length <= bytes.count else { return }
            if bytes[pos + 1] == 4, length >= 9 { body(bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]) }
            pos += length
        }
    }

    /// The sysfs `speed` attribute (Mbit/s: "1.5", "12", "480", "5000") as kbit/s.
    static func speedKbps(_ p: UnsafePointer<CChar>?) -> UInt32? {
        guard let p else { return nil }
        var q = UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self)
        while isBlank(q.pointee) { q += 1 }
        var whole: UInt64 = 0, digits = 0
        while let d = hexDigit(q.pointee), d < 10 {
            digits += 1
            if digits > 7 { return nil }  // > 9,999,999 Mbit/s is not a USB speed
            whole = whole * 10 + UInt64(d)
            q += 1
        }
        guard digits > 0 else { return nil }
        var frac: UInt64 = 0, scale: UInt64 = 1000
        if q.pointee == UInt8(ascii: ".") {
            q += 1
            var fd = 0
            while let d = hexDigit(q.pointee), d < 10 {
                fd += 1
                if fd > 3 { return nil }
                scale /= 10
                frac += UInt64(d) * scale
                q += 1
            }
            guard fd > 0 else { return nil }
        }
        while isBlank(q.pointee) { q += 1 }
        guard q.pointee == 0 else { return nil }
        let kbps = whole * 1000 + frac
        return kbps <= UInt64(UInt32.max) ? UInt32(kbps) : nil
    }

    /// Decodes udev's `\xNN` escapes (ID_VENDOR_ENC, ID_MODEL_ENC) from `p` into `out`.
    /// - Returns: the number of bytes written (at most `out.count`; the rest is cut).
    static func decodeEscapes(_ p: UnsafePointer<CChar>, into out: UnsafeMutableRawBufferPointer) -> (count: Int, cut: Bool) {
        var q = UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self)
        var n = 0
        while q.pointee != 0 {
            var byte = q.pointee
            var step = 1
            if byte == UInt8(ascii: "\\"), q[1] == UInt8(ascii: "x"), let h = hexDigit(q[2]), let l = hexDigit(q[3]) {
                byte = UInt8(h << 4 | l)
                step = 4
            }
            guard n < out.count else { return (n, true) }
            out[n] = byte
            n += 1
            q += step
        }
        return (n, false)
    }
}
