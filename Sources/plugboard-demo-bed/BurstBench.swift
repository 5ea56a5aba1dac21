// `plugboard-demo-bed burst-bench`: one measurement of a udev burst into one listener, for
// `make bench-udev-burst` and `make bench-udev-cpu` (Benchmarks/scripts/udev-burst.sh runs it
// once per listener and round, and prints the table with the ratios).
//
//   plugboard-demo-bed burst-bench --listener drain|plugboard|script --events N [--pace-us US]
//       --redis-port PORT [--plugboard PATH --plugins DIR] [--script PATH] [-- plugboard run options]
//
// One device is present in the testbed; the bed sends N uevents for it, remove and add in turn,
// back to back (`--pace-us 0`) or one every US microseconds, from this process (umockdev's
// sender). The listeners:
//   none      no listener at all: umockdev finds no socket to send to (what it costs to build
//             each message alone)
//   drain     a thread of this process that only reads the datagrams (the emitter alone: what
//             umockdev sends when the listener costs nothing)
//   plugboard the real `plugboard run --source udev --redis ...` with the given plugins
//   script    Benchmarks/scripts/pyudev-to-redis.py (pyudev monitor, one redis-py XADD per event)
// "Received" is the listener's end of the job: the drain thread's count, or the stream's length
// in Redis (XLEN). CPU is the listener's whole process tree (every thread of it and of its
// children, such as plugin worker processes), from /proc/PID/task/TID/schedstat, over the window
// from just before the first send to the moment the last event was seen.
//
// umockdev's sender aborts the process when a listener's datagram queue is full
// (`net.unix.max_dgram_qlen`): the listener fell 4096 uevents behind. A SIGABRT handler then
// prints the result line with `overflow=yes` and kills the listener.
import Foundation
import PlugboardTestbed

#if canImport(Glibc)
import Glibc
#endif

struct BurstArguments {
    var listener = "drain"
    var events = 20_000
    var paceMicroseconds = 0
    var redisPort = 0
    var plugboard = ".build/release/plugboard"
    var plugins: [String] = []
    var script = "Benchmarks/scripts/pyudev-to-redis.py"
    var extra: [String] = []

    init(_ arguments: ArraySlice<String>) {
        var it = arguments.makeIterator()
        while let a = it.next() {
            switch a {
            case "--listener": listener = it.next() ?? listener
            case "--events": events = Int(it.next() ?? "") ?? events
            case "--pace-us": paceMicroseconds = Int(it.next() ?? "") ?? 0
            case "--redis-port": redisPort = Int(it.next() ?? "") ?? 0
            case "--plugboard": plugboard = it.next() ?? plugboard
            case "--plugins": plugins.append(it.next() ?? "")
            case "--script": script = it.next() ?? script
            case "--": while let x = it.next() { extra.append(x) }
            default: fail("burst-bench: unknown argument '\(a)'")
            }
        }
        if !["none", "drain", "plugboard", "script"].contains(listener) { fail("burst-bench: --listener none|drain|plugboard|script") }
        if (listener == "plugboard" || listener == "script") && redisPort == 0 { fail("burst-bench: --redis-port PORT (a running redis-server)") }
    }
}

/// What the SIGABRT handler needs if umockdev's sender aborts mid-burst: written before the
/// handler is installed, read only by it.
nonisolated(unsafe) var burstListenerPid: pid_t = 0
nonisolated(unsafe) var overflowLine: UnsafeMutablePointer<CChar>? = nil

/// A minimal RESP client for `XLEN` and `DEL` (no dependency on the product's Redis code).
final class RedisProbe {
    let fd: Int32

    init(port: Int) {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if r != 0 { fail("burst-bench: cannot connect to redis on port \(port)") }
    }

    /// Sends one inline command and returns the integer reply (-1 for any other reply).
    func integer(_ command: String) -> Int {
        let line = command + "\r\n"
        _ = line.withCString { send(fd, $0, strlen($0), 0) }
        var buf = [UInt8](repeating: 0, count: 256)
        var got = 0
        while got < buf.count {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, $0.count - got, 0) }
            if n <= 0 { return -1 }
            got += n
            if got >= 2 && buf[got - 2] == 13 && buf[got - 1] == 10 { break }
        }
        guard buf[0] == UInt8(ascii: ":") else { return -1 }
        return Int(String(decoding: buf[1..<(got - 2)], as: UTF8.self)) ?? -1
    }
}

/// Nanoseconds on CPU of every thread of `pid` and of its descendants (schedstat's first field),
/// by thread name (`comm`: "pb-source", "plugboard-redis", "plugboard-worke"...).
func treeCPUNanoseconds(_ pid: pid_t) -> [String: UInt64] {
    var pids: [pid_t] = [pid]
    // Descendants: every process whose parent is in the set.
    let all = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { pid_t($0) } ?? []
    var parents: [pid_t: pid_t] = [:]
    for p in all {
        guard let stat = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { continue }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        if fields.count > 1, let pp = pid_t(fields[1]) { parents[p] = pp }
    }
    var i = 0
    while i < pids.count {
        for (p, pp) in parents where pp == pids[i] { pids.append(p) }
        i += 1
    }
    var total: [String: UInt64] = [:]
    for p in pids {
        for t in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(p)/task")) ?? [] {
            let comm = ((try? String(contentsOfFile: "/proc/\(p)/task/\(t)/comm", encoding: .utf8)) ?? "?")
                .trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: " ", with: "_")
            if let s = try? String(contentsOfFile: "/proc/\(p)/task/\(t)/schedstat", encoding: .utf8),
               let first = s.split(separator: " ").first, let ns = UInt64(first) { total[comm, default: 0] += ns }
        }
    }
    return total
}

func runBurstBench(_ args: BurstArguments) -> Never {
    raiseDatagramQueue()
    let bed: Testbed
    let path: String
    do {
        bed = try Testbed()
        let root = try bed.addRootHub()
        let adapter = device(port: "3", devnum: 6, vid: 0x0403, pid: 0x6001, bcd: 0x0600, speed: "12", serial: "A50285BI",
                             manufacturer: "FTDI", product: "FT232R USB UART", interfaces: [(0xff, 0xff, 0xff)])
        path = try bed.add(adapter, parent: root)
    } catch { fail("\(error)") }

    // The listener.
    let received = Atomic64()
    var child: Process?
    var redis: RedisProbe?
    var stream = ""
    var before = 0
    switch args.listener {
    case "none":
        received.store(UInt64(args.events), ns: 0)
    case "drain":
        let fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 15 /* NETLINK_KOBJECT_UEVENT */)
        if fd < 0 { fail("burst-bench: cannot open a uevent socket") }
        // struct sockaddr_nl (not imported by Glibc): family, padding, port id, groups.
        var sa: (UInt16, UInt16, UInt32, UInt32) = (UInt16(AF_NETLINK), 0, 0, 2 /* the udev group */)
        let r = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, 12) }
        }
        if r != 0 { fail("burst-bench: cannot bind the uevent socket (errno \(errno))") }
        let t = Thread {
            var buf = [UInt8](repeating: 0, count: 8192)
            while true {
                let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n > 0 { received.store(received.load() + 1, ns: monotonicNs()) }
            }
        }
        t.start()
    case "plugboard":
        let p = Process()
        p.executableURL = URL(fileURLWithPath: args.plugboard)
        var a = ["run", "--source", "udev", "--udev-mode", "udev", "--redis", "redis://127.0.0.1:\(args.redisPort)/0",
                 "--redis-host", "bench", "--log-level", "warning"]
        for d in args.plugins { a += ["--plugins", d] }
        p.arguments = a + args.extra
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        child = p
        stream = "plugboard:{bench}:events"
    default:
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = [args.script, "--port", "\(args.redisPort)", "--stream", "bench:pyudev:events"]
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        child = p
        stream = "bench:pyudev:events"
    }
    if let child {
        redis = RedisProbe(port: args.redisPort)
        _ = redis!.integer("DEL \(stream)")
        do { try child.run() } catch { fail("cannot start \(child.executableURL!.path): \(error)") }
        burstListenerPid = child.processIdentifier
        let deadline = Date().addingTimeInterval(20)
        while bed.listeners.isEmpty {
            if !child.isRunning { fail("the listener exited before listening (status \(child.terminationStatus))") }
            if Date() > deadline { fail("the listener did not open its uevent monitor within 20 s") }
            usleep(10_000)
        }
        // Coldplug (plugboard publishes the present devices) and start-up done: wait for quiet.
        var last = -1, stable = 0
        while stable < 10 {
            usleep(50_000)
            let n = redis!.integer("XLEN \(stream)")
            stable = n == last ? stable + 1 : 0
            last = n
        }
        before = last
    }
    // umockdev's sender aborts (SIGABRT) when the listener's queue is full: say so, stop the listener.
    overflowLine = strdup("result listener=\(args.listener) overflow=yes events=\(args.events) pace_us=\(args.paceMicroseconds)\n")
    signal(SIGABRT) { _ in
        if let line = overflowLine { _ = write(1, line, strlen(line)) }
        if burstListenerPid > 0 { kill(burstListenerPid, SIGKILL) }
        _exit(3)
    }

    let cpuBefore = child.map { treeCPUNanoseconds($0.processIdentifier) } ?? [:]
    let start = monotonicNs()
    var next = start
    for i in 0..<args.events {
        if args.paceMicroseconds > 0 {
            next += UInt64(args.paceMicroseconds) * 1000
            while monotonicNs() < next {}
        }
        bed.uevent(path, i % 2 == 0 ? "remove" : "add")
    }
    let sendEnd = monotonicNs()

    // Wait for the listener to have them all (or to stop making progress for 5 s).
    var seen = 0
    var seenAt = sendEnd
    var progressAt = monotonicNs()
    while true {
        let n: Int
        if let redis {
            n = redis.integer("XLEN \(stream)") - before
            if n != seen { seenAt = monotonicNs() }
        } else {
            n = Int(received.load())
            seenAt = max(received.lastNs, sendEnd)
        }
        if n != seen { progressAt = monotonicNs() }
        seen = n
        if n >= args.events || monotonicNs() - progressAt > 5_000_000_000 { break }
        usleep(1000)
    }
    let cpuAfter = child.map { treeCPUNanoseconds($0.processIdentifier) } ?? [:]
    signal(SIGABRT, SIG_DFL)
    if let child {
        child.terminate()
        child.waitUntilExit()
    }
    let sendSeconds = Double(sendEnd - start) / 1e9
    let seconds = Double(seenAt - start) / 1e9
    var load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?"
    load = String(load.prefix { $0 != " " })
    // Per thread name, µs per event (threads that started during the window count from 0).
    var perThread: [(String, Double)] = []
    for (comm, after) in cpuAfter {
        let used = after &- min(after, cpuBefore[comm] ?? 0)
        if seen > 0 { perThread.append((comm, Double(used) / 1000 / Double(seen))) }
    }
    perThread.sort { $0.1 > $1.1 }
    let cpuPerEvent = perThread.reduce(0) { $0 + $1.1 }
    let threads = perThread.filter { $0.1 >= 0.05 }.map { String(format: "%@:%.1f", $0.0, $0.1) }.joined(separator: ",")
    print(String(format: "result listener=%@ overflow=no events=%d pace_us=%d sent_per_s=%.0f received=%d received_per_s=%.0f cpu_us_per_event=%.1f load=%@ threads=%@",
                 args.listener, args.events, args.paceMicroseconds, Double(args.events) / sendSeconds, seen,
                 Double(seen) / seconds, cpuPerEvent, load, threads.isEmpty ? "-" : threads))
    exit(0)
}

/// A counter and the time of its last change, written by one thread and read by another.
final class Atomic64: @unchecked Sendable {
    // @unchecked: guarded by the lock.
    private let lock = NSLock()
    private var value: UInt64 = 0
    private var at: UInt64 = 0
    func store(_ v: UInt64, ns: UInt64) { lock.lock(); value = v; at = ns; lock.unlock() }
    func load() -> UInt64 { lock.lock(); defer { lock.unlock() }; return value }
    var lastNs: UInt64 { lock.lock(); defer { lock.unlock() }; return at }
}
