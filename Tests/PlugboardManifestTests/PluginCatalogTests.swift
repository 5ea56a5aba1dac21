import CPlugboard
import Foundation
import PlugboardManifest
import PlugboardManifestTools
import Synchronization
import Testing

@Suite("Plugin catalog (what the loader loads)")
struct PluginCatalogTests {
    @Test("a .so without a manifest is skipped with the pack command that fixes it")
    func soWithoutManifest() throws {
        let dir = TestSupport.makeTempDir("catalog")
        defer { TestSupport.cleanup(dir) }
        try TestSupport.copy(try TestSupport.builtLibrary("device-counter"), to: dir + "/libdevice-counter.so")
        try TestSupport.install("usb-logger", into: dir)
        let catalog = PluginCatalog.discover(dirs: [dir], registry: ManifestRegistry(cachePath: nil))
        #expect(catalog.loadable.map(\.name) == ["usb-logger"])
        let counter = try #require(catalog.candidates.first { $0.name == "device-counter" })
        #expect(counter.skip?.check == .missingManifest)
        #expect(counter.skip?.file == dir + "/libdevice-counter.so")
        #expect(counter.skip?.fix.contains("plugboard pack plugin.toml --library \(dir)/libdevice-counter.so -o \(dir)/device-counter.pbm") == true)
    }

    @Test("a corrupt manifest skips its plugin with the reader's reason, and no second report for its .so")
    func corruptManifest() throws {
        let dir = TestSupport.makeTempDir("catalog")
        defer { TestSupport.cleanup(dir) }
        let pbm = try TestSupport.install("usb-logger", into: dir)
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: pbm)))
        bytes[bytes.count - 5] ^= 1
        try Data(bytes).write(to: URL(fileURLWithPath: pbm))
        let catalog = PluginCatalog.discover(dirs: [dir], registry: ManifestRegistry(cachePath: nil))
        #expect(catalog.candidates.count == 1)
        #expect(catalog.candidates[0].skip?.check == .checksum)
        #expect(catalog.candidates[0].skip?.description.hasPrefix(pbm + ": header.checksum: CRC-32C mismatch") == true)
    }

    @Test("a manifest whose library is missing is skipped naming the library")
    func missingLibrary() throws {
        let dir = TestSupport.makeTempDir("catalog")
        defer { TestSupport.cleanup(dir) }
        try TestSupport.install("usb-logger", into: dir)
        try FileManager.default.removeItem(atPath: dir + "/libusb-logger.so")
        let catalog = PluginCatalog.discover(dirs: [dir], registry: ManifestRegistry(cachePath: nil))
        #expect(catalog.candidates.first?.skip?.problem == "the library \(dir)/libusb-logger.so does not exist")
    }

    @Test("the first directory's plugin wins a name clash; the other is skipped naming both")
    func duplicateNames() throws {
        let a = TestSupport.makeTempDir("catalog-a"), b = TestSupport.makeTempDir("catalog-b")
        defer { TestSupport.cleanup(a); TestSupport.cleanup(b) }
        try TestSupport.install("usb-logger", into: a)
        try TestSupport.install("usb-logger", into: b)
        let catalog = PluginCatalog.discover(dirs: [a, b], registry: ManifestRegistry(cachePath: nil))
        #expect(catalog.loadable.map(\.manifestPath) == [a + "/usb-logger.pbm"])
        let dup = try #require(catalog.candidates.last)
        #expect(dup.skip?.check == .duplicate)
        #expect(dup.skip?.problem.contains("already provided by \(a)/usb-logger.pbm") == true)
    }

    @Test("dependencies: order levels, skip a cycle and what depends on a missing plugin")
    func dependencies() async throws {
        let dir = TestSupport.makeTempDir("catalog")
        defer { TestSupport.cleanup(dir) }
        try TestSupport.install("base", into: dir)
        try TestSupport.install("top", into: dir, after: ["base"])
        try TestSupport.install("x", into: dir, after: ["y"])
        try TestSupport.install("y", into: dir, after: ["x"])
        try TestSupport.install("orphan", into: dir, after: ["not-installed"])
        let catalog = PluginCatalog.discover(dirs: [dir], registry: ManifestRegistry(cachePath: nil))
        #expect(catalog.plan.levels == [["base"], ["top"]])
        #expect(catalog.loadable.map(\.name).sorted() == ["base", "top"])
        #expect(catalog.candidate(named: "x")?.skip?.problem == "dependency cycle: x -> y -> x")
        #expect(catalog.candidate(named: "x")?.skip?.file == dir + "/x.pbm")
        #expect(catalog.candidate(named: "orphan")?.skip?.problem.contains("needs \"not-installed\"") == true)
        #expect(catalog.candidate(named: "x")?.matchSlot == nil, "skipped plugins get no filter")

        let order = Mutex<[String]>([])
        let outcomes = await catalog.initialize { name in order.withLock { $0.append(name) } }
        #expect(order.withLock { $0 } == ["base", "top"])
        #expect(outcomes["x"].map { if case .skipped = $0 { true } else { false } } == true)
    }

    @Test("each loadable plugin's filter comes from its own [[match]] rules; config is handed over in order")
    func filtersAndConfig() throws {
        let dir = TestSupport.makeTempDir("catalog")
        defer { TestSupport.cleanup(dir) }
        try TestSupport.install("logitech", into: dir, rules: "[[match]]\nvendor = \"046d\"\n", config: "z = \"1\"\na = \"2\"\n")
        try TestSupport.install("hubs", into: dir, rules: "[[match]]\ndevice_class = \"09\"\n")
        let catalog = PluginCatalog.discover(dirs: [dir], registry: ManifestRegistry(cachePath: nil))
        let logitech = try #require(catalog.filter(for: "logitech")), hubs = try #require(catalog.filter(for: "hubs"))
        DeviceQuery(vendor: 0x046d, product: 0xc52b).withEvent { e in #expect(logitech(e) && !hubs(e)) }
        DeviceQuery(vendor: 0x1d6b, product: 2, classCode: 9).withEvent { e in #expect(!logitech(e) && hubs(e)) }
        #expect(catalog.candidate(named: "logitech")?.config.map(\.key) == ["z", "a"])
        #expect(catalog.filter(for: "nope") == nil)
    }
}
