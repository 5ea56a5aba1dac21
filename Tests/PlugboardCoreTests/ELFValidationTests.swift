import Foundation
import PlugboardCore
import PlugboardSystem
import Testing

/// The ELF checks made before `dlopen` (issue 12): against the real plugins the package builds, cut
/// short and with their headers altered. Before these checks, `dlopen` of the first 1,000 bytes of a
/// real plugin mapped pages past the end of the file and the host died of SIGBUS.
@Suite("ELF validation before dlopen")
struct ELFValidationTests {
    static let realPlugins = ["usb-logger", "device-counter", "pbtest-recorder", "swift-counter", "pbtest-exports"]

    func bytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

    /// A copy of the first `count` bytes of a real plugin, in a fresh directory.
    func truncated(_ plugin: String = "usb-logger", to count: Int) throws -> (dir: String, path: String) {
        let dir = try TestSupport.tempDir("elf")
        let path = "\(dir)/libtruncated.so"
        try Data(try bytes(TestSupport.plugin(plugin)).prefix(count)).write(to: URL(fileURLWithPath: path))
        return (dir, path)
    }

    @Test("every real plugin the package builds passes the checks", arguments: realPlugins)
    func realPluginsValidate(name: String) throws {
        let image = try ELFImage.inspect(path: TestSupport.plugin(name))
        #expect(image.machine == ELFImage.hostMachine && image.is64Bit)
        if name == "swift-counter" { #expect(image.containsSwift) }
    }

    @Test("the first 1,000 bytes of a real plugin are refused before dlopen, naming the file, the segment and the fix")
    func truncatedFileRefusedByTheLoader() throws {
        let (dir, path) = try truncated(to: 1000)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            _ = try PluginLoader.open(path)  // before the checks: SIGBUS in dlopen
            Issue.record("a truncated plugin was opened")
        } catch {
            #expect(error.code == "malformed-elf")
            let text = error.description
            #expect(text.hasPrefix("\(path): malformed ELF, not loaded: "), "\(text)")
            #expect(text.contains("ends beyond the end of the file (1000 bytes): the file is truncated or damaged"), "\(text)")
            #expect(text.contains("fix: rebuild the plugin and copy the whole .so again, then re-run `plugboard pack`"), "\(text)")
        }
    }

    @Test("in process isolation the host refuses a truncated plugin itself, before a worker process is spawned")
    func truncatedFileRefusedBeforeSpawn() throws {
        let (dir, path) = try truncated(to: 1000)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var options = RuntimeOptions()
        options.processPolicy = ProcessPolicy(workerExecutable: "/nonexistent/plugboard-worker")
        let rt = try Runtime(options: options, logger: TestSupport.logger)
        // The worker executable does not exist: only a check in the host can give this reason.
        #expect(!rt.addProcessPlugin(ProcessPluginSpec(path: path, name: "truncated", version: "1", configuration: [:],
                                                       batchSize: 8, deadline: nil, manifest: [])))
        let failure = try #require(rt.failures.first)
        #expect(failure.error.code == "malformed-elf")
        #expect(failure.description.contains("\(path): malformed ELF, not loaded"), "\(failure.description)")
        #expect(rt.startWorkers() == 0)
    }

    @Test("a plugin without pb_plugin_entry in its dynamic symbols is refused from the headers, as before from dlsym")
    func missingEntryPointFoundInTheSymbolTable() throws {
        do {
            _ = try ELFImage.inspect(path: TestSupport.plugin("pbtest-no-entry"))
            Issue.record("no-entry passed the ELF checks")
        } catch {
            #expect(error.code == "no-entry-point")
        }
    }

    /// Field offsets in the 64-bit ELF header and program header.
    static func put64(_ b: inout [UInt8], _ o: Int, _ v: UInt64) { for i in 0..<8 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) } }
    static func put16(_ b: inout [UInt8], _ o: Int, _ v: UInt16) { b[o] = UInt8(v & 0xff); b[o + 1] = UInt8(v >> 8) }
    static func get64(_ b: [UInt8], _ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[o + $1]) << (8 * UInt64($1)) } }
    static func get16(_ b: [UInt8], _ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 }

    @Test("malformed headers are each refused with their reason")
    func malformedHeaders() throws {
        let good = try bytes(TestSupport.plugin("usb-logger"))
        let phoff = Int(Self.get64(good, 32)), phentsize = Self.get16(good, 54), phnum = Self.get16(good, 56)
        func refusal(_ mutate: (inout [UInt8]) -> Void) -> String {
            var b = good
            mutate(&b)
            do {
                _ = try ELFImage.inspect(bytes: b, file: "lib.so")
                return "accepted"
            } catch { return error.description }
        }
        // A segment past the end of the file (the first PT_LOAD's p_filesz made huge).
        let load = try #require((0..<phnum).first { good[phoff + $0 * phentsize] == 1 })
        #expect(refusal { b in Self.put64(&b, phoff + load * phentsize + 32, UInt64(good.count) * 4) }
            .contains("segment \(load + 1) of \(phnum) (PT_LOAD, offset "))
        // p_offset + p_filesz overflowing 64 bits.
        #expect(refusal { b in Self.put64(&b, phoff + 8, UInt64.max - 10) }.contains("ends beyond the end of the file"))
        // The program header table outside the file.
        #expect(refusal { b in Self.put64(&b, 32, UInt64(good.count)) }.contains("program header table"))
        // The section header table outside the file.
        #expect(refusal { b in Self.put64(&b, 40, UInt64(good.count - 100)) }.contains("section header table"))
        // No PT_DYNAMIC: every PT_DYNAMIC turned into PT_NULL.
        #expect(refusal { b in
            for i in 0..<phnum where b[phoff + i * phentsize] == 2 { b[phoff + i * phentsize] = 0 }
        }.contains("no PT_DYNAMIC segment"))
        // Not a shared object (ET_EXEC).
        #expect(refusal { b in Self.put16(&b, 16, 2) }.contains("not ET_DYN"))
        // The entry symbol's name changed in .dynstr: no entry point.
        let name = Array("pb_plugin_entry".utf8)
        #expect(refusal { b in
            var i = 0
            while i + name.count < b.count { if b[i..<(i + name.count)].elementsEqual(name) && b[i + name.count] == 0 { b[i] = UInt8(ascii: "q") }; i += 1 }
        }.contains("no entry point 'pb_plugin_entry'"))
    }

    /// A small, deterministic fuzz pass over the real plugins' headers: random bytes and fields of
    /// the ELF header, the program headers and the section headers, and truncation at many offsets.
    /// Every case must either validate or be refused with a `PluginLoadError` naming the file; none
    /// may trap (a crash ends the test process). Every truncated file must be refused.
    @Test("fuzz: altered and truncated ELF headers are validated or refused, never a crash", arguments: ["usb-logger", "swift-counter"])
    func fuzzHeaders(plugin: String) throws {
        let good = try bytes(TestSupport.plugin(plugin))
        var rng = SplitMix64(seed: 0x5eed_e1f0 ^ UInt64(plugin.utf8.count))
        let phoff = Int(Self.get64(good, 32)), phentsize = Self.get16(good, 54), phnum = Self.get16(good, 56)
        let shoff = Int(Self.get64(good, 40)), shentsize = Self.get16(good, 58), shnum = Self.get16(good, 60)
        let regions = [0..<64, phoff..<(phoff + phentsize * phnum), shoff..<min(good.count, shoff + shentsize * shnum)]
        var refused = 0, accepted = 0
        func check(_ b: [UInt8], _ label: String) {
            do {
                _ = try ELFImage.inspect(bytes: b, file: "fuzz.so")
                accepted += 1
            } catch {
                refused += 1
                #expect(error.description.hasPrefix("fuzz.so: "), "\(label): \(error.description)")
            }
        }
        // Single bytes and whole 8-byte fields set to random, zero, all-ones and boundary values.
        for round in 0..<3000 {
            var b = good
            let region = regions[Int(rng.next() % UInt64(regions.count))]
            let at = region.lowerBound + Int(rng.next() % UInt64(region.count))
            switch round % 4 {
            case 0: b[at] = UInt8(truncatingIfNeeded: rng.next())
            case 1: b[at] ^= 1 << (rng.next() % 8)
            default:
                let field = region.lowerBound + (at - region.lowerBound) / 8 * 8
                let values: [UInt64] = [0, UInt64.max, UInt64(good.count), UInt64(good.count) + 1, UInt64(Int64.max), rng.next()]
                if field + 8 <= b.count { Self.put64(&b, field, values[Int(rng.next() % UInt64(values.count))]) }
            }
            check(b, "round \(round), byte \(at)")
        }
        // Truncation: every length up to 4 KiB in steps of 7, then every 1/200th of the file.
        var lengths = Array(stride(from: 0, to: min(4096, good.count), by: 7))
        lengths += (1..<200).map { good.count * $0 / 200 }
        lengths.append(good.count - 1)
        for n in lengths {
            let before = refused
            check(Array(good.prefix(n)), "truncated to \(n)")
            #expect(refused == before + 1, "the first \(n) of \(good.count) bytes were accepted")
        }
        check(good, "the whole file")
        #expect(accepted >= 1 && refused > lengths.count, "refused \(refused), accepted \(accepted)")
    }
}

/// A small deterministic PRNG (SplitMix64): the fuzz pass is the same on every run.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
