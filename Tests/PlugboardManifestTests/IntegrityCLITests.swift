import Foundation
import PlugboardManifest
import Testing

/// Integrity checks through the real binary (issue 12): a truncated `.so` is refused by `pack`,
/// `inspect` and `run` (in both isolation modes) with its reason, and nothing crashes.
@Suite("Integrity: truncated plugins through the CLI (the real binary)")
struct IntegrityCLITests {
    func run(_ args: [String]) throws -> (status: Int32, output: String) { try TestSupport.runPlugboard(args) }

    /// `lib<name>.so`: the first 1,000 bytes of the real usb-logger.
    func writeTruncated(to path: String) throws {
        let whole = try Data(contentsOf: URL(fileURLWithPath: try TestSupport.builtLibrary("usb-logger")))
        try whole.prefix(1000).write(to: URL(fileURLWithPath: path))
    }

    @Test("pack refuses a truncated .so with the reason and the fix, and writes no manifest")
    func packRefusesTruncated() throws {
        let dir = TestSupport.makeTempDir("pack-elf")
        defer { TestSupport.cleanup(dir) }
        try writeTruncated(to: "\(dir)/libusb-logger.so")
        TestSupport.write(TestSupport.toml(name: "usb-logger"), to: "\(dir)/plugin.toml")
        let r = try run(["pack", "\(dir)/plugin.toml", "--library", "\(dir)/libusb-logger.so", "-o", "\(dir)/usb-logger.pbm"])
        #expect(r.status == 1, "\(r.output)")
        #expect(r.output.contains("\(dir)/libusb-logger.so: plugin.library: malformed ELF, not loaded:"), "\(r.output)")
        #expect(r.output.contains("ends beyond the end of the file (1000 bytes)"), "\(r.output)")
        #expect(r.output.contains("Fix: rebuild the plugin and copy the whole .so again"), "\(r.output)")
        #expect(FileKey.of(path: "\(dir)/usb-logger.pbm") == nil)
    }

    @Test("inspect refuses a truncated .so, alone or behind its manifest, and exits 1")
    func inspectRefusesTruncated() throws {
        let dir = TestSupport.makeTempDir("inspect-elf")
        defer { TestSupport.cleanup(dir) }
        let pbm = try TestSupport.install("usb-logger", into: dir, from: "usb-logger")
        let good = try run(["inspect", "\(dir)/libusb-logger.so"])
        #expect(good.status == 0 && good.output.contains("ELF headers valid, exports pb_plugin_entry"), "\(good.output)")
        try writeTruncated(to: "\(dir)/libusb-logger.so")
        let alone = try run(["inspect", "\(dir)/libusb-logger.so"])
        #expect(alone.status == 1, "\(alone.output)")
        #expect(alone.output.contains("\(dir)/libusb-logger.so: plugin.library: malformed ELF, not loaded"), "\(alone.output)")
        let behind = try run(["inspect", pbm, "--json"])
        #expect(behind.status == 1, "\(behind.output)")
        #expect(behind.output.contains("\"valid\": false"), "\(behind.output)")
        #expect(behind.output.contains("malformed ELF, not loaded"), "\(behind.output)")
    }

    @Test("run refuses a truncated .so whose manifest matches it, in thread and process isolation; the other plugin runs",
          arguments: ["thread", "process"])
    func hostRefusesTruncated(isolation: String) throws {
        let dir = TestSupport.makeTempDir("run-elf")
        defer { TestSupport.cleanup(dir) }
        let pbm = try TestSupport.install("usb-logger", into: dir, from: "usb-logger")
        try TestSupport.install("device-counter", into: dir, from: "device-counter")
        // The attack `pack` now refuses, done by hand: a manifest recording the truncated file's hash.
        try writeTruncated(to: "\(dir)/libusb-logger.so")
        var m = try PBMReader.decode(contentsOf: pbm)
        m.librarySHA256 = try SHA256.hash(fileAt: "\(dir)/libusb-logger.so")
        try FileIO.writeAtomically(PBMWriter.encode(m), to: pbm, check: .library, field: "output")
        let r = try run(["run", "--plugins", dir, "--source", "synthetic:5", "--registry-cache", "none",
                         "--set", "plugins.isolation=\(isolation)"])
        #expect(r.status == 0, "no crash (SIGBUS in dlopen before the checks): \(r.output)")
        #expect(r.output.contains("\(dir)/libusb-logger.so: malformed ELF, not loaded:"), "\(r.output)")
        #expect(r.output.contains("ends beyond the end of the file (1000 bytes)"), "\(r.output)")
        #expect(r.output.contains("plugins running: device-counter"), "\(r.output)")
    }
}
