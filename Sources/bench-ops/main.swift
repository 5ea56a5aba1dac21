// plugboard-bench-ops: the operations figures of docs/benchmarks.md ("## Operations").
//
//   1. Shutdown time of `plugboard serve` with 10 plugins and a full ring, against the same daemon
//      with an empty ring (baseline, same run): SIGTERM to exit, and the daemon's own report.
//   2. Resident memory growth over 1000 load/init/shutdown/unload cycles of a C plugin, against
//      1000 raw dlopen/dlclose cycles of the same .so (baseline, same run).
//
// Usage: plugboard-bench-ops [--runs N] [--cycles N]   (run by `make bench-ops`)
import Foundation
import Logging
import PlugboardCore
import PlugboardDaemon

#if canImport(Glibc)
import Glibc
#endif

let args = CommandLine.arguments
func option(_ name: String, _ fallback: Int) -> Int {
    guard let i = args.firstIndex(of: name), i + 1 < args.count, let v = Int(args[i + 1]) else { return fallback }
    return v
}
let runs = option("--runs", 20)
let cycles = option("--cycles", 1000)

let binDir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
let work = FileManager.default.temporaryDirectory.appendingPathComponent("pb-ops-bench-\(getpid())").path
try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: work) }

func sh(_ exe: String, _ arguments: [String]) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = arguments
    try! p.run()
    p.waitUntilExit()
    precondition(p.terminationStatus == 0, "\(exe) \(arguments.joined(separator: " ")) failed")
}

func cc(_ source: String, _ out: String, _ defines: [String] = []) {
    sh("/usr/bin/cc", ["-std=gnu11", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-I", root + "/SDK/include",
                       source, "-o", out] + defines.map { "-D" + $0 })
}

func httpGet(port: Int, path: String) -> String? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
    let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard ok == 0 else { return nil }
    _ = "GET \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".withCString { send(fd, $0, strlen($0), 0) }
    var data = [UInt8](), buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buf, buf.count, 0)
        if n <= 0 { break }
        data += buf[0..<n]
    }
    return String(decoding: data, as: UTF8.self)
}

func percentile(_ xs: [Double], _ p: Double) -> Double {
    let s = xs.sorted()
    return s[min(s.count - 1, Int((p * Double(s.count)).rounded(.up)) - 1)]
}

// MARK: 1. Shutdown time

let pluginDir = work + "/plugins"
try FileManager.default.createDirectory(atPath: pluginDir, withIntermediateDirectories: true)
for i in 0..<10 { cc(root + "/Tests/TestPlugins/recorder/recorder.c", pluginDir + "/libbench\(i).so", ["RECORDER_NAME=\"bench\(i)\""]) }

/// Runs in which the first plugin was lapped (it wrote a RESYNC) instead of draining the ring.
nonisolated(unsafe) var lappedRuns = 0  // only touched by the main thread (top-level code)

/// One daemon run: start, wait until `fullRing` (ring fill 1) or idle, SIGTERM, time to exit.
func shutdownOnce(fullRing: Bool) -> (wall: Double, reported: Double, stuck: Bool) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: binDir + "/plugboard")
    // The bench builds its plugins with cc, without manifests: load every .so (development mode).
    // The ring is pinned at the 2048 slots the published figures used (the default is now 4096).
    var a = ["serve", "--log-level", "error", "--set", "plugins.manifests=false", "--set", "performance.event_buffer_size=2048",
             "--listen", "127.0.0.1:0", "--plugins", pluginDir,
             "--source", fullRing ? "synthetic:1000000000" : "synthetic:1"]
    for i in 0..<10 {
        a += ["--plugin-config", "bench\(i).output=\(i == 0 ? work + "/bench0.txt" : "/dev/null")"]
        if fullRing { a += ["--plugin-config", "bench\(i).delay_us=500"] }
    }
    p.arguments = a
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try! p.run()
    // The listening line gives the port.
    var text = ""
    var port = 0
    while port == 0 {
        let d = out.fileHandleForReading.availableData
        if d.isEmpty { fatalError("daemon exited before listening") }
        text += String(decoding: d, as: UTF8.self)
        if let line = text.split(separator: "\n").first(where: { $0.contains("listening on http://") }) {
            port = Int(line.split(separator: ":").last!)!
        }
    }
    func metric(_ name: String) -> Double? {
        guard let page = httpGet(port: port, path: "/metrics") else { return nil }
        for line in page.split(separator: "\n") where line.hasPrefix(name + " ") { return Double(line.split(separator: " ")[1]) }
        return nil
    }
    if fullRing {
        while metric("plugboard_ring_fill_ratio") != 1 { usleep(2000) }
    } else {
        while metric("plugboard_plugin_events_total{plugin=\"bench9\"}") != 1 { usleep(2000) }
    }
    let t0 = ContinuousClock.now
    kill(p.processIdentifier, SIGTERM)
    // The end of the daemon's stdout is its exit (Foundation's waitUntilExit polls every 50 ms).
    text += String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    let wall = ContinuousClock.now - t0
    p.waitUntilExit()
    if let rec = try? String(contentsOfFile: work + "/bench0.txt", encoding: .utf8), rec.contains("RESYNC") { lappedRuns += 1 }
    var reported = Double.nan
    if let line = text.split(separator: "\n").first(where: { $0.contains("shutdown complete in") }) {
        let f = line.split(separator: " ")
        if let v = Double(f[f.count - 2]) { reported = f.last == "s" ? v * 1000 : v }
    }
    return (Double(wall.components.attoseconds) / 1e15 + Double(wall.components.seconds) * 1000, reported, p.terminationStatus != 0)
}

var table: [(String, [Double], [Double])] = []
for fullRing in [false, true] {
    var walls: [Double] = [], reported: [Double] = []
    for _ in 0..<runs {
        let r = shutdownOnce(fullRing: fullRing)
        precondition(!r.stuck, "a shutdown did not complete")
        walls.append(r.wall)
        reported.append(r.reported)
    }
    if fullRing { print("full-ring runs in which plugin bench0 was lapped at shutdown instead of draining: \(lappedRuns) of \(runs)") }
    lappedRuns = 0
    table.append((fullRing ? "10 plugins, full ring (2048 slots, 0.5 ms per batch of 20)" : "Baseline: 10 plugins, empty ring", walls, reported))
}
print("\n### Shutdown time (\(runs) runs each)\n")
print("| Scenario | SIGTERM→exit p50 (ms) | p95 | max | daemon-reported p50 (ms) | p95 |")
print("|---|---:|---:|---:|---:|---:|")
for (name, w, r) in table {
    print("| \(name) | " + String(format: "%.1f | %.1f | %.1f | %.2f | %.2f |", percentile(w, 0.5), percentile(w, 0.95), w.max()!,
                                        percentile(r, 0.5), percentile(r, 0.95)))
}
print(String(format: "\nRatio full/empty, SIGTERM→exit p95: %.2f×", percentile(table[1].1, 0.95) / percentile(table[0].1, 0.95)))

// MARK: 2. Resident memory over load/unload cycles

let minimal = work + "/libminimal.so"
cc(root + "/SDK/examples/minimal_plugin.c", minimal)
func rss() -> Int { DaemonMetrics.residentBytes() ?? 0 }

func rawCycle() {
    let h = dlopen(minimal, RTLD_NOW | RTLD_LOCAL)!
    _ = dlsym(h, "pb_plugin_entry")
    dlclose(h)
}
let queue = OutputQueue()
let devices = DeviceTable()
var logger = Logger(label: "bench")
logger.logLevel = .critical
var closedEveryTime = true
@MainActor func plugboardCycle() {
    let plugin = try! PluginLoader.open(minimal)
    let context = PluginContext(name: plugin.name, configuration: [:], outputQueue: queue, deviceTable: devices, logger: logger)
    try! plugin.initialize(context: context)
    plugin.shutdown()
    if !plugin.unload() { closedEveryTime = false }
}

@MainActor func growth(_ cycle: () -> Void) -> (before: Int, after: Int) {
    for _ in 0..<100 { cycle() }  // warm-up: malloc arenas, the dynamic linker's caches
    let before = rss()
    for _ in 0..<cycles { cycle() }
    return (before, rss())
}
let raw = growth(rawCycle)
let pb = growth(plugboardCycle)
_ = queue.drain()
print("\n### Resident memory over \(cycles) load/unload cycles of a C plugin (after 100 warm-up cycles)\n")
print("| Cycle | RSS before (KiB) | RSS after (KiB) | growth (KiB) |")
print("|---|---:|---:|---:|")
print("| Baseline: dlopen+dlsym+dlclose | \(raw.before / 1024) | \(raw.after / 1024) | \((raw.after - raw.before) / 1024) |")
print("| Plugboard: open+negotiate+init+shutdown+unload (dlclose) | \(pb.before / 1024) | \(pb.after / 1024) | \((pb.after - pb.before) / 1024) |")
print("\nThe plugin was dlclose'd every cycle: \(closedEveryTime)")
