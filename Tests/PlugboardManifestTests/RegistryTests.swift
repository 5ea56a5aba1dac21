import Foundation
import PlugboardManifest
import PlugboardManifestTools
import PlugboardSystem
import Synchronization
import Testing

/// The registry cache, against real packed manifests and real plugin `.so` files built by the package.
@Suite("Manifest registry cache")
struct RegistryTests {
    /// A plugin directory with `count` plugins (copies of the real usb-logger .so) and a cache path.
    func setUp(_ count: Int = 5) throws -> (dir: String, cache: String) {
        let dir = TestSupport.makeTempDir("registry")
        for i in 0..<count { try TestSupport.install("p\(i)", into: dir) }
        return (dir, dir + "/cache/registry.pbr")
    }

    func start(_ dir: String, _ cache: String, warnings: WarningLog? = nil) -> (PluginCatalog, ManifestRegistry.Stats) {
        try? FileManager.default.createDirectory(atPath: (cache as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let registry = ManifestRegistry(cachePath: cache, warning: { w in warnings?.add(w) })
        let catalog = PluginCatalog.discover(dirs: [dir], registry: registry)
        return (catalog, registry.stats)
    }

    @Test("cold start reads every manifest and hashes every library, then writes one cache file")
    func coldStart() throws {
        let (dir, cache) = try setUp()
        defer { TestSupport.cleanup(dir) }
        let (catalog, stats) = start(dir, cache)
        #expect(catalog.loadable.count == 5)
        #expect(stats.manifestReads == 5 && stats.libraryHashes == 5 && stats.cacheWrites == 1)
        #expect(FileKey.of(path: cache) != nil)
        #expect(FileIO.list((cache as NSString).deletingLastPathComponent) == ["registry.pbr"], "no temp file left behind")
    }

    @Test("warm start parses no manifest and hashes no library")
    func warmStartDoesNotParse() throws {
        let (dir, cache) = try setUp()
        defer { TestSupport.cleanup(dir) }
        let (cold, _) = start(dir, cache)
        let (warm, stats) = start(dir, cache)
        #expect(stats.manifestReads == 0)
        #expect(stats.libraryHashes == 0)
        #expect(stats.cacheDecodes == 5)
        #expect(stats.cacheWrites == 0, "an unchanged cache is not rewritten")
        #expect(warm.candidates == cold.candidates)
    }

    @Test("touching a manifest re-reads that manifest only")
    func touchManifest() throws {
        let (dir, cache) = try setUp()
        defer { TestSupport.cleanup(dir) }
        _ = start(dir, cache)
        TestSupport.touch(dir + "/p2.pbm")
        let (catalog, stats) = start(dir, cache)
        #expect(stats.manifestReads == 1 && stats.libraryHashes == 0 && stats.cacheWrites == 1)
        #expect(catalog.loadable.count == 5)
        #expect(start(dir, cache).1.manifestReads == 0, "and the next start is warm again")
    }

    @Test("touching a library re-hashes it and keeps the plugin (same bytes)")
    func touchLibrary() throws {
        let (dir, cache) = try setUp()
        defer { TestSupport.cleanup(dir) }
        _ = start(dir, cache)
        TestSupport.touch(dir + "/libp1.so")
        let (catalog, stats) = start(dir, cache)
        #expect(stats.libraryHashes == 1 && stats.manifestReads == 0)
        #expect(catalog.loadable.count == 5)
    }

    @Test("a replaced .so is detected and the plugin skipped with the fix: pack again")
    func replacedLibrary() throws {
        let (dir, cache) = try setUp()
        defer { TestSupport.cleanup(dir) }
        _ = start(dir, cache)
        // A different real plugin under the same name: new inode, other bytes.
        try TestSupport.copy(try TestSupport.builtLibrary("device-counter"), to: dir + "/libp3.so")
        let (catalog, stats) = start(dir, cache)
        #expect(stats.libraryHashes == 1)
        let p3 = try #require(catalog.candidates.first { $0.name == "p3" })
        #expect(p3.skip?.check == .library)
        #expect(p3.skip?.description.contains("is not the library that was packed") == true)
        #expect(p3.skip?.fix.contains("plugboard pack") == true)
        #expect(catalog.loadable.count == 4)
    }

    @Test("an edited (re-packed) manifest is re-read and its new content used")
    func editedManifest() throws {
        let (dir, cache) = try setUp()
        defer { TestSupport.cleanup(dir) }
        _ = start(dir, cache)
        try TestSupport.install("p4", into: dir, config: "mode = \"loud\"\n", version: "2.0.0")
        TestSupport.touch(dir + "/p4.pbm", plusSeconds: 30)
        let (catalog, stats) = start(dir, cache)
        #expect(stats.manifestReads == 1)
        let p4 = try #require(catalog.candidate(named: "p4"))
        #expect(p4.manifest?.version == "2.0.0")
        #expect(p4.config == [ConfigEntry(key: "mode", value: "loud")])
    }

    @Test("a corrupt cache is rebuilt with a warning, and the next start is warm")
    func corruptCache() throws {
        let (dir, cache) = try setUp()
        defer { TestSupport.cleanup(dir) }
        _ = start(dir, cache)
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: cache)))
        bytes[bytes.count / 2] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: cache))
        let warnings = WarningLog()
        let (catalog, stats) = start(dir, cache, warnings: warnings)
        #expect(catalog.loadable.count == 5)
        #expect(stats.cacheRebuilds == 1 && stats.manifestReads == 5 && stats.cacheWrites == 1)
        let w = warnings.all
        #expect(w.count == 1)
        #expect(w.first?.contains(cache) == true && w.first?.contains("CRC-32C mismatch") == true && w.first?.contains("rebuilt") == true)
        #expect(start(dir, cache).1.manifestReads == 0)
    }

    @Test("a foreign or truncated cache file is rebuilt with a warning")
    func foreignCache() throws {
        let (dir, cache) = try setUp(2)
        defer { TestSupport.cleanup(dir) }
        try? FileManager.default.createDirectory(atPath: dir + "/cache", withIntermediateDirectories: true)
        TestSupport.write("{\"not\": \"a registry\"}", to: cache)
        let warnings = WarningLog()
        let (catalog, stats) = start(dir, cache, warnings: warnings)
        #expect(catalog.loadable.count == 2 && stats.cacheRebuilds == 1)
        #expect(warnings.all.first?.contains("not a plugboard registry") == true)
        // Truncated: a valid cache cut short.
        let good = try Data(contentsOf: URL(fileURLWithPath: cache))
        try good.prefix(good.count - 10).write(to: URL(fileURLWithPath: cache))
        let (_, stats2) = start(dir, cache, warnings: warnings)
        #expect(stats2.cacheRebuilds == 1)
        #expect(warnings.all.last?.contains("truncated") == true)
    }

    @Test("a .so patched in place with its size and mtime restored is hashed again and refused")
    func patchedInPlaceWithMtimeRestored() throws {
        let (dir, cache) = try setUp(3)
        defer { TestSupport.cleanup(dir) }
        #expect(start(dir, cache).0.loadable.count == 3, "the cache now holds libp1.so's hash")
        let lib = dir + "/libp1.so"
        let before = try FileStatus.of(path: lib)
        // The attack: one byte changed in place (same inode, same size), then the mtime set back.
        let fd = open(lib, O_WRONLY)
        #expect(fd >= 0)
        var byte: UInt8 = 0
        let at = off_t(before.size / 2)
        let original = try Array(Data(contentsOf: URL(fileURLWithPath: lib)))[Int(at)]
        byte = original ^ 0xFF
        #expect(pwrite(fd, &byte, 1, at) == 1)
        close(fd)
        let mtime = timespec(tv_sec: Int(before.modificationNanoseconds / 1_000_000_000),
                             tv_nsec: Int(before.modificationNanoseconds % 1_000_000_000))
        var times = [mtime, mtime]
        #expect(utimensat(AT_FDCWD, lib, &times, 0) == 0)
        let after = try FileStatus.of(path: lib)
        #expect(after.size == before.size && after.inode == before.inode && after.modificationNanoseconds == before.modificationNanoseconds,
                "what an old key (device, inode, size, mtime) would see is unchanged")

        let (catalog, stats) = start(dir, cache)
        #expect(stats.libraryHashes == 1, "the patched library is hashed again")
        let p1 = try #require(catalog.candidates.first { $0.name == "p1" })
        #expect(p1.skip?.check == .library)
        #expect(p1.skip?.description.contains(lib) == true)
        #expect(p1.skip?.description.contains("is not the library that was packed") == true)
        #expect(p1.skip?.fix.contains("plugboard pack") == true)
        #expect(catalog.loadable.map(\.name).sorted() == ["p0", "p2"])
    }

    @Test("a cache of the format before ctime keys (version 1) is rebuilt, not read")
    func versionOneCacheIsRebuilt() throws {
        let (dir, cache) = try setUp(2)
        defer { TestSupport.cleanup(dir) }
        _ = start(dir, cache)
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: cache)))
        bytes[4] = 1; bytes[5] = 0
        try Data(bytes).write(to: URL(fileURLWithPath: cache))
        let warnings = WarningLog()
        let (catalog, stats) = start(dir, cache, warnings: warnings)
        #expect(catalog.loadable.count == 2)
        #expect(stats.cacheRebuilds == 1 && stats.manifestReads == 2 && stats.libraryHashes == 2 && stats.cacheWrites == 1)
        #expect(warnings.all.first?.contains("another format version") == true)
    }

    @Test("a removed plugin drops out of the cache")
    func removedPlugin() throws {
        let (dir, cache) = try setUp(3)
        defer { TestSupport.cleanup(dir) }
        _ = start(dir, cache)
        try FileManager.default.removeItem(atPath: dir + "/p0.pbm")
        try FileManager.default.removeItem(atPath: dir + "/libp0.so")
        let (catalog, stats) = start(dir, cache)
        #expect(catalog.candidates.map { $0.name } == ["p1", "p2"])
        #expect(stats.cacheWrites == 1)
    }

    @Test("the in-memory LRU serves a rescan without decoding, and evicts beyond its capacity")
    func lru() throws {
        let (dir, cache) = try setUp(3)
        defer { TestSupport.cleanup(dir) }
        let registry = ManifestRegistry(cachePath: nil, lruCapacity: 2)
        _ = PluginCatalog.discover(dirs: [dir], registry: registry)
        #expect(registry.stats.manifestReads == 3)
        _ = PluginCatalog.discover(dirs: [dir], registry: registry)
        // Capacity 2: p0 was evicted by p2 and must be read again; p1 and p2 come from memory... until
        // re-reading p0 evicts p1. With files visited in order p0, p1, p2 each rescan reads all three.
        #expect(registry.stats.manifestReads == 6)
        let big = ManifestRegistry(cachePath: nil) // default capacity 200
        #expect(big.lruCapacity == 200)
        _ = PluginCatalog.discover(dirs: [dir], registry: big)
        _ = PluginCatalog.discover(dirs: [dir], registry: big)
        #expect(big.stats.manifestReads == 3 && big.stats.lruHits == 3)
        _ = cache
    }
}

/// Collects registry warnings across threads.
final class WarningLog: Sendable {
    private let lines = Mutex<[String]>([])
    func add(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}
