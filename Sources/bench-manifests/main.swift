// Figures for docs/benchmarks.md `## Manifests`. Run with `make bench-manifests` (release build).
//
//   plugboard-bench-manifests [--so PATH] [--plugins N] [--iterations N]
//   plugboard-bench-manifests --signatures [--iterations N]   (Signatures.swift; `make bench-signatures`)
//   plugboard-bench-manifests --startup [--iterations N]      (Startup.swift; `make bench-startup`)
//   plugboard-bench-manifests --scaling [--iterations N]      (Startup.swift; `make bench-scaling`)
//
// 1. Start-up with N plugins (default 100): cold (no registry cache: read + validate every .pbm, hash
//    every .so, write the cache), warm (valid cache: stat + one mmap'd file), and the baseline of a host
//    without binary manifests (parse every plugin.toml with TOMLKit and hash every .so).
// 2. Match cost per event with 1, 10, 100, 1000 plugins: the per-worker question ("does plugin i want
//    this event?"), all N workers' questions added up, the global "which plugins want it" lookup, and the
//    baseline of scanning every rule of every plugin.
import CPlugboard
import Foundation
import PlugboardManifest
import PlugboardManifestTools

@inline(__always) func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func percentile(_ xs: [Double], _ p: Double) -> Double {
    let s = xs.sorted()
    return s[min(s.count - 1, Int(Double(s.count - 1) * p + 0.5))]
}

func fmt(_ v: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", v) }

if CommandLine.arguments.contains("--scaling") {
    let i = CommandLine.arguments.firstIndex(of: "--iterations").map { $0 + 1 }
    try daemonScalingBenchmark(events: 200_000, iterations: i.flatMap { Int(CommandLine.arguments[$0]) } ?? 5)
    exit(0)
}
if CommandLine.arguments.contains("--startup") {
    let i = CommandLine.arguments.firstIndex(of: "--iterations").map { $0 + 1 }
    try startupBenchmark(plugins: 100, iterations: i.flatMap { Int(CommandLine.arguments[$0]) } ?? 15)
    exit(0)
}
if CommandLine.arguments.contains("--signatures") {
    let i = CommandLine.arguments.firstIndex(of: "--iterations").map { $0 + 1 }
    try signatureBenchmark(plugins: 100, iterations: i.flatMap { Int(CommandLine.arguments[$0]) } ?? 15)
    exit(0)
}

var soPath = ".build/release/libusb-logger.so"
var pluginCount = 100
var iterations = 30
var args = CommandLine.arguments.dropFirst().makeIterator()
while let a = args.next() {
    switch a {
    case "--so": soPath = args.next() ?? soPath
    case "--plugins": pluginCount = Int(args.next() ?? "") ?? pluginCount
    case "--iterations": iterations = Int(args.next() ?? "") ?? iterations
    default: print("unknown argument \(a)"); exit(64)
    }
}
guard FileManager.default.fileExists(atPath: soPath) else {
    print("no plugin library at \(soPath): build it (`swift build -c release --product usb-logger`) or pass --so PATH")
    exit(1)
}

// MARK: 1. start-up

let dir = NSTemporaryDirectory() + "plugboard-bench-\(getpid())"
try FileManager.default.createDirectory(atPath: dir + "/src", withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: dir) }
var tomls: [String] = []
for i in 0..<pluginCount {
    let name = "bench-\(i)"
    let lib = dir + "/lib\(name).so"
    try FileManager.default.copyItem(atPath: soPath, toPath: lib)
    let toml = dir + "/src/\(name).toml"
    let text = """
    [plugin]
    name = "\(name)"
    version = "1.0.\(i)"
    library = "lib\(name).so"
    description = "benchmark plugin \(i)"

    [dependencies]
    after = [\(i > 0 ? "\"bench-\(i - 1)\"" : "")]

    [worker]
    batch = 64

    [[match]]
    vendor = "\(String(format: "%04x", 0x1000 + i))"
    product = "0001"

    [[match]]
    device_class = 9

    [config]
    output = "-"
    level = \(i)

    [exports]
    pb_plugin_entry = "pb_status (const pb_negotiate_in *, pb_negotiate_out *)"
    """
    try text.write(toFile: toml, atomically: false, encoding: .utf8)
    _ = try Packer.pack(tomlPath: toml, libraryPath: lib, output: dir + "/\(name).pbm")
    tomls.append(toml)
}
let soSize = (try? FileManager.default.attributesOfItem(atPath: soPath)[.size] as? Int) ?? 0
let cache = dir + "/registry.pbr"

var cold: [Double] = [], warm: [Double] = [], baseline: [Double] = []
var coldStats = ManifestRegistry.Stats(), warmStats = ManifestRegistry.Stats()
for _ in 0..<iterations {
    unlink(cache)
    var t = now()
    let r1 = ManifestRegistry(cachePath: cache)
    let c1 = PluginCatalog.discover(dirs: [dir], registry: r1)
    cold.append(Double(now() - t) / 1e6)
    precondition(c1.loadable.count == pluginCount, "setup broken: \(c1.candidates.compactMap(\.skip).first.map { "\($0)" } ?? "")")
    coldStats = r1.stats

    t = now()
    let r2 = ManifestRegistry(cachePath: cache)
    let c2 = PluginCatalog.discover(dirs: [dir], registry: r2)
    warm.append(Double(now() - t) / 1e6)
    precondition(c2.loadable.count == pluginCount)
    warmStats = r2.stats

    t = now()
    var n = 0
    for (i, toml) in tomls.enumerated() {
        let m = try ManifestTOML.parse(contentsOf: toml)
        let h = try SHA256.hash(fileAt: dir + "/libbench-\(i).so")
        n += m.rules.count + Int(h[0] & 1)
    }
    baseline.append(Double(now() - t) / 1e6)
    precondition(n > 0)
}
let baseMed = percentile(baseline, 0.5)
print("## start-up with \(pluginCount) plugins (.so of \(soSize) bytes each), \(iterations) iterations, ms per start\n")
print("| start | median ms | p90 ms | vs TOML baseline | manifests read | .so hashed | cache decodes |")
print("|---|---:|---:|---:|---:|---:|---:|")
print("| baseline: parse \(pluginCount) plugin.toml (TOMLKit) + hash \(pluginCount) .so | \(fmt(baseMed, 2)) | \(fmt(percentile(baseline, 0.9), 2)) | 1.00x | \(pluginCount) (TOML) | \(pluginCount) | 0 |")
for (label, xs, st) in [("cold: no registry cache (read .pbm, hash .so, write cache)", cold, coldStats),
                        ("warm: valid registry cache (stat + mmap one file)", warm, warmStats)] {
    let med = percentile(xs, 0.5)
    print("| \(label) | \(fmt(med, 2)) | \(fmt(percentile(xs, 0.9), 2)) | \(fmt(med / baseMed, 2))x | \(st.manifestReads) | \(st.libraryHashes) | \(st.cacheDecodes) |")
}
print("\nwarm vs cold: \(fmt(percentile(cold, 0.5) / percentile(warm, 0.5), 1))x faster")
do {
    let map = try MappedFile(path: soPath, check: .library, field: "bench")
    let t0 = now()
    var x: UInt8 = 0
    for _ in 0..<400 { x ^= SHA256.hash(map.bytes)[0] }
    let secs = Double(now() - t0) / 1e9
    print("SHA-256 (own implementation): \(fmt(Double(400 * map.count) / secs / 1e6, 0)) MB/s on the \(map.count)-byte .so (\(x & 0))\n")
}

// MARK: 2. match cost

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

/// Baseline: every rule of every plugin, flattened, checked one after the other.
struct NaiveRule {
    var plugin: Int32
    var vendor: Int32, product: Int32, deviceClass: Int16, interfaceClass: Int16
    var actions: UInt8
}

@inline(__always) func naiveMatches(_ r: NaiveRule, _ e: UnsafePointer<pb_event>) -> Bool {
    if r.vendor >= 0 && UInt16(r.vendor) != e.pointee.vendor_id { return false }
    if r.product >= 0 && UInt16(r.product) != e.pointee.product_id { return false }
    if r.actions != 0 && (r.actions & (1 << UInt8(min(e.pointee.action, 7)))) == 0 { return false }
    if r.deviceClass >= 0 && UInt8(r.deviceClass) != e.pointee.device_class { return false }
    if r.interfaceClass >= 0 {
        var found = false
        withUnsafeBytes(of: e.pointee.interfaces) { raw in
            for i in 0..<Int(e.pointee.interfaces_len) where raw[i * 3] == UInt8(r.interfaceClass) { found = true }
        }
        if !found { return false }
    }
    return true
}

let vendors: [UInt16] = [0x046d, 0x1d6b, 0x0781, 0x8087, 0x05ac, 0x045e, 0x0bda, 0x2109]
let eventCount = 4096
let slot = Int(PB_EVENT_MAX_SIZE)
let events = UnsafeMutableRawPointer.allocate(byteCount: eventCount * slot, alignment: 16)
events.initializeMemory(as: UInt8.self, repeating: 0, count: eventCount * slot)
var erng = SplitMix64(state: 7)
for i in 0..<eventCount {
    let e = (events + i * slot).bindMemory(to: pb_event.self, capacity: 1)
    e.pointee.size = UInt32(MemoryLayout<pb_event>.size)
    e.pointee.total_size = e.pointee.size
    e.pointee.action = UInt16([PB_ACTION_ADD, PB_ACTION_REMOVE, PB_ACTION_CHANGE].randomElement(using: &erng)!)
    e.pointee.vendor_id = vendors.randomElement(using: &erng)!
    e.pointee.product_id = UInt16.random(in: 0..<32, using: &erng)
    e.pointee.device_class = [0, 0, 0, 9, 3].randomElement(using: &erng)!
    e.pointee.interfaces_len = 1
    e.pointee.interfaces.0.iface_class = [3, 8, 9, 0xe, 0xff].randomElement(using: &erng)!
}
@inline(__always) func event(_ base: UnsafeMutableRawPointer, _ i: Int) -> UnsafePointer<pb_event> {
    UnsafePointer((base + (i & 4095) * Int(PB_EVENT_MAX_SIZE)).assumingMemoryBound(to: pb_event.self))
}

print("## match cost per event (\(eventCount) distinct events; 1-3 rules per plugin)\n")
print("workloads: mixed = 40% vid:pid, 30% vid:*, 20% device class, 10% interface class (8 vendors, so many plugins match each event);")
print("specific = 95% vid:pid, 5% vid:* over 8 vendors x 32 products (few plugins match an event)\n")
print("| workload | plugins | rules | per-worker check ns (firstMatch, one plugin) | all N workers ns/event | global lookup ns/event (forEachMatch) | baseline: scan all rules ns/event | baseline / global | matches/event |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for workload in ["mixed", "specific"] {
for n in [1, 10, 100, 1000] {
    var rng = SplitMix64(state: UInt64(n))
    var plugins: [[MatchRule]] = []
    var naive: [NaiveRule] = []
    for p in 0..<n {
        var rules: [MatchRule] = []
        for _ in 0..<Int.random(in: 1...3, using: &rng) {
            var r = MatchRule()
            func one(_ v: UInt16) -> ClosedRange<UInt16> { v...v }
            if workload == "specific" {
                r.vendor = one(vendors.randomElement(using: &rng)!)
                if Int.random(in: 0..<20, using: &rng) > 0 { r.product = one(UInt16.random(in: 0..<32, using: &rng)) }
            } else {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<4: r.vendor = one(vendors.randomElement(using: &rng)!); r.product = one(UInt16.random(in: 0..<32, using: &rng))
            case 4..<7: r.vendor = one(vendors.randomElement(using: &rng)!)
            case 7..<9: r.deviceClass = [3, 9].randomElement(using: &rng)
            default: r.interfaceClass = [3, 8, 0xe].randomElement(using: &rng)
            }
            }
            if Int.random(in: 0..<4, using: &rng) == 0 { r.actions = [.add, .remove] }
            rules.append(r)
            naive.append(NaiveRule(plugin: Int32(p), vendor: r.vendor.map { Int32($0.lowerBound) } ?? -1, product: r.product.map { Int32($0.lowerBound) } ?? -1,
                                   deviceClass: r.deviceClass.map(Int16.init) ?? -1, interfaceClass: r.interfaceClass.map(Int16.init) ?? -1,
                                   actions: r.actions.rawValue))
        }
        plugins.append(rules)
    }
    let index = MatchIndex(plugins: plugins)

    // Per-worker: the same question a worker asks for its own plugin, over all plugins in turn.
    let perWorkerOps = 4_000_000
    var sink = 0
    var t = now()
    for i in 0..<perWorkerOps {
        if let r = index.firstMatch(plugin: i % n, event: event(events, i &* 7)) { sink &+= r + 1 }
    }
    let perWorker = Double(now() - t) / Double(perWorkerOps)

    // All N workers on every event.
    let allEvents = max(2000, 2_000_000 / n)
    t = now()
    for i in 0..<allEvents {
        let e = event(events, i)
        for p in 0..<n where index.firstMatch(plugin: p, event: e) != nil { sink &+= 1 }
    }
    let allWorkers = Double(now() - t) / Double(allEvents)

    // Global lookup vs the baseline scan.
    let globalEvents = 1_000_000
    var matched = 0
    t = now()
    for i in 0..<globalEvents { index.forEachMatch(event: event(events, i)) { _, _ in matched &+= 1 } }
    let global = Double(now() - t) / Double(globalEvents)

    let naiveEvents = max(2000, 1_000_000 / n)
    var naiveMatched = 0
    t = now()
    naive.withUnsafeBufferPointer { rules in
        for i in 0..<naiveEvents {
            let e = event(events, i)
            var last: Int32 = -1
            for r in rules where r.plugin != last && naiveMatches(r, e) { last = r.plugin; naiveMatched &+= 1 }
        }
    }
    let naiveNs = Double(now() - t) / Double(naiveEvents)
    // Cross-check: both find the same number of matches per event on average.
    let g = Double(matched) / Double(globalEvents), b = Double(naiveMatched) / Double(naiveEvents)
    precondition(abs(g - b) <= max(0.05 * b, 0.05), "index and baseline disagree: \(g) vs \(b)")
    print("| \(workload) | \(n) | \(naive.count) | \(fmt(perWorker)) | \(fmt(allWorkers)) | \(fmt(global)) | \(fmt(naiveNs)) | \(fmt(naiveNs / global, 2))x | \(fmt(g, 2)) |")
    if sink == 42 { print("") } // keep the work observable
}
}
