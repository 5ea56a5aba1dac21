import Foundation
import PlugboardManifest
import Testing

/// The bounded fuzz pass that `make test` runs. Two parts, honestly labelled:
/// - always: an in-process mutation loop (deterministic PRNG, libFuzzer-style byte flips, inserts,
///   deletions, splices, with and without the checksum repaired) over the seed corpus;
/// - when `make fuzz` has built it: the real libFuzzer binary, `-runs=20000` over the same seeds.
/// `make fuzz` itself runs 1,000,000 executions of the libFuzzer binary.
@Suite("Fuzzing the .pbm reader")
struct PBMFuzzTests {
    static var seeds: [[UInt8]] {
        let dir = Bundle.module.resourceURL!.appendingPathComponent("FuzzCorpus").path
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
        return names.compactMap { FileManager.default.contents(atPath: dir + "/" + $0).map { Array($0) } }
            + [PBMWriter.encode(TestSupport.richManifest)]
    }

    struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test("30,000 mutated manifests: the reader never traps, accepted ones round-trip")
    func inProcessMutation() throws {
        let seeds = Self.seeds
        try #require(seeds.count >= 3, "seed corpus missing")
        var rng = SplitMix64(state: 0x5EED)
        var accepted = 0, rejected = 0
        var checks: Set<String> = []
        for i in 0..<30_000 {
            var b = seeds[i % seeds.count]
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                switch Int.random(in: 0..<6, using: &rng) {
                case 0 where !b.isEmpty: b[Int.random(in: 0..<b.count, using: &rng)] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
                case 1 where !b.isEmpty: b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                case 2 where !b.isEmpty: b.remove(at: Int.random(in: 0..<b.count, using: &rng))
                case 3: b.insert(UInt8.random(in: 0...255, using: &rng), at: Int.random(in: 0...b.count, using: &rng))
                case 4 where b.count > 40:
                    // Overwrite a 32-bit field with an interesting value.
                    let o = Int.random(in: 0..<(b.count - 4), using: &rng)
                    put32(&b, o, [0, 1, 0xFFFF_FFFF, 0x7FFF_FFFF, UInt32(b.count), 8, 16][Int.random(in: 0..<7, using: &rng)])
                case 5: b = Array(b.prefix(Int.random(in: 0...b.count, using: &rng)))
                default: break
                }
            }
            if i % 2 == 0 { repair(&b) } // half the inputs get past the checksum into the sections
            do {
                let m = try PBMReader.decode(b, file: "fuzz")
                accepted += 1
                #expect(try PBMReader.decode(PBMWriter.encode(m), file: "again") == m)
            } catch let e as ManifestError {
                rejected += 1
                checks.insert(e.field.split(separator: ".").first.map(String.init) ?? e.field)
            }
        }
        #expect(accepted + rejected == 30_000)
        // The mutations reached past the header into the sections (not all rejected at the checksum).
        #expect(checks.count >= 5, "fields reached: \(checks.sorted())")
        #expect(accepted > 0)
    }

    @Test("every truncation and every single-bit flip of a valid .pbm is rejected with a ManifestError")
    func truncatedAndBitFlipped() throws {
        let good = PBMWriter.encode(TestSupport.richManifest)
        var fields: [String: Int] = [:]
        for n in 0..<good.count {
            do {
                _ = try PBMReader.decode(Array(good.prefix(n)), file: "cut.pbm")
                Issue.record("a file cut to \(n) of \(good.count) bytes was accepted")
            } catch let e as ManifestError { fields[e.field, default: 0] += 1 }
        }
        #expect(fields["header.magic"] == 4 && fields["header"] == 28 && fields["header.length"] == good.count - 32, "\(fields)")
        fields = [:]
        for bit in 0..<(good.count * 8) {
            var b = good
            b[bit / 8] ^= UInt8(1 << (bit % 8))
            do {
                _ = try PBMReader.decode(b, file: "flip.pbm")
                Issue.record("flipping bit \(bit) went unnoticed")
            } catch let e as ManifestError { fields[e.check.rawValue, default: 0] += 1 }
        }
        // CRC-32C detects every single-bit error; flips in the header are caught by the earlier checks.
        #expect(fields.values.reduce(0, +) == good.count * 8)
        #expect(fields["checksum"] ?? 0 > good.count * 8 - 100, "\(fields)")
    }

    static let libFuzzerBinary = TestSupport.packageRoot + "/.build-fuzz/debug/plugboard-manifest-fuzz"

    @Test("the libFuzzer binary runs 20,000 executions without a crash (built by `make test` / `make fuzz`)",
          .enabled(if: FileManager.default.isExecutableFile(atPath: libFuzzerBinary)))
    func libFuzzerBoundedRun() throws {
        let corpus = Bundle.module.resourceURL!.appendingPathComponent("FuzzCorpus").path
        let scratch = TestSupport.makeTempDir("fuzz")
        defer { TestSupport.cleanup(scratch) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.libFuzzerBinary)
        p.arguments = ["-runs=20000", "-seed=1", "-max_len=4096", "-artifact_prefix=\(scratch)/", scratch, corpus]
        let pipe = Pipe()
        p.standardError = pipe
        p.standardOutput = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "libFuzzer output:\n\(out.suffix(2000))")
        #expect(out.contains("Done 20000 runs"), "libFuzzer output:\n\(out.suffix(2000))")
    }
}
