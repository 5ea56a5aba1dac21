// plugboard-bench-batching: adaptive batching against fixed batch sizes, same run
// (docs/benchmarks.md, "## Batching"; docs/operations.md, "Memory and batching").
//
// The plugin is a no-op in C (it sums the sequences), so what is measured is the batching itself.
// Modes, interleaved within each run:
//
//   adaptive, ceiling N     the real worker (thread, or a worker process): each call gets what
//                           is waiting, up to N. N = 1 is "no batching"; 20 is the default.
//   fixed 20, linger 1 ms   a strawman in this file, on the same ring consumer and the same
//                           plugin: a call waits until 20 events are waiting, or until the first
//                           waiting one is 1 ms old (Kafka's linger.ms). What "batch_size = 20"
//                           would mean if batches were waited for.
//
// Two loads:
//   idle        a live source publishing one event every 500 µs (woken per event): the latency
//               from the event's timestamp to the callback's start, p50 and p99 (the worker's own
//               histogram), and the batches' mean size.
//   burst       a finite source of --events events published as fast as the ring's flow control
//               lets it (woken once per 64): the wall time from start until the plugin read the
//               last, as events per second, and the mean batch.
//
// Usage: plugboard-bench-batching [--runs N] [--events N] [--idle N]   (run by `make bench-batching`)
import CPlugboard
import CPlugboardSupport
import Foundation
import Logging
import PlugboardCore
import PlugboardSystem

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
let idleEvents = option("--idle", 1000)

let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
let workerExecutable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("plugboard-worker").path
let work = FileManager.default.temporaryDirectory.appendingPathComponent("pb-batch-bench-\(getpid())").path
try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: work) }

let noop = """
#include <plugboard.h>
static volatile uint64_t sum;
static pb_status init(pb_host *h, const pb_config *c, void **s) { (void)h; (void)c; *s = 0; return PB_OK; }
static pb_status events(void *s, const pb_event *const *ev, uint32_t n) {
    (void)s; for (uint32_t i = 0; i < n; i++) sum += ev[i]->sequence; return PB_OK;
}
static pb_status resync(void *s, const pb_event *const *d, uint32_t n) { (void)s; (void)d; (void)n; return PB_OK; }
static void shutdown_(void *s) { (void)s; }
static const pb_plugin_api api = {sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR), "noop", "0.1.0",
                                  init, events, resync, 0, 0, shutdown_};
PB_PLUGIN_ENTRY(in, out) { return pb_negotiate_default(in, out, &api); }
"""
try noop.write(toFile: work + "/noop.c", atomically: true, encoding: .utf8)
do {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
    p.arguments = ["-std=gnu11", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-I", root + "/SDK/include",
                   work + "/noop.c", "-o", work + "/libnoop.so"]
    try p.run()
    p.waitUntilExit()
    precondition(p.terminationStatus == 0, "cc failed")
}
let plugin = work + "/libnoop.so"
let logger = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }

/// `count` events as fast as flow control allows, woken once per 64.
final class Burst: EventSource {
    let count: Int
    init(_ count: Int) { self.count = count }
    var name: String { "burst" }
    var isFinite: Bool { true }
    func run(_ context: SourceContext) throws {
        for i in 0..<count {
            context.producer.publishWithoutWake { w in
                w.action = .change
                w.setString(.syspath, "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1")
            }
            if i & 63 == 63 { context.producer.flush() }
        }
        context.producer.flush()
    }
}

/// One event every `gap`, each woken: an idle host.
final class Trickle: EventSource {
    let count: Int
    let gap: Duration
    init(_ count: Int, gap: Duration) {
        self.count = count
        self.gap = gap
    }
    var name: String { "trickle" }
    var isFinite: Bool { true }
    func run(_ context: SourceContext) throws {
        let clock = ContinuousClock()
        var next = clock.now
        for _ in 0..<count {
            next += gap
            _ = context.producer.publish { w in
                w.action = .change
                w.setString(.syspath, "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1")
            }
            let wait = next - clock.now
            if wait > .zero { sleepThread(for: wait) }
        }
    }
}

enum Mode {
    case adaptive(ceiling: Int, isolation: Isolation)
    case fixed(size: Int, linger: Duration)

    var name: String {
        switch self {
        case .adaptive(let c, let i): "adaptive, ceiling \(c) (\(i.rawValue))"
        case .fixed(let s, let l): "fixed \(s), linger \(l.shortText) (thread)"
        }
    }
}

struct Result {
    var seconds: Double
    var meanBatch: Double
    var p50: UInt64
    var p99: UInt64
}

/// The strawman: waits for `size` events (or `linger` after the first) before each call.
final class FixedBatcher: @unchecked Sendable {
    // @unchecked: the counters are written by the batcher's thread only and read after `done`.
    let done = DispatchSemaphore(value: 0)
    var batches: UInt64 = 0
    var delivered: UInt64 = 0
    let latency = LatencyHistogram()

    func run(_ consumer: RingConsumer, _ ring: EventRing, plugin: LoadedPlugin, size: Int, linger: Duration) {
        let buffer = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: size)
        defer { buffer.deallocate() }
        let lingerNs = UInt64(linger.nanoseconds)
        var firstSeen: UInt64 = 0
        loop: while true {
            let waiting = ring.published &- consumer.cursor
            if waiting == 0 {
                if ring.isClosed && ring.published == consumer.cursor { break }
                consumer.wait(timeoutNanoseconds: 10_000_000)
                continue
            }
            let now = pbs_monotonic_ns()
            if firstSeen == 0 { firstSeen = now }
            if waiting < UInt64(size) && !ring.isClosed && now &- firstSeen < lingerNs {
                pbs_cpu_relax()
                continue
            }
            switch consumer.poll(max: size, into: buffer) {
            case .events(let n):
                let start = pbs_monotonic_ns()
                for i in 0..<n { latency.record(start &- buffer[i]!.pointee.timestamp_ns) }
                _ = plugin.deliver(buffer, count: UInt32(n))
                _ = consumer.commit()
                batches += 1
                delivered += UInt64(n)
                firstSeen = 0
            case .finished: break loop
            default: continue
            }
        }
        consumer.deregister()
        done.signal()
    }
}

func measure(_ mode: Mode, source: EventSource, expected: Int) throws -> Result {
    var options = RuntimeOptions()
    options.ringSlots = 4096
    let policy = ProcessPolicy(workerExecutable: workerExecutable)
    options.processPolicy = policy
    let clock = ContinuousClock()
    switch mode {
    case .adaptive(let ceiling, let isolation):
        options.batchSize = ceiling
        let rt = try Runtime(options: options, logger: logger)
        switch isolation {
        case .thread: rt.addPlugin(try PluginLoader.open(plugin))
        case .process:
            rt.addProcessPlugin(ProcessPluginSpec(path: plugin, name: "noop", version: "1", configuration: [:], batchSize: ceiling,
                                                  deadline: nil, manifest: []))
        }
        precondition(rt.startWorkers() == 1, "\(rt.failures.map(\.description))")
        let w = rt.workers[0]
        let t0 = clock.now
        rt.start(source: source)
        rt.waitUntilSourceDrained()
        let took = clock.now - t0
        _ = rt.shutdownPlugins(until: nil)
        let b = w.batchSizes
        precondition(b.events == UInt64(expected), "every event delivered: \(b)")
        return Result(seconds: took.inSeconds, meanBatch: Double(b.events) / Double(max(1, b.batches)),
                      p50: w.latency.quantile(0.5) ?? 0, p99: w.latency.quantile(0.99) ?? 0)
    case .fixed(let size, let linger):
        let rt = try Runtime(options: options, logger: logger)
        let loaded = try PluginLoader.open(plugin)
        try loaded.initialize(context: PluginContext(name: "noop", configuration: [:], outputQueue: rt.outputQueue,
                                                     deviceTable: rt.deviceTable, logger: logger))
        let consumer = rt.ring.makeConsumer(name: "fixed")
        let f = FixedBatcher()
        let thread = NativeThread(name: "pb-fixed") { f.run(consumer, rt.ring, plugin: loaded, size: size, linger: linger) }
        let t0 = clock.now
        rt.start(source: source)
        f.done.wait()
        let took = clock.now - t0
        _ = thread.join()
        _ = rt.stop(deadline: .seconds(5))
        precondition(f.delivered == UInt64(expected), "every event delivered: \(f.delivered)")
        return Result(seconds: took.inSeconds, meanBatch: Double(f.delivered) / Double(max(1, f.batches)),
                      p50: f.latency.quantile(0.5) ?? 0, p99: f.latency.quantile(0.99) ?? 0)
    }
}

let modes: [Mode] = [
    .adaptive(ceiling: 20, isolation: .thread), .adaptive(ceiling: 1, isolation: .thread), .adaptive(ceiling: 256, isolation: .thread),
    .fixed(size: 20, linger: .milliseconds(1)),
    .adaptive(ceiling: 20, isolation: .process), .adaptive(ceiling: 1, isolation: .process), .adaptive(ceiling: 256, isolation: .process),
]
var idle = [[Result]](repeating: [], count: modes.count)
var burst = [[Result]](repeating: [], count: modes.count)
for r in 0..<runs {
    for (i, m) in modes.enumerated() {
        idle[i].append(try measure(m, source: Trickle(idleEvents, gap: .microseconds(500)), expected: idleEvents))
        burst[i].append(try measure(m, source: Burst(events), expected: events))
    }
    FileHandle.standardError.write("run \(r + 1)/\(runs) done\n".data(using: .utf8)!)
}
func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
func us(_ ns: Double) -> String { String(format: "%.1f", ns / 1000) }

print("Idle: \(idleEvents) events, one every 500 µs; receipt to callback start; medians of \(runs) runs")
print("| mode | p50 µs | p99 µs | mean batch |")
print("|---|---:|---:|---:|")
for (i, m) in modes.enumerated() {
    let s = idle[i]
    print("| \(m.name) | \(us(median(s.map { Double($0.p50) }))) | \(us(median(s.map { Double($0.p99) }))) | \(String(format: "%.2f", median(s.map(\.meanBatch)))) |")
}
print("")
let base = median(burst[0].map { Double(events) / $0.seconds })
print("Burst: \(events) events as fast as flow control allows; medians of \(runs) runs (min-max)")
print("| mode | events/s | min-max | vs adaptive 20 (thread) | mean batch |")
print("|---|---:|---:|---:|---:|")
for (i, m) in modes.enumerated() {
    let rates = burst[i].map { Double(events) / $0.seconds }
    print(String(format: "| %@ | %.0f | %.0f-%.0f | %.2fx | %.1f |", m.name, median(rates), rates.min()!, rates.max()!,
                 median(rates) / base, median(burst[i].map(\.meanBatch))))
}
