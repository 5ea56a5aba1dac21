// plugboard-demo-bed: plays a scripted USB session through a umockdev testbed into the real
// `plugboard run --source udev`, for `make demo` on machines without USB hardware.
//
//   umockdev-wrapper plugboard-demo-bed --plugboard .build/debug/plugboard --plugins build/plugins
//   umockdev-wrapper plugboard-demo-bed --measure 2000 --plugboard ... --plugins DIR --latency-output FILE
//   umockdev-wrapper plugboard-demo-bed burst-bench --listener drain|plugboard|script ...  (BurstBench.swift)
//
// The bed creates the testbed (so it must run under umockdev's preload), starts plugboard as
// its child (which inherits the preload and the testbed), sends the session's uevents, then
// stops plugboard with SIGTERM, which it handles gracefully (drain, summary).
import Dispatch
import Foundation
import PlugboardTestbed

#if canImport(Glibc)
import Glibc
#endif

struct Arguments {
    var plugboard = ".build/debug/plugboard"
    var plugins: [String] = []
    var burst = 500
    var measure = 0
    var latencyOutput = ""
    var gapMicroseconds = 2000
    /// With --measure: send the changes back to back (no gap) and report the rate too.
    var burstMeasure = false
    var extra: [String] = []

    init() {
        var it = CommandLine.arguments.dropFirst().makeIterator()
        while let a = it.next() {
            switch a {
            case "--plugboard": plugboard = it.next() ?? plugboard
            case "--plugins": plugins.append(it.next() ?? "")
            case "--burst": burst = Int(it.next() ?? "") ?? burst
            case "--measure": measure = Int(it.next() ?? "") ?? 0
            case "--latency-output": latencyOutput = it.next() ?? ""
            case "--gap-us": gapMicroseconds = Int(it.next() ?? "") ?? gapMicroseconds
            case "--burst-measure": burstMeasure = true
            case "--": while let x = it.next() { extra.append(x) }
            default:
                fail("unknown argument '\(a)' (use --plugboard PATH --plugins DIR [--burst N] [--measure N --latency-output FILE] [-- plugboard run options])")
            }
        }
        if plugins.isEmpty { fail("give the plugin directory with --plugins DIR (make demo uses build/plugins)") }
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("plugboard-demo-bed: \(message)\n".utf8))
    exit(1)
}

func say(_ s: String) {
    FileHandle.standardOutput.write(Data("\u{1b}[1mdemo-bed: \(s)\u{1b}[0m\n".utf8))
}

func pause(_ seconds: Double) { Thread.sleep(forTimeInterval: seconds) }

func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Wake-up latencies of an idle thread blocked on a semaphore, `count` times, `gap` apart.
func wakeLatencies(count: Int, gapMicroseconds: Int) -> [UInt64] {
    final class Shared: @unchecked Sendable {
        // @unchecked: `posted` is written before the semaphore post and read after the wait
        // (the semaphore orders them); `out` is touched by the waiter thread only until `done`.
        var posted: UInt64 = 0
        var out: [UInt64] = []
        let go = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
    }
    let s = Shared()
    s.out.reserveCapacity(count)
    let waiter = Thread {
        for _ in 0..<count {
            s.go.wait()
            s.out.append(monotonicNs() &- s.posted)
        }
        s.done.signal()
    }
    waiter.start()
    for _ in 0..<count {
        usleep(UInt32(gapMicroseconds))
        s.posted = monotonicNs()
        s.go.signal()
    }
    s.done.wait()
    return s.out
}

/// umockdev's uevent sender aborts when a listener's datagram queue (net.unix.max_dgram_qlen,
/// default 10) is full; bursts need it deeper.
func raiseDatagramQueue() {
    let path = "/proc/sys/net/unix/max_dgram_qlen"
    let current = (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
    if current >= 4096 { return }
    if let f = fopen(path, "w") {
        fputs("4096\n", f)
        fclose(f)
    } else {
        FileHandle.standardError.write(Data("""
            plugboard-demo-bed: cannot raise net.unix.max_dgram_qlen (\(current)); run as root or \
            `sysctl -w net.unix.max_dgram_qlen=4096`, else bursts abort umockdev\n
            """.utf8))
    }
}

func device(port: String, devnum: Int, vid: UInt16, pid: UInt16, bcd: UInt16 = 0x0100, cls: UInt8 = 0, speed: String,
            serial: String?, manufacturer: String, product: String, interfaces: [(UInt8, UInt8, UInt8)]) -> SimulatedUSBDevice {
    var d = SimulatedUSBDevice()
    d.port = port
    d.devnum = devnum
    d.vendorID = vid
    d.productID = pid
    d.bcdDevice = bcd
    d.deviceClass = cls
    d.speed = speed
    d.serial = serial.map { Array($0.utf8) }
    d.manufacturer = Array(manufacturer.utf8)
    d.product = Array(product.utf8)
    d.interfaces = interfaces
    return d
}

if CommandLine.arguments.dropFirst().first == "burst-bench" {
    runBurstBench(BurstArguments(CommandLine.arguments.dropFirst(2)))
}
let args = Arguments()
raiseDatagramQueue()
let bed: Testbed
do { bed = try Testbed() } catch { fail("\(error)") }

// The bus at start: a root hub and a keyboard (found by the enumeration: coldplug).
let rootHub: String
let keyboardPath: String
/// uevents sent, per action.
final class Tally {
    var sent = [String: Int]()
    func callAsFunction(_ action: String, _ n: Int = 1) { sent[action, default: 0] += n }
}
let count = Tally()
let keyboard = device(port: "1", devnum: 2, vid: 0x046d, pid: 0xc31c, bcd: 0x6400, speed: "1.5", serial: nil,
                      manufacturer: "Logitech", product: "USB Keyboard", interfaces: [(3, 1, 1), (3, 0, 0)])
var measuredDevice = ""
do {
    rootHub = try bed.addRootHub()
    keyboardPath = try bed.add(keyboard, parent: rootHub)
    if args.measure > 0 {
        // Present before plugboard starts, so its interface is not folded into a `change` later.
        let drive = device(port: "2", devnum: 3, vid: 0x0781, pid: 0x5567, speed: "480", serial: "4C530001230915117213",
                           manufacturer: "SanDisk", product: "Cruzer Blade", interfaces: [(8, 6, 0x50)])
        measuredDevice = try bed.add(drive, parent: rootHub)
    }
} catch { fail("\(error)") }

// plugboard, as a child: it inherits LD_PRELOAD and UMOCKDEV_DIR, so it sees the testbed.
let child = Process()
child.executableURL = URL(fileURLWithPath: args.plugboard)
var runArgs = ["run", "--source", "udev"]
for p in args.plugins { runArgs += ["--plugins", p] }
// The probe is a test plugin without a manifest: load it the manifest-less way.
if args.measure > 0 {
    runArgs += ["--ignore-manifests", "--plugin-config", "latency-probe.output=\(args.latencyOutput)", "--log-level", "warning"]
}
child.arguments = runArgs + args.extra
do { try child.run() } catch { fail("cannot start \(args.plugboard): \(error) (build it first: make build)") }

let deadline = Date().addingTimeInterval(20)
while bed.listeners.isEmpty {
    if !child.isRunning { fail("plugboard exited before listening (status \(child.terminationStatus))") }
    if Date() > deadline { fail("plugboard did not open its uevent monitor within 20 s") }
    usleep(10_000)
}
pause(0.5)  // let it publish the enumeration first, for a readable screen

if args.measure > 0 {
    // Latency run: one device, `measure` change uevents spaced so the workers are idle.
    let path = measuredDevice
    var sends: [UInt64] = []
    sends.reserveCapacity(args.measure)
    for _ in 0..<args.measure {
        sends.append(monotonicNs())
        bed.uevent(path, "change")
        if !args.burstMeasure { usleep(UInt32(args.gapMicroseconds)) }
    }
    pause(0.5)
    child.terminate()
    child.waitUntilExit()
    // The probe wrote "<action> <kernel seqnum> <timestamp_ns> <callback entry ns>" per event;
    // the i-th change it saw is the i-th one sent.
    guard let text = try? String(contentsOfFile: args.latencyOutput, encoding: .utf8) else { fail("no probe output at \(args.latencyOutput)") }
    var changes: [[Substring]] = []
    for line in text.split(separator: "\n") {
        let f = line.split(separator: " ")
        if f.count == 4 && f[0] == "change" { changes.append(f) }
    }
    guard changes.count == args.measure else { fail("sent \(args.measure) changes, the probe saw \(changes.count)") }
    var host: [UInt64] = [], endToEnd: [UInt64] = []
    for (i, f) in changes.enumerated() {
        let receipt = UInt64(f[2])!, entry = UInt64(f[3])!
        host.append(entry &- receipt)
        endToEnd.append(entry &- sends[i])
    }
    func pct(_ v: [UInt64], _ q: Double) -> Double {
        let s = v.sorted()
        return Double(s[min(s.count - 1, Int((Double(s.count) * q).rounded(.up)) - 1)]) / 1000
    }
    func row(_ name: String, _ v: [UInt64]) -> String {
        let p50 = pct(v, 0.5), p99 = pct(v, 0.99), mx = pct(v, 1.0)
        return name + String(format: ": p50 %.1f us, p99 %.1f us, max %.1f us", p50, p99, mx)
    }
    if args.burstMeasure {
        let seconds = Double(UInt64(changes.last![3])! &- sends[0]) / 1e9
        let sendSeconds = Double(sends.last! &- sends[0]) / 1e9
        print("burst: \(args.measure) uevents back to back, all \(changes.count) reached the plugin")
        print(String(format: "umockdev sent them at %.0f uevents/s; the plugin had them all %.3f s after the first: %.0f events/s", Double(args.measure) / sendSeconds, seconds, Double(args.measure) / seconds))
        print(row("host-internal under burst (receipt -> callback entry)", host))
        print(row("end-to-end under burst (sent -> callback entry)", endToEnd))
        exit(0)
    }
    // Same-run baseline: how long this machine takes to wake an idle thread blocked on a futex
    // (a semaphore) and run it, with the same gap: the floor under any cross-thread hand-off.
    let baseline = wakeLatencies(count: args.measure, gapMicroseconds: args.gapMicroseconds)
    var load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?"
    load = String(load.prefix { $0 != "\n" })
    print("events \(args.measure), gap \(args.gapMicroseconds) us, cpus \(ProcessInfo.processInfo.activeProcessorCount), loadavg \(load)")
    print(row("baseline: idle thread wake-up (semaphore post -> waiter runs)", baseline))
    print(String(format: "ratio host-internal / baseline: p50 %.2f, p99 %.2f", pct(host, 0.5) / pct(baseline, 0.5), pct(host, 0.99) / pct(baseline, 0.99)))
    print(row("host-internal (receipt -> callback entry)", host))
    print(row("end-to-end (umockdev uevent sent -> callback entry)", endToEnd))
    exit(0)
}

do {
    say("the bus at start: root hub usb1 and a Logitech keyboard (plugboard found them: coldplug)")
    pause(0.6)
    say("plug in a 4-port USB 2.0 hub on port 2")
    let hub = try bed.add(device(port: "2", devnum: 3, vid: 0x05e3, pid: 0x0608, bcd: 0x6060, cls: 9, speed: "480", serial: nil,
                                 manufacturer: "GenesysLogic", product: "USB2.0 Hub", interfaces: [(9, 0, 0)]), parent: rootHub)
    count("add", 2)
    pause(0.6)
    say("plug a SanDisk flash drive (serial 4C530001230915117213) into the hub")
    let drive = device(port: "2.1", devnum: 4, vid: 0x0781, pid: 0x5567, speed: "480", serial: "4C530001230915117213",
                       manufacturer: "SanDisk", product: "Cruzer Blade", interfaces: [(8, 6, 0x50)])
    let drivePath = try bed.add(drive, parent: hub)
    count("add", 2)
    pause(0.6)
    say("unplug the keyboard")
    bed.unplug(keyboardPath, interfaces: 2)
    count("remove", 3)
    pause(0.6)
    say("plug the keyboard back into the same port (the kernel gives it a new address)")
    var again = keyboard
    again.devnum = 5
    try bed.add(again, parent: rootHub)
    count("add", 3)
    pause(0.6)
    say("the flash drive's driver is unbound and bound again")
    bed.uevent(drivePath, "unbind")
    bed.uevent(drivePath, "bind")
    count("unbind")
    count("bind")
    pause(0.6)
    say("burst: a flaky serial adapter on port 3 connects and disconnects \(args.burst / 2) times (\(args.burst) uevents)")
    let flaky = device(port: "3", devnum: 6, vid: 0x0403, pid: 0x6001, bcd: 0x0600, speed: "12", serial: "A50285BI",
                       manufacturer: "FTDI", product: "FT232R USB UART", interfaces: [])
    let flakyPath = try bed.add(flaky, parent: rootHub)
    count("add")
    for i in 1..<max(1, args.burst) {
        bed.uevent(flakyPath, i % 2 == 1 ? "remove" : "add")
        count(i % 2 == 1 ? "remove" : "add")
    }
    if args.burst % 2 == 0 { bed.removeDevice(flakyPath) }
    pause(0.6)
    say("unplug the flash drive")
    bed.unplug(drivePath, interfaces: 1)
    count("remove", 2)
    pause(0.8)
} catch { fail("\(error)") }

let total = count.sent.values.reduce(0, +)
say("session done: \(total) uevents sent (" + count.sent.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
    + ", interface events included); stopping plugboard with SIGTERM")
child.terminate()
child.waitUntilExit()
say("plugboard exited with status \(child.terminationStatus). Interface uevents are folded into their device; "
    + "the plugins' EVENTS column counts device events (coldplug included).")
exit(child.terminationStatus)
