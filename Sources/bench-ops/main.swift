// plugboard-bench-ops: the operations figures of docs/benchmarks.md ("## Operations").
//
//   1. Shutdown time of `plugboard serve` with 10 plugins and a full ring, against the same daemon
//      with an empty ring (baseline, same run): SIGTERM to exit, and the daemon's own report.
//   2. Resident memory growth over 1000 load/init/shutdown/unload cycles of a C plugin, against
//      1000 raw dlopen/dlclose cycles of the same .so (baseline, same run).
//   3. Hot reload under the watcher: a new build renamed into place, to its first callback, in
//      thread and process mode, against the floor of the same run (dlopen + init of that build);
//      every event seen once.
//
//   4. Crash restarts with and without a pre-warmed spare (plugins.prewarm), and the catch-up
//      after each recycle (plugins.recycle_after_events).
//
// Usage: plugboard-bench-ops [--runs N] [--cycles N] [--reloads N] [--restarts N]   (run by `make bench-ops`)
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

// MARK: 3. Hot reload: a new build renamed into place, to its first callback

/// A plugin that appends each event's sequence to `output`, notes the monotonic time of its first
/// callback in `output`.first-VERSION, and carries its count across a reload (save/restore).
let hotSource = """
    #include <plugboard.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <time.h>
    static const pb_host_api *api;
    typedef struct { FILE *out; char first[600]; int seen; unsigned long long count; } st;
    static pb_status on_init(pb_host *host, const pb_config *config, void **out) {
        (void)config;
        const char *path = api->config_get(host, "output");
        st *s = calloc(1, sizeof *s);
        if (!s || !path || !(s->out = fopen(path, "a"))) return PB_ERR_CONFIG;
        snprintf(s->first, sizeof s->first, "%s.first-%s", path, VERSION);
        *out = s;
        return PB_OK;
    }
    static pb_status on_events(void *p, const pb_event *const *events, uint32_t count) {
        st *s = p;
        if (!s->seen) {
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            FILE *f = fopen(s->first, "w");
            if (f) { fprintf(f, "%lld\\n", (long long)t.tv_sec * 1000000000LL + t.tv_nsec); fclose(f); }
            s->seen = 1;
        }
        for (uint32_t i = 0; i < count; i++) fprintf(s->out, "%llu\\n", (unsigned long long)events[i]->sequence);
        fflush(s->out);
        s->count += count;
        return PB_OK;
    }
    static pb_status save(void *p, void *buf, size_t cap, size_t *len) {
        st *s = p; *len = sizeof s->count;
        if (cap < *len) return PB_ERR_FULL;
        memcpy(buf, &s->count, sizeof s->count);
        return PB_OK;
    }
    static pb_status restore(void *p, const void *data, size_t len) {
        st *s = p;
        if (len != sizeof s->count) return PB_ERR_INVALID;
        memcpy(&s->count, data, len);
        return PB_OK;
    }
    static void on_shutdown(void *p) { st *s = p; fclose(s->out); free(s); }
    static const pb_plugin_api plugin = {sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR), "hot", VERSION,
                                         on_init, on_events, NULL, save, restore, on_shutdown};
    PB_PLUGIN_ENTRY(in, out) {
        pb_status r = pb_negotiate_default(in, out, &plugin);
        if (r == PB_OK) api = in->host_api;
        return r;
    }
    """

/// A live source: one event every `gap` microseconds until stopped.
final class Steady: EventSource {
    let gap: UInt32
    init(gap: UInt32) { self.gap = gap }
    var name: String { "steady" }
    var isFinite: Bool { false }
    func run(_ context: SourceContext) throws {
        while !context.shouldStop {
            context.producer.publish { w in
                w.action = .change
                w.setString(.syspath, "/sys/devices/steady")
            }
            usleep(gap)
        }
    }
}

func monotonicNanoseconds() -> Int64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec)
}

let reloads = option("--reloads", 20)
let rssReloads = option("--rss-reloads", 300)
let hotC = work + "/hot.c"
try! hotSource.write(toFile: hotC, atomically: true, encoding: .utf8)
let workerExecutable = binDir + "/plugboard-worker"

/// Renames `reloads` new builds into place under `run --watch`'s watcher (its default quiet
/// period) and returns, per reload, rename → the new build's first callback (ms); and the raw
/// floor of the same run: dlopen + negotiate + init of the new build, no ring, no handover (ms).
@MainActor func reloadLatencies(process: Bool) -> (latencies: [Double], floor: [Double], lost: Int, duplicated: Int,
                                         rss: (before: Int, after: Int)) {
    let dir = work + "/hot-\(process ? "process" : "thread")"
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let output = dir + ".out"
    cc(hotC, dir + "/libhot.so", ["VERSION=\"1\""])
    for v in 2...(reloads + 1) { cc(hotC, "\(work)/.hot-\(v).so", ["VERSION=\"\(v)\""]) }
    var o = RuntimeOptions()
    o.ringSlots = 4096
    o.pluginConfiguration = ["hot": ["output": output]]
    var policy = ProcessPolicy(workerExecutable: workerExecutable)
    policy.account = nil
    o.processPolicy = policy
    let rt = try! Runtime(options: o, logger: logger)
    if process {
        rt.addProcessPlugin(ProcessPluginSpec(path: dir + "/libhot.so", name: "hot", version: "1", configuration: ["output": output],
                                              batchSize: 64, deadline: nil, manifest: []))
    } else {
        rt.addPlugin(try! PluginLoader.open(dir + "/libhot.so"))
    }
    precondition(rt.startWorkers() == 1, "\(rt.failures)")
    rt.start(source: Steady(gap: 200))
    let watcher = try! PluginWatcher(runtime: rt, directories: [dir], logger: logger)
    var latencies: [Double] = [], floor: [Double] = []
    for v in 2...(reloads + 1) {
        usleep(100_000)
        let first = "\(output).first-\(v)"
        let t0 = monotonicNanoseconds()
        precondition(rename("\(work)/.hot-\(v).so", dir + "/libhot.so") == 0)
        let deadline = ContinuousClock.now + .seconds(30)
        while !FileManager.default.fileExists(atPath: first), ContinuousClock.now < deadline { usleep(200) }
        usleep(2000)  // let the plugin finish writing the file
        guard let text = try? String(contentsOfFile: first, encoding: .utf8), let ns = Int64(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            fatalError("build \(v) never ran")
        }
        latencies.append(Double(ns - t0) / 1e6)
        // The floor: what any reload must do at least, on the same file, now.
        let f0 = monotonicNanoseconds()
        let plugin = try! PluginLoader.open(dir + "/libhot.so")
        let context = PluginContext(name: plugin.name, configuration: ["output": work + "/floor.out"], outputQueue: queue,
                                    deviceTable: devices, logger: logger)
        try! plugin.initialize(context: context)
        floor.append(Double(monotonicNanoseconds() - f0) / 1e6)
        plugin.shutdown()
        _ = plugin.unload()
    }
    // The host's memory over many more reloads (two builds in turn, each copied beside and renamed
    // over), after the timed ones warmed it up.
    cc(hotC, "\(work)/hot-a.so", ["VERSION=\"a\""])
    cc(hotC, "\(work)/hot-b.so", ["VERSION=\"b\""])
    let rssBefore = rss()
    for i in 0..<rssReloads {
        let done = watcher.counts.reloads.load(ordering: .relaxed) + watcher.counts.failures.load(ordering: .relaxed)
        try? FileManager.default.removeItem(atPath: "\(dir)/.next.so")
        try! FileManager.default.copyItem(atPath: "\(work)/hot-\(i % 2 == 0 ? "a" : "b").so", toPath: "\(dir)/.next.so")
        precondition(rename("\(dir)/.next.so", dir + "/libhot.so") == 0)
        let deadline = ContinuousClock.now + .seconds(30)
        while watcher.counts.reloads.load(ordering: .relaxed) + watcher.counts.failures.load(ordering: .relaxed) == done,
              ContinuousClock.now < deadline { usleep(200) }
    }
    let rssAfter = rss()
    precondition(watcher.counts.failures.load(ordering: .relaxed) == 0, "a reload failed")
    watcher.stop()
    _ = rt.stop(deadline: .seconds(10))
    let seen = ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { UInt64($0) }
    let published = rt.ring.published
    let unique = Set(seen)
    let lost = (1...published).filter { !unique.contains($0) }.count
    return (latencies, floor, lost, seen.count - unique.count, (rssBefore, rssAfter))
}

print("\n### Hot reload: a new build renamed into place under the watcher, to its first callback (\(reloads) reloads, an event every 200 µs)\n")
print("| Mode | rename → first callback p50 (ms) | p95 | max | floor: dlopen+init p50 (ms) | p50 / floor | events lost | duplicated |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
var rssRows: [String] = []
for process in [false, true] {
    let r = reloadLatencies(process: process)
    print(String(format: "| %@ | %.2f | %.2f | %.2f | %.3f | %.1f× | %d | %d |", process ? "process" : "thread",
                 percentile(r.latencies, 0.5), percentile(r.latencies, 0.95), r.latencies.max() ?? 0,
                 percentile(r.floor, 0.5), percentile(r.latencies, 0.5) / percentile(r.floor, 0.5), r.lost, r.duplicated))
    rssRows.append("| \(process ? "process" : "thread") | \(r.rss.before / 1024) | \(r.rss.after / 1024) | \((r.rss.after - r.rss.before) / 1024) | \(String(format: "%.2f", Double(r.rss.after - r.rss.before) / 1024 / Double(rssReloads))) |")
}
print("\n### The host's resident memory over \(rssReloads) more reloads (two builds in turn, renamed into place)\n")
print("| Mode | RSS before (KiB) | RSS after (KiB) | growth (KiB) | per reload (KiB) |")
print("|---|---:|---:|---:|---:|")
rssRows.forEach { print($0) }

// MARK: 4. Crash restarts with and without a pre-warmed spare; recycles

let restartRuns = option("--restarts", 20)
let canaryC = root + "/Tests/TestPlugins/canary/canary.c"
let canarySO = work + "/libcanary.so"
cc(canaryC, canarySO, ["CANARY_VERSION=\"1.0.0\""])

/// Each worker process of the canary plugin crashes 150 ms after its first event (`crash_after_ms`),
/// `restartRuns` times: per restart, the crash → the new process's first callback (ms), read from
/// the CLOCK_MONOTONIC stamps the plugin writes; the backoff is its minimum, 1 ms.
@MainActor func restartGaps(prewarm: Bool) -> [Double] {
    let output = work + "/restart-\(prewarm).out"
    var o = RuntimeOptions()
    var policy = ProcessPolicy(workerExecutable: workerExecutable)
    policy.account = nil
    policy.prewarm = prewarm
    policy.restartBackoff = .milliseconds(1)
    policy.crashBurst = 1_000_000
    // Crashes 150 ms apart never pile up in a 100 ms window: every restart waits the base 1 ms.
    policy.crashInterval = .milliseconds(100)
    o.processPolicy = policy
    let rt = try! Runtime(options: o, logger: logger)
    rt.addProcessPlugin(ProcessPluginSpec(path: canarySO, name: "canary", version: "1", configuration: ["output": output, "crash_after_ms": "150"],
                                          batchSize: 16, deadline: nil, manifest: []))
    precondition(rt.startWorkers() == 1, "\(rt.failures)")
    rt.start(source: Steady(gap: 200))
    let deadline = ContinuousClock.now + .seconds(300)
    while (rt.pluginStats.first?.restarts ?? 0) < UInt64(restartRuns), ContinuousClock.now < deadline { usleep(10_000) }
    usleep(300_000)
    _ = rt.stop(deadline: .seconds(10))
    let lines = ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").split(separator: "\n")
    var gaps: [Double] = [], crash: Int64?
    for l in lines {
        let f = l.split(separator: " ")
        guard f.count == 2, let t = Int64(f[1]) else { continue }
        if f[0] == "CRASH" { crash = t } else if f[0] == "FIRST", let c = crash { gaps.append(Double(t - c) / 1e6); crash = nil }
    }
    return Array(gaps.prefix(restartRuns))
}

/// Recycles after every 200 events with an event every 200 µs: per recycle, the time the new
/// worker needs to be level with the head again after the swap. The whole recycle (spawn,
/// dlopen, init) happens beside the running worker, so only the handover shows here.
@MainActor func recyclePauses(prewarm: Bool) -> [Double] {
    let dir = work + "/recycle-\(prewarm)"
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let output = dir + ".out"
    cc(hotC, dir + "/libhot.so", ["VERSION=\"1\""])
    var o = RuntimeOptions()
    var policy = ProcessPolicy(workerExecutable: workerExecutable)
    policy.account = nil
    policy.prewarm = prewarm
    o.processPolicy = policy
    o.recycle = RecyclePolicy(afterEvents: 200)
    let rt = try! Runtime(options: o, logger: logger)
    rt.addProcessPlugin(ProcessPluginSpec(path: dir + "/libhot.so", name: "hot", version: "1", configuration: ["output": output],
                                          batchSize: 16, deadline: nil, manifest: []))
    precondition(rt.startWorkers() == 1, "\(rt.failures)")
    rt.start(source: Steady(gap: 200))
    // Per swap: from the moment the new worker is in place (it has its predecessor's cursor
    // and state) until it has caught up with the head of that moment: the handover pause plus
    // working off what queued up during it.
    var pauses: [Double] = []
    var last = (rt.workers.first as? ProcessWorker)?.pid ?? 0
    let deadline = ContinuousClock.now + .seconds(300)
    while pauses.count < restartRuns, ContinuousClock.now < deadline {
        usleep(200)
        guard let w = rt.workers.first as? ProcessWorker, w.pid != last, w.pid != 0 else { continue }
        last = w.pid
        let t0 = monotonicNanoseconds()
        let target = rt.ring.published
        while w.stats.lag > 0 && rt.ring.published - w.stats.lag < target, ContinuousClock.now < deadline { usleep(50) }
        pauses.append(Double(monotonicNanoseconds() - t0) / 1e6)
    }
    _ = rt.stop(deadline: .seconds(10))
    return pauses
}

print("\n### Crash restarts: the crash → the new worker process's first callback (\(restartRuns) restarts, backoff 1 ms, release build)\n")
print("| plugins.prewarm | p50 (ms) | p95 | max | vs without |")
print("|---|---:|---:|---:|---:|")
let cold = restartGaps(prewarm: false)
let warm = restartGaps(prewarm: true)
for (name, g) in [("false (spawn, dlopen, init on the restart path)", cold), ("true (the spare is adopted)", warm)] {
    print(String(format: "| %@ | %.2f | %.2f | %.2f | %.2f× |", name, percentile(g, 0.5), percentile(g, 0.95), g.max() ?? 0,
                 percentile(g, 0.5) / percentile(cold, 0.5)))
}
print("\n### Recycles (every 200 events, an event every 200 µs): catching up after the swap (\(restartRuns) recycles each)\n")
print("| plugins.prewarm | p50 (ms) | p95 | max |\n|---|---:|---:|---:|")
for prewarm in [false, true] {
    let pauses = recyclePauses(prewarm: prewarm)
    print(String(format: "| %@ | %.2f | %.2f | %.2f |", prewarm ? "true" : "false", percentile(pauses, 0.5), percentile(pauses, 0.95), pauses.max() ?? 0))
}
