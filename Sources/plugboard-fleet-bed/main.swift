// plugboard-fleet-bed: a fleet of simulated hosts on a real Redis Cluster, with a failover.
//
//   plugboard-fleet-bed --plugboard .build/debug/plugboard --hosts 10 --events 10000 [--json]
//
// Starts 6 redis-server nodes in cluster mode (3 masters, 1 replica each, cluster-node-timeout
// 1000 ms) on free loopback ports in a temporary directory; N `plugboard run --source synthetic:M
// --redis-host fleet-K` processes, all seeded with the URL of the master that serves most of the
// fleet's streams, with `redis.wait_replicas = 1`; and a consumer group of 3 `plugboard tail
// --group fleet --claim-idle 2s` consumers writing JSON lines to files (two name the hosts with
// --host, the third finds them with --host-pattern 'fleet-*'; the first and the third are seeded
// with that master). Mid-run it SIGKILLs that
// master (its replica is promoted; the killed node is restarted and rejoins as the new master's
// replica) and one consumer. At the end it checks that every (host, sequence) was consumed at least
// once and stored exactly once, counts the duplicates and says where each comes from, and prints
// the figures (docs/benchmarks.md, "Fleet"). Exit 0 when nothing was lost, 1 otherwise, 2 when the
// bed itself failed. The last line of stdout with --json is the report as one JSON object.
import Foundation
import PlugboardRedis
#if canImport(Glibc)
import Glibc
#endif

struct Options {
    var plugboard = ".build/debug/plugboard"
    var hosts = 10
    var events = 10_000
    var consumers = 3
    var claimIdle = "2s"
    var nodeTimeoutMs = 1000
    /// Kill the master once this fraction of all events is stored.
    var killAt = 0.3
    /// Kill a consumer once this fraction of all events is consumed.
    var consumerKillAt = 0.5
    var waitReplicas = 1
    var waitTimeout = "500ms"
    var timeoutSeconds = 300.0
    var json = false
    var keep = false

    init() {
        var it = CommandLine.arguments.dropFirst().makeIterator()
        while let a = it.next() {
            switch a {
            case "--plugboard": plugboard = it.next() ?? plugboard
            case "--hosts": hosts = Int(it.next() ?? "") ?? hosts
            case "--events": events = Int(it.next() ?? "") ?? events
            case "--claim-idle": claimIdle = it.next() ?? claimIdle
            case "--kill-at": killAt = Double(it.next() ?? "") ?? killAt
            case "--wait-replicas": waitReplicas = Int(it.next() ?? "") ?? waitReplicas
            case "--wait-timeout": waitTimeout = it.next() ?? waitTimeout
            case "--timeout": timeoutSeconds = Double(it.next() ?? "") ?? timeoutSeconds
            case "--json": json = true
            case "--keep": keep = true
            default:
                FileHandle.standardError.write(Data("""
                    usage: plugboard-fleet-bed [--plugboard PATH] [--hosts N] [--events M] [--claim-idle D] [--kill-at F]
                                               [--wait-replicas N] [--wait-timeout D] [--timeout S] [--json] [--keep]

                    """.utf8))
                exit(64)
            }
        }
    }
}

struct BedFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func now() -> Double { Date().timeIntervalSince1970 }

func say(_ text: String) {
    FileHandle.standardError.write(Data("fleet-bed: \(text)\n".utf8))
}

/// A child process whose output goes to a file.
final class Child {
    let process = Process()
    let name: String
    init(_ path: String, _ arguments: [String], stdout: String, stderr: String? = nil, name: String) throws {
        self.name = name
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let out = try Self.output(stdout)
        process.standardOutput = out
        if let stderr {
            process.standardError = try Self.output(stderr)
        } else {
            process.standardError = out
        }
        var env = ProcessInfo.processInfo.environment
        env["LD_PRELOAD"] = nil
        process.environment = env
        try process.run()
    }
    /// `path` opened for writing, created or truncated in place. Not `FileManager.createFile`:
    /// it writes a temporary file and renames it over the path, which turned /dev/null (the
    /// redis-servers' output) into a regular file for the whole machine.
    static func output(_ path: String) throws -> FileHandle {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw BedFailure("cannot open \(path) for writing: \(String(cString: strerror(errno)))") }
        return FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }
    var running: Bool { process.isRunning }
    func signal(_ sig: Int32) { if process.isRunning { kill(process.processIdentifier, sig) } }
    func killNow() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

/// One redis-server of the cluster: its port, directory and process; restartable.
final class Node {
    let port: Int
    let dir: String
    let nodeTimeoutMs: Int
    var child: Child?
    init(port: Int, dir: String, nodeTimeoutMs: Int) throws {
        self.port = port
        self.dir = dir
        self.nodeTimeoutMs = nodeTimeoutMs
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    func start() throws {
        child = try Child("/usr/bin/redis-server", [
            "--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
            "--daemonize", "no", "--logfile", "\(dir)/redis.log", "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "\(nodeTimeoutMs)",
            // A replica (re)joining is sent the data set at once, not after the default 5 s wait for others.
            "--repl-diskless-sync-delay", "0",
        ], stdout: "/dev/null", name: "redis-\(port)")
    }
    func kill() { child?.killNow() }
    var address: String { "127.0.0.1:\(port)" }
}

/// Short-lived control connections to the nodes, by port; a failed one is dropped and re-made.
final class Clients {
    private var byPort: [Int: RedisConnection] = [:]
    let options = RedisConnectOptions(connectTimeout: .milliseconds(300), commandTimeout: .seconds(3))

    func command(_ port: Int, _ args: [String]) -> RedisReply? {
        do {
            let c: RedisConnection
            if let existing = byPort[port] { c = existing } else {
                c = try RedisConnection(url: RedisURL(endpoint: .tcp(host: "127.0.0.1", port: port)), options: options)
                byPort[port] = c
            }
            return try c.command(args)
        } catch {
            byPort[port] = nil
            return nil
        }
    }

    /// A command about `key`, sent to `port` first and then where MOVED says; the reply and the
    /// port that answered it (nil when no node could be reached).
    func routed(_ key: String, _ args: [String], first port: Int) -> (RedisReply, Int)? {
        var target = port
        for _ in 0..<4 {
            guard let reply = command(target, args) else { return nil }
            if case .error(let e) = reply, let r = ClusterRedirect(e, like: RedisURL(endpoint: .tcp(host: "127.0.0.1", port: target))),
               case .tcp(_, let p) = r.node.endpoint {
                target = p
                continue
            }
            return (reply, target)
        }
        return nil
    }
}

/// The consumed lines of one consumer's output file, read incrementally.
final class ConsumerOutput {
    let path: String
    private var offset: UInt64 = 0
    private var partial = Data()
    /// (host, sequence) of every line read so far, in order, and when the bed read it (within 50 ms
    /// of its printing).
    var seen: [(String, Int)] = []
    var readAt: [Double] = []
    init(path: String) { self.path = path }

    /// Reads what was appended since the last call, up to `maxBytes` (so that one poll of a
    /// consumer far ahead of the bed does not hold up its other checks, such as when to kill).
    func poll(maxBytes: Int = 1 << 20) {
        guard let h = FileHandle(forReadingAtPath: path) else { return }
        defer { try? h.close() }
        try? h.seek(toOffset: offset)
        let data = (try? h.read(upToCount: maxBytes)) ?? Data()
        offset += UInt64(data.count)
        partial.append(data)
        guard let lastNewline = partial.lastIndex(of: UInt8(ascii: "\n")) else { return }
        let complete = partial[partial.startIndex...lastNewline]
        let t = now()
        for line in complete.split(separator: UInt8(ascii: "\n")) {
            if let parsed = Self.parse(line) { seen.append(parsed); readAt.append(t) }
        }
        partial = Data(partial[(lastNewline + 1)...])
    }

    /// `"host":"fleet-3"` and `"sequence":42` from one JSON line of `tail --json`.
    static func parse(_ line: Data.SubSequence) -> (String, Int)? {
        let text = String(decoding: line, as: UTF8.self)
        guard let h = text.range(of: "\"host\":\""), let hEnd = text[h.upperBound...].firstIndex(of: "\""),
              let s = text.range(of: "\"sequence\":") else { return nil }
        let digits = text[s.upperBound...].prefix { $0.isNumber }
        guard let seq = Int(digits) else { return nil }
        return (String(text[h.upperBound..<hEnd]), seq)
    }
}

struct Bed {
    let o: Options
    let dir: String
    var nodes: [Node] = []
    let clients = Clients()
    var publishers: [Child] = []
    var consumers: [Child] = []
    var outputs: [ConsumerOutput] = []
    let hosts: [String]
    var total: Int { o.hosts * o.events }

    init(options: Options) throws {
        o = options
        var template = Array("/tmp/plugboard-fleet-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw BedFailure("mkdtemp: errno \(errno)") }
        dir = String(cString: made)
        hosts = (1...options.hosts).map { "fleet-\($0)" }
    }

    func stopAll() {
        for c in publishers + consumers { c.killNow() }
        for n in nodes { n.kill() }
        if !o.keep { try? FileManager.default.removeItem(atPath: dir) } else { say("kept \(dir)") }
    }

    mutating func startCluster() throws {
        var ports = Set<Int>()
        while ports.count < 6 { ports.insert(try Self.lowPortPair()) }
        for (i, p) in ports.sorted().enumerated() {
            let n = try Node(port: p, dir: "\(dir)/node-\(i + 1)", nodeTimeoutMs: o.nodeTimeoutMs)
            try n.start()
            nodes.append(n)
        }
        for n in nodes {
            guard eventually(10, { clients.command(n.port, ["PING"]) == .status("PONG") }) else {
                throw BedFailure("redis-server on port \(n.port) did not come up (see \(n.dir)/redis.log)")
            }
        }
        let create = try Child("/usr/bin/redis-cli", ["--cluster", "create"] + nodes.map(\.address)
                                + ["--cluster-replicas", "1", "--cluster-yes"], stdout: "\(dir)/cluster-create.log", name: "redis-cli")
        create.process.waitUntilExit()
        guard create.process.terminationStatus == 0 else {
            throw BedFailure("redis-cli --cluster create exited \(create.process.terminationStatus) (see \(dir)/cluster-create.log)")
        }
        let ready = eventually(30) {
            nodes.allSatisfy { n in clients.command(n.port, ["CLUSTER", "INFO"])?.text?.contains("cluster_state:ok") ?? false }
                && masters().count == 3 && masters().allSatisfy { replicaOnline($0) }
        }
        guard ready else { throw BedFailure("the cluster did not reach cluster_state:ok with a replica online per master") }
    }

    /// A port below the kernel's ephemeral range whose +10000 (the cluster bus) is free too: a
    /// killed node is restarted on both, and an outgoing connection may have taken an ephemeral
    /// port meanwhile.
    static func lowPortPair() throws -> Int {
        for _ in 0..<500 {
            let p = Int.random(in: 12000...22000)
            if bindable(p) && bindable(p + 10000) { return p }
        }
        throw BedFailure("no free port pair between 12000 and 32000")
    }

    static func bindable(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// `CLUSTER NODES` as seen by a live node: (port, flags, master port for replicas).
    func topology() -> [(port: Int, flags: [Substring], masterID: Substring, id: Substring)] {
        for n in nodes where n.child?.running ?? false {
            guard let text = clients.command(n.port, ["CLUSTER", "NODES"])?.text else { continue }
            return text.split(separator: "\n").compactMap { line in
                let f = line.split(separator: " ")
                guard f.count >= 8, let colon = f[1].firstIndex(of: ":"),
                      let port = Int(f[1][f[1].index(after: colon)...].prefix { $0 != "@" }) else { return nil }
                return (port, f[2].split(separator: ","), f[3], f[0])
            }
        }
        return []
    }

    /// A node that runs (the first one).
    func anyLive() -> Int { nodes.first { $0.child?.running ?? false }?.port ?? nodes[0].port }

    func masters() -> [Int] {
        topology().filter { $0.flags.contains("master") && !$0.flags.contains("fail") }.map(\.port).sorted()
    }

    /// The port of the replica of the master on `port`.
    func replica(of port: Int) -> Int? {
        let t = topology()
        guard let id = t.first(where: { $0.port == port })?.id else { return nil }
        return t.first { $0.masterID == id }?.port
    }

    /// Whether the master on `port` has a replica that finished its sync.
    func replicaOnline(_ port: Int) -> Bool {
        guard let info = clients.command(port, ["INFO", "replication"])?.text else { return false }
        return info.contains("connected_slaves:1") && info.contains("state=online")
    }

    func owner(of host: String) -> Int? {
        guard let (_, port) = clients.routed(StreamKeys(host: host).events, ["EXISTS", StreamKeys(host: host).events],
                                             first: masters().first ?? nodes[0].port) else { return nil }
        return port
    }

    func xlen(_ host: String, first port: Int) -> Int {
        let key = StreamKeys(host: host).events
        guard let (reply, _) = clients.routed(key, ["XLEN", key], first: port), case .integer(let n) = reply else { return 0 }
        return Int(n)
    }

    /// Every entry of `host`'s stream: (sequence from the ID, ID).
    func readStream(_ host: String, first port: Int) throws -> [Int] {
        let key = StreamKeys(host: host).events
        var sequences: [Int] = []
        var start = "-"
        while true {
            guard let (reply, _) = clients.routed(key, ["XRANGE", key, start, "+", "COUNT", "5000"], first: port),
                  case .array(let entries) = reply else { throw BedFailure("XRANGE \(key) failed") }
            var last: String?
            for e in entries {
                guard case .array(let parts) = e, let id = parts.first?.text,
                      let seq = id.split(separator: "-").last.flatMap({ Int($0) }) else { continue }
                sequences.append(seq)
                last = id
            }
            guard entries.count == 5000, let last else { break }
            start = "(" + last
        }
        return sequences
    }

    func eventually(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = now() + seconds
        while now() < deadline {
            if condition() { return true }
            usleep(50_000)
        }
        return condition()
    }

    mutating func run() throws -> [String: Any] {
        try startCluster()
        // The victim: the master that serves most of the fleet's streams.
        var byOwner: [Int: [String]] = [:]
        for h in hosts { if let p = owner(of: h) { byOwner[p, default: []].append(h) } }
        guard let victim = byOwner.max(by: { $0.value.count < $1.value.count || ($0.value.count == $1.value.count && $0.key > $1.key) })?.key,
              let promotedPort = replica(of: victim) else { throw BedFailure("no slot owner / replica found") }
        let victimHosts = byOwner[victim] ?? []
        let masterPorts = masters()
        say("cluster up: masters \(masterPorts), victim \(victim) (serves \(victimHosts.count) of \(hosts.count) streams, replica \(promotedPort)); dir \(dir)")

        let plugins = "\(dir)/plugins"
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        chmod(plugins, 0o755)
        // Seeds: the first and the last consumer (the one with --host-pattern) are seeded with the
        // master that will be killed; the second (killed itself) with another master.
        let others = masterPorts.filter { $0 != victim }
        func seed(_ k: Int) -> Int { k == 0 || k == o.consumers - 1 ? victim : others[k % others.count] }
        // Consumers 1 and 2 name the hosts (--host, creating the streams and the group); the last
        // one finds them with --host-pattern once they exist (SCAN on every master).
        func startConsumer(_ k: Int, _ selection: [String]) throws {
            let out = "\(dir)/consumer-\(k + 1).jsonl"
            let c = try Child(o.plugboard, ["tail", "--redis", "redis://127.0.0.1:\(seed(k))/0"] + selection
                                + ["--from", "0", "--group", "fleet", "--consumer", "c\(k + 1)", "--claim-idle", o.claimIdle, "--json"],
                              stdout: out, stderr: "\(dir)/consumer-\(k + 1).log", name: "c\(k + 1)")
            consumers.append(c)
            outputs.append(ConsumerOutput(path: out))
        }
        let byPattern = o.consumers >= 3 ? o.consumers - 1 : o.consumers
        for k in 0..<byPattern { try startConsumer(k, hosts.flatMap { ["--host", $0] }) }
        // The groups exist before the first event (each tail creates its streams' group, MKSTREAM).
        guard eventually(30, { hosts.allSatisfy { h in
            let key = StreamKeys(host: h).events
            if case (.array(let g), _)? = clients.routed(key, ["XINFO", "GROUPS", key], first: victim) { return !g.isEmpty }
            return false
        } }) else { throw BedFailure("the consumers did not create their groups (see \(dir)/consumer-*.log)") }
        for k in byPattern..<o.consumers { try startConsumer(k, ["--host-pattern", "fleet-*"]) }

        let t0 = now()
        // Publishers: every one seeded with the victim's URL (the worst case: the seed dies).
        for (i, h) in hosts.enumerated() {
            publishers.append(try Child(o.plugboard, [
                "run", "--plugins", plugins, "--source", "synthetic:\(o.events)",
                "--redis", "redis://127.0.0.1:\(victim)/0", "--redis-host", h, "--redis-maxlen", "0",
                "--shutdown-deadline", "240", "--set", "monitoring.enabled=false",
                "--set", "redis.wait_replicas=\(o.waitReplicas)", "--set", "redis.wait_timeout=\(o.waitTimeout)",
            ], stdout: "\(dir)/host-\(i + 1).log", name: h))
        }

        var tKill: Double?, tPromoted: Double?, tRestarted: Double?, tResumed: Double?, tReplicated: Double?
        var tConsumerKill: Double?, tPublished: Double?, tConsumed: Double?
        var storedAtKill = 0, victimLenAtPromotion: Int?
        let killedConsumer = min(1, o.consumers - 1)
        let deadline = t0 + o.timeoutSeconds
        var distinct = Set<Int>()  // host index * 2^32 + sequence
        var read = [Int](repeating: 0, count: o.consumers)
        let hostIndex = Dictionary(uniqueKeysWithValues: hosts.enumerated().map { ($1, $0) })
        while now() < deadline {
            for (k, out) in outputs.enumerated() {
                out.poll()
                for (h, s) in out.seen[read[k]...] { if let i = hostIndex[h] { distinct.insert(i << 32 | s) } }
                read[k] = out.seen.count
            }
            let t = now()
            if tKill == nil {
                let stored = hosts.reduce(0) { $0 + xlen($1, first: masterPorts[0]) }
                if Double(stored) >= o.killAt * Double(total) {
                    nodes.first { $0.port == victim }?.kill()
                    tKill = now()
                    storedAtKill = stored
                    say(String(format: "%.2fs: SIGKILL master %d (%d of %d events stored)", t - t0, victim, stored, total))
                }
            } else if tPromoted == nil {
                if topology().contains(where: { $0.port == promotedPort && $0.flags.contains("master") }) {
                    tPromoted = now()
                    victimLenAtPromotion = victimHosts.reduce(0) { $0 + xlen($1, first: promotedPort) }
                    say(String(format: "%.2fs: replica %d promoted; restarting %d, which rejoins as its replica", t - t0, promotedPort, victim))
                    try nodes.first { $0.port == victim }?.start()
                    tRestarted = now()
                }
            } else {
                if tResumed == nil, let before = victimLenAtPromotion,
                   victimHosts.reduce(0, { $0 + xlen($1, first: promotedPort) }) > before || victimHosts.isEmpty {
                    tResumed = now()
                    say(String(format: "%.2fs: publishing resumed on %d", t - t0, promotedPort))
                }
                if tReplicated == nil && replicaOnline(promotedPort) {
                    tReplicated = now()
                    say(String(format: "%.2fs: %d has its replica (%d) again", t - t0, promotedPort, victim))
                }
            }
            if tConsumerKill == nil && o.consumers > 1 && Double(distinct.count) >= o.consumerKillAt * Double(total) {
                consumers[killedConsumer].killNow()
                tConsumerKill = now()
                say(String(format: "%.2fs: SIGKILL consumer c%d", now() - t0, killedConsumer + 1))
            }
            if tPublished == nil && publishers.allSatisfy({ !$0.running }) {
                tPublished = now()
                say(String(format: "%.2fs: every publisher exited", tPublished! - t0))
            }
            if tConsumed == nil && distinct.count >= total {
                tConsumed = now()
                say(String(format: "%.2fs: every event consumed", tConsumed! - t0))
            }
            if tPublished != nil && tConsumed != nil && tReplicated != nil { break }
            usleep(50_000)
        }
        for c in consumers { c.signal(SIGINT) }
        for c in consumers { c.killNow() }
        for out in outputs { out.poll(maxBytes: Int.max) }

        // The verdict.
        var consumedBy: [Int: [(consumer: Int, at: Double)]] = [:]  // key -> who printed it, when
        var lines = 0
        for (k, out) in outputs.enumerated() {
            for ((h, s), at) in zip(out.seen, out.readAt) {
                guard let i = hostIndex[h] else { continue }
                consumedBy[i << 32 | s, default: []].append((k, at))
                lines += 1
            }
        }
        var incomplete: [String: Int] = [:]
        var storedDuplicates = 0, storedMissing = 0
        for (i, h) in hosts.enumerated() {
            let missing = (1...o.events).filter { consumedBy[i << 32 | $0] == nil }.count
            if missing > 0 { incomplete[h] = missing }
            let stored = try readStream(h, first: promotedPort)
            storedDuplicates += stored.count - Set(stored).count
            storedMissing += o.events - Set(stored).filter { (1...o.events).contains($0) }.count
        }
        let loss = incomplete.values.reduce(0, +)
        // Where each duplicate comes from: the killed consumer printed a copy (it died before its
        // XACK; another consumer claimed the entry), or the copy came after the master's kill (the
        // cluster refused XACKs with CLUSTERDOWN until the failover, or the killed master had not
        // replicated an XACK or a delivery: the entry was pending again), else unexplained.
        var dupKilledConsumer = 0, dupFailoverVictim = 0, dupFailoverOther = 0, dupOther = 0
        let victimSet = Set(victimHosts.compactMap { hostIndex[$0] })
        for (key, copies) in consumedBy where copies.count > 1 {
            let extra = copies.count - 1
            let last = copies.map(\.at).max()!
            if tConsumerKill != nil && copies.contains(where: { $0.consumer == killedConsumer }) { dupKilledConsumer += extra }
            else if let tKill, last >= tKill { if victimSet.contains(key >> 32) { dupFailoverVictim += extra } else { dupFailoverOther += extra } }
            else { dupOther += extra }
        }
        let exits = publishers.map { $0.running ? -1 : Int($0.process.terminationStatus) }
        var pubDuplicates = 0, pubReplayed = 0, pubRedirects = 0, pubReconnects = 0
        for i in hosts.indices {
            let log = (try? String(contentsOfFile: "\(dir)/host-\(i + 1).log", encoding: .utf8)) ?? ""
            guard let line = log.split(separator: "\n").last(where: { $0.contains("redis publisher stopped") }) else { continue }
            func field(_ name: String) -> Int {
                guard let r = line.range(of: " \(name)=") else { return 0 }
                return Int(line[r.upperBound...].prefix { $0.isNumber }) ?? 0
            }
            pubDuplicates += field("duplicates"); pubReplayed += field("replayed")
            pubRedirects += field("redirects"); pubReconnects += field("reconnects")
        }
        func ms(_ a: Double?, _ b: Double?) -> Any { (a != nil && b != nil) ? Int((b! - a!) * 1000) : NSNull() }
        let publishSeconds = (tPublished ?? now()) - t0, consumeSeconds = (tConsumed ?? now()) - t0
        let report: [String: Any] = [
            "hosts": o.hosts, "events_per_host": o.events, "events": total,
            "wait_replicas": o.waitReplicas, "victim_hosts": victimHosts.count,
            "publish_seconds": (publishSeconds * 100).rounded() / 100,
            "published_per_second": Int(Double(total) / publishSeconds),
            "published_per_second_before_kill": tKill.map { Int(Double(storedAtKill) / ($0 - t0)) } ?? NSNull(),
            "consume_seconds": (consumeSeconds * 100).rounded() / 100,
            "consumed_per_second": Int(Double(distinct.count) / consumeSeconds),
            "consumed_distinct": distinct.count, "consumed_lines": lines,
            "loss": loss, "incomplete_hosts": incomplete,
            "stored_missing": storedMissing, "stored_duplicates": storedDuplicates,
            "duplicates": lines - consumedBy.count,
            "duplicates_killed_consumer": dupKilledConsumer, "duplicates_failover_killed_master_streams": dupFailoverVictim,
            "duplicates_failover_other_streams": dupFailoverOther, "duplicates_unexplained": dupOther,
            "publisher_exit_codes": exits, "publisher_duplicates": pubDuplicates, "publisher_replayed": pubReplayed,
            "publisher_redirects": pubRedirects, "publisher_reconnects": pubReconnects,
            "failover": tPromoted != nil, "promoted_port": promotedPort, "killed_port": victim,
            "kill_to_promoted_ms": ms(tKill, tPromoted), "kill_to_resumed_ms": ms(tKill, tResumed),
            "kill_to_restarted_ms": ms(tKill, tRestarted), "kill_to_replicated_ms": ms(tKill, tReplicated),
            "killed_replica_rejoined": tReplicated != nil,
            "load_average": (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "",
        ]
        return report
    }
}

let options = Options()
var bed: Bed
do { bed = try Bed(options: options) } catch {
    say("\(error)")
    exit(2)
}
signal(SIGPIPE, SIG_IGN)
do {
    let report = try bed.run()
    bed.stopAll()
    let loss = report["loss"] as? Int ?? -1
    let text = """
        fleet: \(options.hosts) hosts x \(options.events) events = \(options.hosts * options.events), 3 masters + 3 replicas, \(options.consumers) consumers, wait_replicas \(options.waitReplicas)
          published: \(report["published_per_second"]!) events/s (\(report["published_per_second_before_kill"]!) before the kill), all stored after \(report["publish_seconds"]!) s; publisher exits \(report["publisher_exit_codes"]!)
          consumed:  \(report["consumed_per_second"]!) events/s, all consumed after \(report["consume_seconds"]!) s (\(report["consumed_lines"]!) lines)
          loss: \(loss); stored twice: \(report["stored_duplicates"]!); missing from the streams: \(report["stored_missing"]!)
          duplicates: \(report["duplicates"]!) = \(report["duplicates_killed_consumer"]!) printed by the killed consumer, not acknowledged, claimed and printed again + \(report["duplicates_failover_killed_master_streams"]!) on the killed master's streams after the kill (its XACKs/deliveries not replicated, or refused) + \(report["duplicates_failover_other_streams"]!) on other streams after the kill (XACK refused with CLUSTERDOWN during the failover, re-read as pending) + \(report["duplicates_unexplained"]!) unexplained
          publishers: \(report["publisher_duplicates"]!) replays answered "already stored", \(report["publisher_replayed"]!) commands replayed, \(report["publisher_reconnects"]!) reconnects, \(report["publisher_redirects"]!) redirects
          failover: master \(report["killed_port"]!) killed -> replica \(report["promoted_port"]!) promoted \(report["kill_to_promoted_ms"]!) ms, publishing resumed \(report["kill_to_resumed_ms"]!) ms, killed node restarted \(report["kill_to_restarted_ms"]!) ms and replicating again \(report["kill_to_replicated_ms"]!) ms after the kill
          load average: \(report["load_average"]!)
        """
    print(text)
    if options.json, let data = try? JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]) {
        print(String(decoding: data, as: UTF8.self))
    }
    exit(loss == 0 ? 0 : 1)
} catch {
    say("\(error)")
    bed.stopAll()
    exit(2)
}
