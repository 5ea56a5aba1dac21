import Benchmark
import CPlugboard
import Foundation
import PlugboardManifest
import PlugboardManifestTools

// Manifest start-up and match cost (docs/benchmarks.md `## Manifests`), with malloc counts.
// Same workloads as Sources/bench-manifests (the release tool `make bench-manifests` runs);
// baselines in the same run: TOML parsing for start-up, a scan of every rule for matching.

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

/// 100 plugins: a 24,840-byte library file each (random bytes: the host never dlopens during
/// discovery, it only hashes) and a packed manifest; returns the directory and the TOML sources.
func makePluginDirectory(count: Int) -> (dir: String, tomls: [String]) {
    let dir = NSTemporaryDirectory() + "pb-bench-manifests-\(getpid())"
    try? FileManager.default.removeItem(atPath: dir)
    try! FileManager.default.createDirectory(atPath: dir + "/src", withIntermediateDirectories: true)
    var rng = SplitMix64(state: 1)
    let bytes = (0..<24_840).map { _ in UInt8.random(in: 0...255, using: &rng) }
    var tomls: [String] = []
    for i in 0..<count {
        let name = "bench-\(i)"
        FileManager.default.createFile(atPath: dir + "/lib\(name).so", contents: Data(bytes + [UInt8(i & 0xFF)]))
        let toml = dir + "/src/\(name).toml"
        try! """
        [plugin]
        name = "\(name)"
        version = "1.0.\(i)"
        library = "lib\(name).so"

        [dependencies]
        after = [\(i > 0 ? "\"bench-\(i - 1)\"" : "")]

        [[match]]
        vendor = "\(String(format: "%04x", 0x1000 + i))"
        product = "0001"

        [[match]]
        device_class = 9

        [config]
        output = "-"
        """.write(toFile: toml, atomically: false, encoding: .utf8)
        _ = try! Packer.pack(tomlPath: toml, libraryPath: dir + "/lib\(name).so", output: dir + "/\(name).pbm")
        tomls.append(toml)
    }
    return (dir, tomls)
}

let vendors: [UInt16] = [0x046d, 0x1d6b, 0x0781, 0x8087, 0x05ac, 0x045e, 0x0bda, 0x2109]

/// 4096 events in ring-slot layout.
func makeEvents() -> UnsafeMutableRawPointer {
    let slot = Int(PB_EVENT_MAX_SIZE)
    let events = UnsafeMutableRawPointer.allocate(byteCount: 4096 * slot, alignment: 16)
    events.initializeMemory(as: UInt8.self, repeating: 0, count: 4096 * slot)
    var rng = SplitMix64(state: 7)
    for i in 0..<4096 {
        let e = (events + i * slot).bindMemory(to: pb_event.self, capacity: 1)
        e.pointee.size = UInt32(MemoryLayout<pb_event>.size)
        e.pointee.total_size = e.pointee.size
        e.pointee.action = UInt16(PB_ACTION_ADD)
        e.pointee.vendor_id = vendors.randomElement(using: &rng)!
        e.pointee.product_id = UInt16.random(in: 0..<32, using: &rng)
        e.pointee.device_class = [0, 0, 0, 9, 3].randomElement(using: &rng)!
        e.pointee.interfaces_len = 1
        e.pointee.interfaces.0.iface_class = [3, 8, 9, 0xe, 0xff].randomElement(using: &rng)!
    }
    return events
}

/// The "specific" workload: 95% vid:pid, 5% vid:*.
func makeRules(plugins n: Int) -> [[MatchRule]] {
    var rng = SplitMix64(state: UInt64(n))
    return (0..<n).map { _ in
        (0..<Int.random(in: 1...3, using: &rng)).map { _ in
            var r = MatchRule(vendor: vendors.randomElement(using: &rng))
            if Int.random(in: 0..<20, using: &rng) > 0 { let p = UInt16.random(in: 0..<32, using: &rng); r.product = p...p }
            return r
        }
    }
}

let benchmarks: @Sendable () -> Void = {
    let (dir, tomls) = makePluginDirectory(count: 100)
    let cache = dir + "/registry.pbr"
    let startup = Benchmark.Configuration(metrics: [.wallClock, .mallocCountTotal], timeUnits: .milliseconds,
                                          maxDuration: .seconds(10), maxIterations: 200)

    Benchmark("Start-up 100 plugins: baseline parse plugin.toml + hash .so", configuration: startup) { benchmark in
        for _ in benchmark.scaledIterations {
            for (i, toml) in tomls.enumerated() {
                blackHole(try ManifestTOML.parse(contentsOf: toml))
                blackHole(try SHA256.hash(fileAt: dir + "/libbench-\(i).so"))
            }
        }
    }
    Benchmark("Start-up 100 plugins: cold (no registry cache)", configuration: startup) { benchmark in
        for _ in benchmark.scaledIterations {
            unlink(cache)
            let c = PluginCatalog.discover(dirs: [dir], registry: ManifestRegistry(cachePath: cache))
            precondition(c.loadable.count == 100)
        }
    }
    _ = PluginCatalog.discover(dirs: [dir], registry: ManifestRegistry(cachePath: cache))
    Benchmark("Start-up 100 plugins: warm (registry cache)", configuration: startup) { benchmark in
        for _ in benchmark.scaledIterations {
            let r = ManifestRegistry(cachePath: cache)
            let c = PluginCatalog.discover(dirs: [dir], registry: r)
            precondition(c.loadable.count == 100 && r.stats.manifestReads == 0)
        }
    }

    let events = makeEvents()
    let match = Benchmark.Configuration(metrics: [.wallClock, .mallocCountTotal], timeUnits: .nanoseconds,
                                        scalingFactor: .kilo, maxDuration: .seconds(3))
    for n in [1, 10, 100, 1000] {
        let index = MatchIndex(plugins: makeRules(plugins: n))
        Benchmark("Match per worker (firstMatch), \(n) plugins", configuration: match) { benchmark in
            var i = 0
            for _ in benchmark.scaledIterations {
                let e = UnsafePointer((events + (i & 4095) * Int(PB_EVENT_MAX_SIZE)).assumingMemoryBound(to: pb_event.self))
                blackHole(index.firstMatch(plugin: i % n, event: e))
                i &+= 7
            }
        }
        Benchmark("Match global (forEachMatch), \(n) plugins", configuration: match) { benchmark in
            var i = 0, hits = 0
            for _ in benchmark.scaledIterations {
                let e = UnsafePointer((events + (i & 4095) * Int(PB_EVENT_MAX_SIZE)).assumingMemoryBound(to: pb_event.self))
                index.forEachMatch(event: e) { _, _ in hits &+= 1 }
                i &+= 1
            }
            blackHole(hits)
        }
        let flat = makeRules(plugins: n).enumerated().flatMap { p, rules in rules.map { (p, $0.vendor?.lowerBound ?? 0, $0.product?.lowerBound) } }
        Benchmark("Match baseline: scan all rules, \(n) plugins", configuration: match) { benchmark in
            var i = 0, hits = 0
            flat.withUnsafeBufferPointer { rules in
                for _ in benchmark.scaledIterations {
                    let e = UnsafePointer((events + (i & 4095) * Int(PB_EVENT_MAX_SIZE)).assumingMemoryBound(to: pb_event.self))
                    var last = -1
                    for r in rules where r.0 != last && r.1 == e.pointee.vendor_id && (r.2 == nil || r.2! == e.pointee.product_id) {
                        last = r.0
                        hits &+= 1
                    }
                    i &+= 1
                }
            }
            blackHole(hits)
        }
    }
}
