// plugboard-bench-settle: what the settle window (manifest `[worker] settle_ms`) costs per event,
// against a plugin without one, in the same run (docs/benchmarks.md, "## Settle window").
//
// Each run starts a fresh runtime with thread workers over a finite source that publishes
// `--events` device events (an add per device, then changes, round-robin over the devices) and
// measures the CPU time the measured plugin's worker thread spent (/proc/self/task/TID/schedstat),
// per event read. The plugin is a no-op in C, so what is measured is the worker's own path: poll,
// filter, (hold and coalesce), call, commit. Modes, interleaved within each run:
//
//   off                  a plugin without a window: the path every plugin took before
//   off, beside plain    the same plugin with a second plugin without a window (two consumers
//                        share the 2 cores: the baseline for the next line)
//   off, beside settled  the same plugin while the second plugin has a window
//   settle 8 devices     a 25 ms window, events over 8 devices
//   settle 128 devices   a 25 ms window, events over 128 devices (the default bound, all held)
//
// Then the window alone, on one thread and without a plugin: `hold` of prebuilt events over 8 and
// 128 devices with `takeDue` once per 64 events (what a worker does per batch; `now` advances 1 µs
// per event, so 25 ms windows close as they would at 1 M events/s), against the same loop handing
// the event pointer on (what the path without a window does with an event). CPU time of the thread
// (CLOCK_THREAD_CPUTIME_ID), per event.
//
// Usage: plugboard-bench-settle [--runs N] [--events N]   (run by `make bench-settle`)
import CPlugboard
import CPlugboardSupport
import Foundation
import Logging
import PlugboardCore

#if canImport(Glibc)
import Glibc
#endif

let args = CommandLine.arguments
func option(_ name: String, _ fallback: Int) -> Int {
    guard let i = args.firstIndex(of: name), i + 1 < args.count, let v = Int(args[i + 1]) else { return fallback }
    return v
}
let runs = option("--runs", 7)
let events = option("--events", 1_000_000)

let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
let work = FileManager.default.temporaryDirectory.appendingPathComponent("pb-settle-bench-\(getpid())").path
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
static const pb_plugin_api api = {sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR), NAME, "0.1.0",
                                  init, events, resync, 0, 0, shutdown_};
PB_PLUGIN_ENTRY(in, out) { return pb_negotiate_default(in, out, &api); }
"""
try noop.write(toFile: work + "/noop.c", atomically: true, encoding: .utf8)
for name in ["measured", "other"] {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
    p.arguments = ["-std=gnu11", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-I", root + "/SDK/include",
                   "-DNAME=\"\(name)\"", work + "/noop.c", "-o", work + "/lib\(name).so"]
    try p.run()
    p.waitUntilExit()
    precondition(p.terminationStatus == 0, "cc failed")
}

/// A finite source of device events: an add per device, then changes, round-robin.
final class DeviceEvents: EventSource {
    let count: Int
    let devices: Int
    init(count: Int, devices: Int) {
        self.count = count
        self.devices = devices
    }
    var name: String { "devices" }
    var isFinite: Bool { true }
    func run(_ context: SourceContext) throws {
        let paths = (0..<devices).map { "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-\($0)" }
        for i in 0..<count {
            let d = i % devices
            context.producer.publishWithoutWake { w in
                w.action = i < devices ? .add : .change
                w.event.pointee.vendor_id = 0x046d
                w.event.pointee.product_id = UInt16(0xc000 + d)
                w.event.pointee.busnum = 1
                w.event.pointee.devnum = UInt16(d + 2)
                w.setString(.syspath, paths[d])
                w.setString(.product, "Device \(d % 10)")
            }
            if i & 63 == 63 { context.producer.flush() }
        }
        context.producer.flush()
    }
}

struct Mode {
    var name: String
    var settle: SettleOptions?
    var devices: Int
    /// A second plugin in the same runtime, with this window (`.some(nil)`: without one).
    var beside: SettleOptions?? = nil
}
let window = SettleOptions(window: .milliseconds(25))
let modes = [
    Mode(name: "off", settle: nil, devices: 8),
    Mode(name: "off, beside a plugin without a window", settle: nil, devices: 8, beside: .some(nil)),
    Mode(name: "off, beside a settled plugin", settle: nil, devices: 8, beside: .some(window)),
    Mode(name: "settle 25 ms, 8 devices", settle: window, devices: 8),
    Mode(name: "settle 25 ms, 128 devices", settle: window, devices: 128),
]

/// Nanoseconds a thread of this process has run (schedstat's first field).
func cpuNanoseconds(thread tid: Int32) -> UInt64 {
    let text = (try? String(contentsOfFile: "/proc/self/task/\(tid)/schedstat", encoding: .utf8)) ?? "0"
    return UInt64(text.split(separator: " ").first ?? "0") ?? 0
}

let logger = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }

/// One run of `mode`: the measured worker's CPU ns per event, and the events it was handed.
func measure(_ mode: Mode) throws -> (nsPerEvent: Double, delivered: UInt64, coalesced: UInt64) {
    var options = RuntimeOptions()
    options.ringSlots = 4096
    options.batchSize = 64
    let rt = try Runtime(options: options, logger: logger)
    rt.addPlugin(try PluginLoader.open(work + "/libmeasured.so"), settle: mode.settle)
    if let other = mode.beside { rt.addPlugin(try PluginLoader.open(work + "/libother.so"), settle: other) }
    precondition(rt.startWorkers() == (mode.beside == nil ? 1 : 2))
    let worker = rt.workers.first { $0.name == "measured" } as! Worker
    let before = cpuNanoseconds(thread: worker.threadID)
    rt.start(source: DeviceEvents(count: events, devices: mode.devices))
    rt.waitUntilSourceDrained()
    let used = cpuNanoseconds(thread: worker.threadID) &- before
    _ = rt.shutdownPlugins(until: nil)
    let s = worker.stats
    precondition(s.events + s.settleCoalesced == UInt64(events), "every event delivered or coalesced: \(s)")
    return (Double(used) / Double(events), s.events, s.settleCoalesced)
}

var samples = [[Double]](repeating: [], count: modes.count)
var delivered = [UInt64](repeating: 0, count: modes.count)
for r in 0..<runs {
    for (i, m) in modes.enumerated() {
        let x = try measure(m)
        samples[i].append(x.nsPerEvent)
        delivered[i] = x.delivered
    }
    FileHandle.standardError.write("run \(r + 1)/\(runs) done\n".data(using: .utf8)!)
}
func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
let base = median(samples[0])
print("\(runs) runs of \(events) events each; worker thread CPU per event read (median; min-max)")
print("| mode | ns per event | min-max | vs off | events handed to the plugin |")
print("|---|---:|---:|---:|---:|")
for (i, m) in modes.enumerated() {
    let s = samples[i]
    print(String(format: "| %@ | %.1f | %.1f-%.1f | %.2fx | %llu |", m.name, median(s), s.min()!, s.max()!,
                 median(s) / base, delivered[i]))
}

// MARK: the window alone

func threadCPU() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// ns per event of `hold` + `takeDue` over `devices`, or of the pointer loop when `devices` is 0.
func windowAlone(devices: Int, count: Int) -> Double {
    let kinds = max(devices, 8)
    let slots = UnsafeMutableRawPointer.allocate(byteCount: kinds * 2 * EventLayout.maxSize, alignment: 64)
    defer { slots.deallocate() }
    var pointers: [UnsafePointer<pb_event>] = []
    for i in 0..<(kinds * 2) {
        let raw = slots + i * EventLayout.maxSize
        var w = EventWriter(at: raw, capacity: EventLayout.maxSize, sequence: UInt64(i + 1))
        w.action = i < kinds ? .add : .change
        w.event.pointee.vendor_id = 0x046d
        w.setString(.syspath, "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-\(i % kinds)")
        w.setString(.product, "Device \(i % 10)")
        pointers.append(UnsafePointer(w.event))
    }
    let out = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: 64)
    defer { out.deallocate() }
    var sink: UInt64 = 0
    let t0 = threadCPU()
    if devices == 0 {
        for i in 0..<count {
            out[i & 63] = pointers[kinds + i % kinds]
            if i & 63 == 63 { sink &+= out[0]!.pointee.sequence }
        }
    } else {
        let window = SettleWindow(SettleOptions(window: .milliseconds(25), maxDevices: 128))
        var now: UInt64 = 1_000_000
        for i in 0..<count {
            _ = window.hold(pointers[i < devices ? i : devices + i % devices], now: now)
            now &+= 1_000
            if i & 63 == 63 {
                var k = 64
                while k == 64 {
                    k = window.takeDue(now: now, into: out, max: 64) { _, _ in }
                    if k > 0 { sink &+= out[0]!.pointee.sequence }
                    window.release()
                }
            }
        }
    }
    let used = threadCPU() &- t0
    if sink == 42 { print("") }
    return Double(used) / Double(count)
}

var alone: [(String, [Double])] = [("without a window (hand the pointer on)", []), ("settle, 8 devices", []), ("settle, 128 devices", [])]
for _ in 0..<runs {
    for (j, d) in [0, 8, 128].enumerated() { alone[j].1.append(windowAlone(devices: d, count: events)) }
}
print("")
print("The window alone, one thread, \(events) events per run, \(runs) runs (median; min-max):")
print("| path | ns per event | min-max |")
print("|---|---:|---:|")
for (name, v) in alone { print(String(format: "| %@ | %.1f | %.1f-%.1f |", name, median(v), v.min()!, v.max()!)) }
