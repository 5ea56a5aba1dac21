// plugboard-bench-redis: publish rate and publish latency of RedisPublisher against a real
// redis-server. Run by Benchmarks/scripts/redis.sh, which starts the server and runs the
// redis-benchmark baseline in the same run. Release build only; numbers go to docs/benchmarks.md.
//
//   plugboard-bench-redis rate    --redis URL [--events N] [--state-dir DIR]
//   (--state-dir: the window and spill in files there, as `state.dir` does: docs/redis.md "Crash safety")
//   (rediss:// URLs take --tls-ca-file FILE [--tls-cert-file FILE --tls-key-file FILE] [--tls-server-name N])
//   plugboard-bench-redis latency --redis URL [--rate R] [--seconds S]
//   plugboard-bench-redis demo    --redis URL --host H [--events N] [--rate R]
import CPlugboard
import Foundation
import PlugboardCore
import PlugboardRedis
import Synchronization

struct Arguments {
    var mode = "rate"
    var url = "redis://127.0.0.1:6379/0"
    var host = "bench"
    var events = 1_000_000
    var rate = 10_000
    var seconds = 10.0
    var tls = RedisTLS()
    var stateDir: String?

    init() {
        var args = CommandLine.arguments.dropFirst()
        if let m = args.first, !m.hasPrefix("--") { mode = m; args = args.dropFirst() }
        while let a = args.popFirst() {
            let v = args.popFirst() ?? ""
            switch a {
            case "--redis": url = v
            case "--host": host = v
            case "--events": events = Int(v) ?? events
            case "--rate": rate = Int(v) ?? rate
            case "--seconds": seconds = Double(v) ?? seconds
            case "--tls-ca-file": tls.caFile = v
            case "--tls-cert-file": tls.certFile = v
            case "--tls-key-file": tls.keyFile = v
            case "--tls-server-name": tls.serverName = v
            case "--state-dir": stateDir = v
            default:
                FileHandle.standardError.write(Data("unknown option \(a)\n".utf8))
                exit(64)
            }
        }
    }
}

/// Events shaped like `synthetic:N`'s (vendor 1d6b, a syspath and a product string), generated
/// into the source's own aligned slots. `pacedRate` > 0 releases event i at start + i/rate and
/// stamps that time as its timestamp_ns, so ack time - timestamp_ns is the publish latency.
final class BenchSource: EventBatchSource {
    let total: Int
    let pacedRate: Int
    private var next: UInt64 = 1
    private var startNs: UInt64 = 0
    private let slots: UnsafeMutableRawPointer
    private let slotCount = 1024

    init(total: Int, pacedRate: Int = 0) {
        self.total = total
        self.pacedRate = pacedRate
        slots = .allocate(byteCount: slotCount * Int(PB_EVENT_MAX_SIZE), alignment: 16)
        for i in 0..<slotCount { BenchSource.fill(slots + i * Int(PB_EVENT_MAX_SIZE), device: i % 16) }
    }

    static func fill(_ slot: UnsafeMutableRawPointer, device d: Int) {
        slot.initializeMemory(as: UInt8.self, repeating: 0, count: Int(PB_EVENT_MAX_SIZE))
        let e = slot.assumingMemoryBound(to: pb_event.self)
        e.pointee.size = UInt32(MemoryLayout<pb_event>.size)
        e.pointee.action = UInt16(PB_ACTION_ADD)
        e.pointee.busnum = 1
        e.pointee.devnum = UInt16(d + 2)
        e.pointee.vendor_id = 0x1d6b
        e.pointee.product_id = UInt16(0x1000 + d)
        e.pointee.speed_kbps = 480_000
        var at = MemoryLayout<pb_event>.size
        func put(_ s: String) -> pb_str {
            let b = Array(s.utf8)
            b.withUnsafeBytes { (slot + at).copyMemory(from: $0.baseAddress!, byteCount: b.count) }
            defer { at += b.count + 1 }
            return pb_str(offset: UInt16(at), length: UInt16(b.count))
        }
        e.pointee.syspath = put("/sys/devices/synthetic/usb1/1-\(d + 1)")
        e.pointee.product = put("Synthetic Device \(d + 1)")
        e.pointee.total_size = UInt32(at)
    }

    deinit { slots.deallocate() }

    func poll(max: Int, into buffer: UnsafeMutablePointer<UnsafePointer<pb_event>?>) -> RingPoll {
        if Int(next) > total { return .finished }
        var n = min(max, slotCount, total - Int(next) + 1)
        let now = monotonicNanos()
        if startNs == 0 { startNs = now }
        if pacedRate > 0 {
            let due = Int((now - startNs) * UInt64(pacedRate) / 1_000_000_000) + 1
            n = min(n, due - Int(next) + 1)
            if n <= 0 { return .empty }
        }
        for i in 0..<n {
            let e = (slots + i * Int(PB_EVENT_MAX_SIZE)).assumingMemoryBound(to: pb_event.self)
            e.pointee.sequence = next
            e.pointee.kernel_seqnum = next
            e.pointee.timestamp_ns = pacedRate > 0 ? startNs + (next - 1) * 1_000_000_000 / UInt64(pacedRate) : now
            buffer[i] = UnsafePointer(e)
            next += 1
        }
        return .events(n)
    }

    func commit() -> Bool { true }

    func wait(timeoutNanoseconds: UInt64) {
        var sleepNs = timeoutNanoseconds
        if pacedRate > 0 && startNs != 0 {
            let dueAt = startNs + (next - 1) * 1_000_000_000 / UInt64(pacedRate)
            let now = monotonicNanos()
            sleepNs = dueAt > now ? min(sleepNs, dueAt - now) : 0
        }
        if sleepNs == 0 { return }
        var ts = timespec(tv_sec: Int(sleepNs / 1_000_000_000), tv_nsec: Int(sleepNs % 1_000_000_000))
        nanosleep(&ts, nil)
    }
}

/// Latencies written by the publisher thread only (through `ackObserver`), read after `stop`.
/// `@unchecked Sendable`: one writer thread, and the reader waits for that thread to exit first.
final class LatencyLog: @unchecked Sendable {
    let values: UnsafeMutablePointer<UInt64>
    let capacity: Int
    let count = Atomic<Int>(0)
    init(capacity: Int) {
        self.capacity = capacity
        values = .allocate(capacity: capacity)
    }
    func record(_ v: UInt64) {
        let i = count.load(ordering: .relaxed)
        guard i < capacity else { return }
        values[i] = v
        count.store(i + 1, ordering: .releasing)
    }
    func sorted() -> [UInt64] {
        Array(UnsafeBufferPointer(start: values, count: count.load(ordering: .acquiring))).sorted()
    }
}

/// CPU time of this process (user + system, all threads), nanoseconds.
func processCPUNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

let args = Arguments()
var url: RedisURL
do { url = try RedisURL(parsing: args.url) } catch { print("\(error)"); exit(64) }
if url.tls != nil { url.tls = args.tls }
var config = RedisPublisher.Configuration(url: url, host: args.host)
if let dir = args.stateDir {
    do {
        config.state = try PublisherState(directory: dir, host: args.host, eventBytes: config.spillBytes,
                                          pluginBytes: max(config.pluginBytes, 2 * (config.pluginMaxRecord + 64)))
    } catch { print("\(error)"); exit(1) }
}

switch args.mode {
case "rate":
    let publisher = RedisPublisher(configuration: config)
    let start = monotonicNanos()
    let cpuStart = processCPUNanos()
    try publisher.start(events: BenchSource(total: args.events))
    while publisher.stats.published < UInt64(args.events) { usleep(1000) }
    let ns = monotonicNanos() - start
    // This process's CPU (every thread: the publisher, and over TLS the pump): the cost per event
    // that a busy machine changes less than it changes the rate.
    let cpuNs = processCPUNanos() - cpuStart
    let stats = publisher.stop()
    let rate = Double(args.events) / (Double(ns) / 1e9)
    print(String(format: "publish_rate events=%d seconds=%.3f events_per_s=%.0f cpu_us_per_event=%.2f rejected=%llu", args.events,
                 Double(ns) / 1e9, rate, Double(cpuNs) / 1e3 / Double(args.events), stats.rejected))
case "latency":
    let total = Int(Double(args.rate) * args.seconds)
    guard total > 0 else { print("--rate and --seconds must give at least one event"); exit(64) }
    let log = LatencyLog(capacity: total)
    config.ackObserver = { e, ackNs in log.record(ackNs &- e.pointee.timestamp_ns) }
    let publisher = RedisPublisher(configuration: config)
    try publisher.start(events: BenchSource(total: total, pacedRate: args.rate))
    while publisher.stats.published < UInt64(total) { usleep(10_000) }
    publisher.stop()
    let v = log.sorted()
    func p(_ q: Double) -> Double { Double(v[min(v.count - 1, Int(Double(v.count) * q))]) / 1000 }
    print(String(format: "publish_latency rate=%d events=%d p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f",
                 args.rate, v.count, p(0.50), p(0.99), p(0.999), Double(v.last ?? 0) / 1000))
case "demo":
    let publisher = RedisPublisher(configuration: config)
    try publisher.start(events: BenchSource(total: args.events, pacedRate: args.rate))
    while publisher.stats.published < UInt64(args.events) { usleep(10_000) }
    print("published \(publisher.stop())")
default:
    print("mode must be rate, latency or demo")
    exit(64)
}
