import Foundation
import PlugboardManifest
import PlugboardManifestTools
import Testing

/// `[worker] settle_ms`, `nice` and `cpu_affinity`: format 1.1's optional `tuning` section.
@Suite("Manifest tuning: settle window, nice, CPU affinity")
struct PBMTuningTests {
    static func toml(_ worker: String) -> String {
        """
        [plugin]
        name = "tuned"
        version = "1.0.0"
        library = "libtuned.so"

        [worker]
        \(worker)

        [[match]]
        subsystem = "usb"
        """
    }

    static var tuned: Manifest {
        var m = TestSupport.richManifest
        m.worker.settle = .milliseconds(250)
        m.worker.nice = -4
        m.worker.cpuAffinity = "0,2-3"
        return m
    }

    /// (kind, flags) of each section entry.
    static func sections(_ b: [UInt8]) -> [(kind: UInt32, flags: UInt32)] {
        (0..<Int(le32(b, 16))).map { (le32(b, 32 + 16 * $0), le32(b, 32 + 16 * $0 + 12)) }
    }

    @Test("settle_ms, nice and cpu_affinity survive plugin.toml -> .pbm -> decode")
    func roundTrip() throws {
        let m = try ManifestTOML.parse(Self.toml("settle_ms = 250\nnice = -4\ncpu_affinity = \"0,2-3\""), file: "plugin.toml")
        #expect(m.worker.settle == .milliseconds(250) && m.worker.nice == -4 && m.worker.cpuAffinity == "0,2-3")
        let bytes = PBMWriter.encode(m)
        #expect(try PBMReader.decode(bytes, file: "t.pbm") == m)
        let rich = PBMWriter.encode(Self.tuned)
        #expect(try PBMReader.decode(rich, file: "t.pbm") == Self.tuned)
    }

    @Test("settle_ms = \"default\" is the daemon's window, 0 is none, a bare integer is one CPU")
    func forms() throws {
        #expect(try ManifestTOML.parse(Self.toml("settle_ms = \"default\""), file: "p").worker.settle == .daemonDefault)
        #expect(try ManifestTOML.parse(Self.toml("settle_ms = 0"), file: "p").worker.settle == .off)
        #expect(try ManifestTOML.parse(Self.toml("cpu_affinity = 3"), file: "p").worker.cpuAffinity == "3")
        let d = try ManifestTOML.parse(Self.toml("settle_ms = \"default\""), file: "p")
        #expect(try PBMReader.decode(PBMWriter.encode(d), file: "d.pbm").worker.settle == .daemonDefault)
    }

    @Test("a manifest without them is written byte for byte as format 1.0; with them it is 1.1 with one optional section a 1.0 reader skips")
    func compatibility() throws {
        let plain = PBMWriter.encode(TestSupport.richManifest)
        #expect(le16(plain, 6) == 0)
        #expect(!Self.sections(plain).contains { $0.kind == 10 })
        let tuned = PBMWriter.encode(Self.tuned)
        #expect(le16(tuned, 6) == 1, "format minor 1")
        let extra = Self.sections(tuned).filter { !Self.sections(plain).map(\.kind).contains($0.kind) }
        #expect(extra.count == 1 && extra[0].kind == 10 && extra[0].flags & PBMFormat.optionalFlag != 0, "\(extra)")
        // A 1.0 reader does not know kind 10: it sees an unknown optional section, which it skips
        // (shown here by renumbering the section to a kind this reader does not know either).
        var older = tuned
        let i = Self.sections(tuned).firstIndex { $0.kind == 10 }!
        put32(&older, 32 + 16 * i, 4242)
        repair(&older)
        let read = try PBMReader.decode(older, file: "older.pbm")
        #expect(read.worker == TestSupport.richManifest.worker && read.rules == Self.tuned.rules)
    }

    static let badTuning: [(name: String, expect: String, field: String, mutate: @Sendable ([UInt8], Int) -> [UInt8])] = [
        ("nice out of range", "-30 is outside -20...19", "worker.nice", { b, t in var b = b; b[t + 6] = UInt8(bitPattern: -30); return b }),
        ("settle too long", "70000 is outside 0...60000", "worker.settle_ms", { b, t in var b = b; put32(&b, t, 70_000); return b }),
        ("unknown flag", "unknown flag bits", "tuning.flags", { b, t in var b = b; b[t + 4] |= 0x80; return b }),
        ("default and a number", "both \"default\" and 250 ms", "worker.settle_ms", { b, t in var b = b; b[t + 4] |= 1; return b }),
    ]

    @Test("a malformed tuning section is rejected naming the field", arguments: 0..<4)
    func rejected(_ index: Int) throws {
        let c = Self.badTuning[index]
        let good = PBMWriter.encode(Self.tuned)
        let i = Self.sections(good).firstIndex { $0.kind == 10 }!
        var bytes = c.mutate(good, Int(le32(good, 32 + 16 * i + 4)))
        repair(&bytes)
        let error = try #require(throws: ManifestError.self) { try PBMReader.decode(bytes, file: "bad.pbm") }
        #expect(error.description.contains(c.expect) && error.field == c.field, "\(c.name): \(error)")
        #expect(error.description.hasPrefix("bad.pbm: ") && !error.fix.isEmpty)
    }
}
