import Foundation
import PlugboardManifest
import Testing

@Suite("Binary manifest (.pbm) format")
struct PBMFormatTests {
    @Test("a manifest with every section survives encode then decode unchanged")
    func roundTrip() throws {
        let m = TestSupport.richManifest
        let bytes = PBMWriter.encode(m)
        #expect(try PBMReader.decode(bytes, file: "rich.pbm") == m)
        #expect(PBMWriter.encode(m) == bytes, "encoding is deterministic")
    }

    @Test("header fields sit at the offsets docs/manifest.md gives")
    func headerLayout() throws {
        let bytes = PBMWriter.encode(TestSupport.richManifest)
        #expect(Array(bytes[0..<4]) == Array("PBMF".utf8))
        #expect(le16(bytes, 4) == 1 && le16(bytes, 6) == 0)
        #expect(Int(le32(bytes, 8)) == bytes.count)
        #expect(le32(bytes, 12) == bytes.withUnsafeBytes { CRC32C.checksum($0, skippingFieldAt: 12) })
        #expect(le32(bytes, 20) == 32)
        let sections = Int(le32(bytes, 16))
        // Sections: kind, offset, length, flags at 32 + 16 * i; payloads 8-aligned and inside the file.
        var kinds: [UInt32] = []
        for i in 0..<sections {
            let e = 32 + 16 * i
            kinds.append(le32(bytes, e))
            #expect(le32(bytes, e + 4) % 8 == 0)
            #expect(Int(le32(bytes, e + 4) + le32(bytes, e + 8)) <= bytes.count)
        }
        #expect(kinds == [1, 2, 3, 4, 5, 6, 7, 8, 9])
    }

    @Test("CRC-32C matches the standard check value")
    func crcCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([]) == 0)
    }

    @Test("SHA-256 matches the FIPS 180-2 test vectors")
    func sha256Vectors() {
        #expect(SHA256.hash(Array("abc".utf8)).hexString == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hash([]).hexString == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)).hexString
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        var s = SHA256()
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 { s.update(chunk) }
        #expect(s.finalize().hexString == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test("SHA-256 of a real plugin .so equals sha256sum's")
    func sha256MatchesSha256sum() throws {
        let lib = try TestSupport.builtLibrary("usb-logger")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        p.arguments = [lib]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        p.waitUntilExit()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(try SHA256.hash(fileAt: lib).hexString == String(out.prefix(64)))
    }

    // MARK: bad binary input: each names the field and says what to do

    struct BadCase: CustomTestStringConvertible, Sendable {
        var name: String
        var expect: String
        var field: String
        var mutate: @Sendable ([UInt8]) -> [UInt8]
        /// Recompute length and CRC after mutating (to reach checks past the checksum).
        var fixChecksum = true
        var testDescription: String { name }
    }

    static let badCases: [BadCase] = [
        BadCase(name: "empty file", expect: "too short for a manifest", field: "header.magic", mutate: { _ in [] }, fixChecksum: false),
        BadCase(name: "foreign file", expect: "does not start with \"PBMF\"", field: "header.magic",
                mutate: { _ in Array("[plugin]\nname = \"x\"\n".utf8) }, fixChecksum: false),
        BadCase(name: "truncated header", expect: "shorter than the 32-byte header", field: "header", mutate: { Array($0.prefix(20)) }, fixChecksum: false),
        BadCase(name: "truncated body", expect: "truncated or appended to", field: "header.length", mutate: { Array($0.dropLast(9)) }, fixChecksum: false),
        BadCase(name: "newer format major", expect: "format version 2.0 is not supported", field: "header.format_version",
                mutate: { var b = $0; b[4] = 2; return b }),
        BadCase(name: "flipped byte", expect: "CRC-32C mismatch", field: "header.checksum",
                mutate: { var b = $0; b[b.count - 3] ^= 0x40; return b }, fixChecksum: false),
        BadCase(name: "section count too large", expect: "do not fit", field: "header.section_count",
                mutate: { var b = $0; put32(&b, 16, 60); return b }),
        BadCase(name: "section outside the file", expect: "lie outside the file", field: "section[2].offset",
                mutate: { var b = $0; put32(&b, 32 + 16 + 8, 100_000); return b }),
        BadCase(name: "overlapping sections", expect: "overlaps", field: "section[3].offset",
                mutate: { var b = $0; put32(&b, 32 + 32 + 4, le32(b, 32 + 16 + 4)); return b }),
        BadCase(name: "unknown required section", expect: "unknown required section kind 99", field: "section[8].kind",
                mutate: { var b = $0; put32(&b, 32 + 16 * 7, 99); return b }),
        BadCase(name: "duplicate section", expect: "a second plugin section", field: "section[3].kind",
                mutate: { var b = $0; put32(&b, 32 + 32, 2); return b }),
        BadCase(name: "worker section wrong size", expect: "the worker section is 12 bytes (expected 16)", field: "section[4].length",
                mutate: { var b = $0; put32(&b, 32 + 48 + 8, 12); return b }),
        BadCase(name: "string reference out of bounds", expect: "lies outside", field: "plugin.name",
                mutate: { var b = $0; let plugin = Int(le32(b, 32 + 16 + 4)); put32(&b, plugin, 60_000); return b }),
        BadCase(name: "batch zero", expect: "0 is outside 1...4096", field: "worker.batch",
                mutate: { var b = $0; let w = Int(le32(b, 32 + 48 + 4)); put32(&b, w, 0); return b }),
        BadCase(name: "unknown match field bits", expect: "unknown field bits", field: "match[1].fields",
                mutate: { var b = $0; let m = Int(le32(b, 32 + 64 + 4)); b[m + 1] = 0x80; return b }),
        BadCase(name: "ABI major 2", expect: "plugin ABI 2.0 is not supported", field: "plugin.abi",
                mutate: { var b = $0; let plugin = Int(le32(b, 32 + 16 + 4)); b[plugin + 40] = 2; return b }),
        BadCase(name: "unknown isolation code", expect: "unknown isolation code 7", field: "worker.isolation",
                mutate: { var b = $0; let w = Int(le32(b, 32 + 48 + 4)); b[w + 8] = 7; return b }),
        BadCase(name: "reversed product range", expect: "is empty", field: "match[4].product",
                mutate: { var b = $0; let m = Int(le32(b, 32 + 64 + 4)) + 3 * 24; b[m + 6] = 0xff; b[m + 7] = 0xff; return b }),
        BadCase(name: "required match section missing", expect: "the required match section is missing", field: "section.match",
                mutate: { var b = $0; put32(&b, 32 + 64, 0x7777); put32(&b, 32 + 64 + 12, 1); return b }),
        BadCase(name: "invalid UTF-8 in a string", expect: "not valid UTF-8", field: "plugin.description",
                mutate: { var b = $0
                    let strings = Int(le32(b, 32 + 4)), plugin = Int(le32(b, 32 + 16 + 4))
                    let off = Int(le32(b, plugin + 24)); b[strings + off] = 0xFF; return b }),
    ]

    @Test("malformed .pbm is rejected with the field and a fix", arguments: badCases)
    func rejected(_ c: BadCase) throws {
        var bytes = c.mutate(PBMWriter.encode(TestSupport.richManifest))
        if c.fixChecksum { repair(&bytes) }
        let error = try #require(throws: ManifestError.self) { try PBMReader.decode(bytes, file: "bad.pbm") }
        #expect(error.description.contains(c.expect), "message: \(error)")
        #expect(error.field == c.field, "message: \(error)")
        #expect(error.description.hasPrefix("bad.pbm: "))
        #expect(!error.fix.isEmpty)
    }

    @Test("an unknown section marked optional is skipped (forward compatibility)")
    func optionalSectionSkipped() throws {
        var bytes = PBMWriter.encode(TestSupport.richManifest)
        put32(&bytes, 32 + 16 * 7, 99)      // the `after` section becomes an unknown kind...
        put32(&bytes, 32 + 16 * 7 + 12, 1)  // ...flagged optional
        repair(&bytes)
        let m = try PBMReader.decode(bytes, file: "newer.pbm")
        #expect(m.after == [])
        #expect(m.rules == TestSupport.richManifest.rules)
    }
}

func le16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
func le32(_ b: [UInt8], _ o: Int) -> UInt32 { UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24 }
func put32(_ b: inout [UInt8], _ o: Int, _ v: UInt32) { for i in 0..<4 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) } }

/// Rewrites the length and checksum fields so a deliberately broken file gets past those checks.
func repair(_ b: inout [UInt8]) {
    guard b.count >= 32 else { return }
    put32(&b, 8, UInt32(b.count))
    let crc = b.withUnsafeBytes { CRC32C.checksum($0, skippingFieldAt: 12) }
    put32(&b, 12, crc)
}
