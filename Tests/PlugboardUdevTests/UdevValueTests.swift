import Foundation
import Testing

@testable import PlugboardUdev

/// The value parsers, on the byte level (no umockdev needed).
struct UdevValueTests {
    func parse<T>(_ s: String, _ f: (UnsafePointer<CChar>?) -> T?) -> T? { s.withCString { f($0) } }

    @Test func hexIdsAcceptOneToFourDigitsOfEitherCaseAndRejectEverythingElse() {
        #expect(parse("046d", UdevValue.hex16) == 0x046d)
        #expect(parse("C52B", UdevValue.hex16) == 0xc52b)
        #expect(parse("1", UdevValue.hex16) == 1)
        #expect(parse(" 046d\n", UdevValue.hex16) == 0x046d)
        for bad in ["", "12345", "0x12", "zz!!", "-1", "12 34", "1.0"] { #expect(parse(bad, UdevValue.hex16) == nil, "\(bad)") }
        #expect(UdevValue.hex16(nil) == nil)
        #expect(parse("ff", UdevValue.hex8) == 0xff)
        #expect(parse("100", UdevValue.hex8) == nil)
    }

    @Test func interfaceDescriptorsAreReadLikeUdevAndCutInputNeverTraps() {
        func triples(_ hex: String) -> [String] {
            var bytes: [UInt8] = []
            var i = hex.startIndex
            while i < hex.endIndex {
                let j = hex.index(i, offsetBy: 2)
                bytes.append(UInt8(hex[i..<j], radix: 16)!)
                i = j
            }
            var out: [String] = []
            bytes.withUnsafeBytes { raw in
                UdevValue.forEachInterfaceDescriptor(raw) { c, s, p in out.append(String(format: "%02x%02x%02x", c, s, p)) }
            }
            return out
        }
        // The Lenovo 17ef:1005 hub of Fixtures/usbkbd.umockdev: one interface, two alternate settings.
        let hub = "1201000209000240EF17051001000000000109022900010100E0010904000001090001000705810301000C"
            + "0904000101090002000705810301000C"
        #expect(triples(hub) == ["090001", "090002"])
        // Cut anywhere, or with a zero length, it stops without trapping.
        for n in stride(from: 0, through: hub.count, by: 2) { _ = triples(String(hub.prefix(n))) }
        #expect(triples("00040000") == [])
        #expect(triples(String(hub.prefix(hub.count - 16))) == ["090001"], "the second interface descriptor cut short")
    }

    @Test func decimalsRejectOverflowInsteadOfTrapping() {
        #expect(parse("001", { UdevValue.decimal($0, max: 0xffff) }) == 1)
        #expect(parse(" 1", { UdevValue.decimal($0, max: 255) }) == 1)
        #expect(parse("65536", { UdevValue.decimal($0, max: 0xffff) }) == nil)
        #expect(parse("99999999999999999999999999", { UdevValue.decimal($0, max: .max) }) == nil)
        #expect(parse("18446744073709551615", { UdevValue.decimal($0, max: .max) }) == .max)
        #expect(parse("18446744073709551616", { UdevValue.decimal($0, max: .max) }) == nil)
    }

    @Test func triplesNeedThreeSlashSeparatedNumbersInRange() {
        let hex = { (p: UnsafePointer<CChar>?) in UdevValue.triple(p, radix: 16, maxDigits: 4, max: 0xffff) }
        let r = parse("46d/c52b/1201", hex)
        #expect(r?.0 == 0x46d && r?.1 == 0xc52b && r?.2 == 0x1201)
        for bad in ["46d/c52b", "46d/c52b/1201/1", "/c52b/1", "nothex/xx/yy", "1//2", "1/2/"] { #expect(parse(bad, hex) == nil, "\(bad)") }
        let dec = { (p: UnsafePointer<CChar>?) in UdevValue.triple(p, radix: 10, maxDigits: 3, max: 255) }
        #expect(parse("8/6/80", dec).map { [$0.0, $0.1, $0.2] } == [8, 6, 80])
        #expect(parse("8/6/800", dec) == nil)
    }

    @Test func speedsAreMegabitsWithUpToThreeDecimalsAsKilobits() {
        #expect(parse("1.5", UdevValue.speedKbps) == 1500)
        #expect(parse("12", UdevValue.speedKbps) == 12_000)
        #expect(parse("480", UdevValue.speedKbps) == 480_000)
        #expect(parse("20000", UdevValue.speedKbps) == 20_000_000)
        for bad in ["", "fast", "1.", ".5", "1.2345", "-1", "99999999"] { #expect(parse(bad, UdevValue.speedKbps) == nil, "\(bad)") }
    }

    @Test func escapedUdevStringsDecodeAndCutAtTheBuffer() {
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 1)
        defer { buf.deallocate() }
        let (n, cut) = "SanDisk\\x20".withCString { UdevValue.decodeEscapes($0, into: buf) }
        #expect(n == 8 && !cut && Array(buf[0..<8]) == Array("SanDisk ".utf8))
        let (m, cut2) = "a\\xffb\\x2".withCString { UdevValue.decodeEscapes($0, into: buf) }
        #expect(Array(buf[0..<m]) == [0x61, 0xff, 0x62, 0x5c, 0x78, 0x32] && !cut2)  // a bad escape stays as it is
        let (k, cut3) = "0123456789".withCString { UdevValue.decodeEscapes($0, into: buf) }
        #expect(k == 8 && cut3)
    }
}
