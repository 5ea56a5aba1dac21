// plugboard-bench-isolation: process mode against thread mode (docs/benchmarks.md, "## Isolation").
//
// Every figure is measured in the same run for both modes, so the ratio process/thread is the
// result (these machines are noisy); medians of --runs runs.
//
//   1. Ring throughput, 1 -> 1 and 1 -> 4: a synthetic source (flow control on, nothing lapped)
//      of --events events to 1 or 4 counting plugins; events per second from start to drained.
//   2. Receipt -> callback latency, paced: one event every --gap-us µs; p50/p99 from each
//      worker's histogram (the same receipt timestamp, the same histogram code in both modes).
//   3. Start-up cost per plugin: --plugins counting plugins started at once (spawn or thread,
//      dlopen, negotiation, init), wall time / plugins.
//   4. Publish cost per record: the counting plugin publishing one record per event, minus the
//      same run without publishing, per record.
//
// Usage: plugboard-bench-isolation [--runs N] [--events N] [--plugins N] [--gap-us N]
import Foundation
import Logging
import PlugboardCore
import PlugboardSystem
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

let args = CommandLine.arguments
func option(_ name: String, _ fallback: Int) -> Int {
    guard let i = args.firstIndex(of: name), i + 1 < args.count, let v = Int(args[i + 1]) else { return fallback }
    return v
}
let runs = option("--runs", 5)
let events = option("--events", 500_000)
let startPlugins = option("--plugins", 16)
let gapMicroseconds = option("--gap-us", 200)
/// Events per batch handed to a plugin (64 unless given; the daemon's default, performance.batch_size, is 20).
let batch = option("--batch", 64)
/// `--only start`: only the start-up figures.
let only = args.firstIndex(of: "--only").flatMap { $0 + 1 < args.count ? args[$0 + 1] : nil }

let binDir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
let work = FileManager.default.temporaryDirectory.appendingPathComponent("pb-iso-bench-\(getpid())").path
try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: work) }
let workerExecutable = binDir + "/plugboard-worker"
guard access(workerExecutable, X_OK) == 0 else {
    fatalError("\(workerExecutable) is missing: build it with `swift build -c release --product plugboard-worker`")
}

// A counting plugin: each copy compiled under its own name (the host refuses duplicates).
let source = """
    #include <plugboard.h>
    #include <string.h>
    PB_HOST_API_DECLARE;
    #define api pb_api
    typedef struct { pb_host *h; int publish; unsigned long long n; } st;
    static st g;
    static pb_status init(pb_host *h, const pb_config *c, void **s) {
        (void)c; g.h = h; const char *p = api->config_get(h, "publish"); g.publish = p && p[0] == '1'; *s = &g; return PB_OK;
    }
    static pb_status events(void *s, const pb_event *const *ev, uint32_t n) {
        st *x = (st *)s;
        for (uint32_t i = 0; i < n; i++) {
            x->n += ev[i]->vendor_id;
            if (x->publish) api->publish(x->h, "seen", &ev[i]->sequence, sizeof ev[i]->sequence);
        }
        return PB_OK;
    }
    static const pb_plugin_api table = { sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR), NAME, "1.0.0",
                                         init, events, NULL, NULL, NULL, NULL };
    PB_PLUGIN_ENTRY(in, out) { PB_HOST_API_INIT(in); return pb_negotiate_default(in, out, &table); }
    """
try source.write(toFile: "\(work)/count.c", atomically: true, encoding: .utf8)
func build(_ name: String) -> String {
    let out = "\(work)/lib\(name).so"
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
    p.arguments = ["-std=gnu11", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-I", root + "/SDK/include",
                   "-DNAME=\"\(name)\"", "\(work)/count.c", "-o", out]
    try! p.run()
    p.waitUntilExit()
    precondition(p.terminationStatus == 0, "cc failed for \(name)")
    return out
}
/// `--only scaling`: the time per event per plugin with 1, 4, 16 and 64 plugins (issue 16's row
/// "cost per plugin flat from 1 to 64 plugins"), both modes.
let scalingCounts = [1, 4, 16, 64]
let maxPlugins = max(4, startPlugins, only == "scaling" ? scalingCounts.max()! : 0)
let libraries = (0..<maxPlugins).map { build("count\($0)") }

let logger: Logger = {
    var l = Logger(label: "bench")
    l.logLevel = .critical
    return l
}()

func runtime(_ mode: Isolation, ringSlots: Int = 4096, forkServer: Bool = true) -> Runtime {
    var o = RuntimeOptions()
    o.ringSlots = ringSlots
    o.batchSize = batch
    o.outputQueueRecords = 4 << 20
    var policy = ProcessPolicy(workerExecutable: workerExecutable)
    policy.account = nil  // keep the bench's user: the figures are about the boundary, not the uid
    policy.forkServer = forkServer
    o.processPolicy = policy
    return try! Runtime(options: o, logger: logger)
}

func add(_ rt: Runtime, _ mode: Isolation, _ i: Int, publish: Bool = false, path: String? = nil) {
    let config: PluginConfiguration = publish ? ["publish": "1"] : [:]
    let path = path ?? libraries[i]
    switch mode {
    case .thread:
        rt.addPlugin(try! PluginLoader.open(path), configuration: config, batchSize: batch)
    case .process:
        rt.addProcessPlugin(ProcessPluginSpec(path: path, name: "count\(i)", version: "1.0.0", configuration: config,
                                              batchSize: batch, deadline: nil, manifest: []))
    }
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

let clock = ContinuousClock()
/// Records accepted by the host per publishing run (a full queue refuses with PB_ERR_FULL; the plugin does not retry).
let publishAccepted = Mutex<[(Isolation, Int, Int)]>([])

/// Events per second from the source's start until every plugin drained.
func throughput(_ mode: Isolation, consumers: Int, publish: Bool = false) -> Double {
    let rt = runtime(mode)
    for i in 0..<consumers { add(rt, mode, i, publish: publish) }
    precondition(rt.startWorkers() == consumers, "\(rt.failures)")
    let t0 = clock.now
    rt.start(source: SyntheticSource(count: UInt64(events)))
    rt.waitUntilSourceDrained()
    let took = (clock.now - t0).inSeconds
    _ = rt.shutdownPlugins(until: .now + .seconds(10))
    if publish {
        let accepted = rt.outputQueue.drain(max: .max).count
        publishAccepted.withLock { $0.append((mode, accepted, events * consumers)) }
    }
    return Double(events) / took
}

/// A live-like source: one event every `gap` µs, `count` events.
final class Paced: EventSource {
    let count: Int
    let gap: UInt32
    init(count: Int, gap: UInt32) {
        self.count = count
        self.gap = gap
    }
    var name: String { "paced" }
    var isFinite: Bool { true }
    func run(_ context: SourceContext) throws {
        for i in 0..<count {
            if context.shouldStop { return }
            context.producer.publish { w in
                w.action = .change
                w.event.pointee.vendor_id = UInt16(truncatingIfNeeded: i)
                w.setString(.syspath, "/sys/devices/paced")
            }
            usleep(gap)
        }
    }
}

func latency(_ mode: Isolation) -> (p50: Double, p99: Double) {
    let rt = runtime(mode)
    add(rt, mode, 0)
    precondition(rt.startWorkers() == 1)
    rt.start(source: Paced(count: 5000, gap: UInt32(gapMicroseconds)))
    rt.waitUntilSourceDrained()
    let w = rt.workers[0]
    let p50 = Double(w.latency.quantile(0.50) ?? 0) / 1000, p99 = Double(w.latency.quantile(0.99) ?? 0) / 1000
    _ = rt.shutdownPlugins(until: .now + .seconds(10))
    return (p50, p99)
}

nonisolated(unsafe) var startRound = 0  // only touched by the main thread (top-level code)

/// Copies of the plugins at paths no earlier round used: a thread plugin's image is never
/// unmapped (`RTLD_NODELETE`), so a second `dlopen` of the same path only finds it mapped, and
/// the thread column would leave out the `dlopen` a daemon's start does. Each round starts from
/// files the process has not opened yet, in both modes.
func freshCopies() -> [String] {
    startRound += 1
    let dir = "\(work)/start\(startRound)"
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return (0..<startPlugins).map { i in
        let copy = "\(dir)/libcount\(i).so"
        try! FileManager.default.copyItem(atPath: libraries[i], toPath: copy)
        return copy
    }
}

/// Wall time of starting `startPlugins` plugins at once, per plugin, µs.
func startCost(_ mode: Isolation, forkServer: Bool = true) -> Double {
    let rt = runtime(mode, ringSlots: 64, forkServer: forkServer)
    let paths = freshCopies()
    let t0 = clock.now
    for i in 0..<startPlugins { add(rt, mode, i, path: paths[i]) }
    precondition(rt.startWorkers() == startPlugins, "\(rt.failures)")
    let took = (clock.now - t0).inSeconds
    rt.start(source: SyntheticSource(count: 1))
    rt.waitUntilSourceDrained()
    _ = rt.shutdownPlugins(until: .now + .seconds(10))
    return took * 1e6 / Double(startPlugins)
}

print("plugboard-bench-isolation: \(runs) runs, \(events) events, \(startPlugins) plugins at start, paced gap \(gapMicroseconds) µs")
if only == "scaling" {
    // The synthetic source at full speed with flow control (no loss), N counting plugins: wall
    // time / (events × N). The baseline is the same figure with one plugin, in the same run; the
    // host's voluntary context switches (getrusage) per 100,000 events say how often its threads slept.
    print("")
    print("| plugins | thread: ns per event per plugin | × 1 plugin | host voluntary switches / 100k events | process: ns per event per plugin | × 1 plugin |")
    print("|---:|---:|---:|---:|---:|---:|")
    var base: [Isolation: Double] = [:]
    for n in scalingCounts {
        var per: [Isolation: [Double]] = [:], switches: [Double] = []
        for _ in 0..<runs {
            for mode in [Isolation.thread, .process] {
                var before = rusage(), after = rusage()
                getrusage(RUSAGE_SELF.rawValue, &before)
                let rate = throughput(mode, consumers: n)
                getrusage(RUSAGE_SELF.rawValue, &after)
                per[mode, default: []].append(1e9 / rate / Double(n))
                if mode == .thread { switches.append(Double(after.ru_nvcsw - before.ru_nvcsw) * 100_000 / Double(events)) }
            }
        }
        let t = median(per[.thread]!), p = median(per[.process]!)
        if n == scalingCounts[0] { base = [.thread: t, .process: p] }
        print("| \(n) | \(String(format: "%.1f", t)) | \(String(format: "%.2f", t / base[.thread]!)) | \(Int(median(switches))) "
              + "| \(String(format: "%.1f", p)) | \(String(format: "%.2f", p / base[.process]!)) |")
    }
    exit(0)
}
print("")
print("| figure | thread mode | process mode | process / thread |")
print("|---|---|---|---|")
func row(_ name: String, _ unit: String, _ t: Double, _ p: Double, digits: Int = 0) {
    print("| \(name) | \(String(format: "%.\(digits)f", t)) \(unit) | \(String(format: "%.\(digits)f", p)) \(unit) | \(String(format: "%.2f", p / t)) |")
}
// The fork server starts with the first process plugin and serves the daemon's whole life: its
// own start (one exec of plugboard-worker) is measured here, once, apart from the per-plugin cost.
let firstStart = startCost(.process)
for consumers in only == nil ? [1, 4] : [] {
    var t: [Double] = [], p: [Double] = []
    for _ in 0..<runs {
        t.append(throughput(.thread, consumers: consumers))
        p.append(throughput(.process, consumers: consumers))
    }
    row("ring throughput 1 -> \(consumers)", "ev/s", median(t), median(p))
}
if only == nil {
    var t50: [Double] = [], t99: [Double] = [], p50: [Double] = [], p99: [Double] = []
    for _ in 0..<max(1, runs / 2) {
        let a = latency(.thread), b = latency(.process)
        t50.append(a.p50); t99.append(a.p99); p50.append(b.p50); p99.append(b.p99)
    }
    row("receipt -> callback p50 (paced)", "µs", median(t50), median(p50), digits: 1)
    row("receipt -> callback p99 (paced)", "µs", median(t99), median(p99), digits: 1)
}
do {
    var t: [Double] = [], p: [Double] = []
    for _ in 0..<runs {
        t.append(startCost(.thread))
        p.append(startCost(.process))
    }
    row("start-up per plugin (\(startPlugins) at once)", "µs", median(t), median(p))
    var spawned: [Double] = []
    for _ in 0..<(args.contains("--no-spawn") ? 0 : runs) { spawned.append(startCost(.process, forkServer: false)) }
    if !spawned.isEmpty { print("  (process mode with posix_spawn per worker, plugins.fork_server = false: \(Int(median(spawned))) µs per plugin, "
          + "\(String(format: "%.2f", median(spawned) / median(t)))× thread mode; the first start, the fork server's own start "
          + "included: \(Int(firstStart)) µs per plugin)") }
}
if only == nil {
    var t: [Double] = [], p: [Double] = []
    for _ in 0..<runs {
        let t0 = 1 / throughput(.thread, consumers: 1), t1 = 1 / throughput(.thread, consumers: 1, publish: true)
        let p0 = 1 / throughput(.process, consumers: 1), p1 = 1 / throughput(.process, consumers: 1, publish: true)
        t.append(max(0, t1 - t0) * 1e9)
        p.append(max(0, p1 - p0) * 1e9)
    }
    row("publish cost per record", "ns", median(t), median(p))
    for (mode, accepted, sent) in publishAccepted.withLock({ $0 }) where accepted < sent {
        print("  (\(mode.rawValue) mode: \(sent - accepted) of \(sent) records refused with PB_ERR_FULL: the plugin published faster than the host drained)")
    }
}
