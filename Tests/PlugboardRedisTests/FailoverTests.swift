import Dispatch
import Foundation
import PlugboardRedis
import PlugboardTestSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The publisher and `tail` when a Redis Cluster master dies and its replica is promoted, and the
/// publisher's `WAIT` for replicas (`waitReplicas`): real redis-server nodes, 3 masters with a
/// replica each, `cluster-node-timeout` 1000 ms.
@Suite("Redis Cluster failover and WAIT (real redis-server masters and replicas)", .serialized)
struct FailoverTests {
    @Test("WAIT: a batch the replica does not have is not acknowledged; it is once the replica is back, every event stored once")
    func waitHoldsUntilReplicated() throws {
        let master = try RedisServer()
        defer { master.stop() }
        let replica = try RedisServer(extraArgs: ["--replicaof", "127.0.0.1", "\(master.port)"])
        defer { replica.stop() }
        #expect(eventually { (try? master.client().command(["INFO", "replication"]).text?.contains("state=online")) == true })
        var config = testConfiguration(master.url)
        config.waitReplicas = 1
        config.waitTimeout = .milliseconds(100)
        let gate = SourceGate(released: 1000)
        let publisher = RedisPublisher(configuration: config)
        try publisher.start(events: GeneratedEventSource(total: 3000, gate: gate))
        #expect(publisher.flush(timeout: .seconds(30)))
        #expect(publisher.stats.pending == 0)

        replica.signal(SIGSTOP)
        gate.release(upTo: 3000)
        // Stored on the master, but WAIT 1 gets 0 replicas: held, sent again, never acknowledged.
        #expect(eventually { (try? master.client().command(["XLEN", "plugboard:{test-host}:events"])) == .integer(3000) })
        #expect(!publisher.flush(timeout: .milliseconds(1500)))
        let held = publisher.stats
        #expect(held.pending > 0 && held.duplicates > 0, "unacknowledged and replayed while the replica is stopped: \(held)")
        #expect(held.lastError?.contains("0 of 1 replica(s) acknowledged") == true, "\(held.lastError ?? "")")

        replica.signal(SIGCONT)
        #expect(publisher.flush(timeout: .seconds(30)))
        let stats = publisher.stop()
        #expect(stats.pending == 0 && stats.published == 3000 && stats.rejected == 0, "\(stats)")
        expectExactlyOnce(try readAll(master.client(), "plugboard:{test-host}:events"), count: 3000, fieldStride: 97)
        expectExactlyOnce(try readAll(replica.client(), "plugboard:{test-host}:events"), count: 3000, fieldStride: 97)
    }

    @Test("the configured node is down at start: the publisher starts through clusterNodes (redis.cluster_nodes) and stores every event once")
    func startsThroughAnotherSeed() throws {
        let cluster = try RedisCluster()
        defer { cluster.stop() }
        let key = "plugboard:{test-host}:events"
        let dead = RedisURL(endpoint: .tcp(host: "127.0.0.1", port: try RedisServer.freePort()))
        var config = testConfiguration(dead)
        config.clusterNodes = [cluster.nodes[1].url, cluster.nodes[2].url]
        let publisher = RedisPublisher(configuration: config)
        try publisher.start(events: GeneratedEventSource(total: 5000, gate: SourceGate(released: 5000)))
        #expect(publisher.flush(timeout: .seconds(30)))
        let stats = publisher.stop()
        #expect(stats.published == 5000 && stats.rejected == 0, "\(stats)")
        expectExactlyOnce(try readAll(cluster.owner(of: key).client(), key), count: 5000, fieldStride: 101)
    }

    @Test("tail --redis <a node that is down> --cluster-node <a live one>: starts through it, with --host and --host-pattern, with a group")
    func tailStartsThroughAnotherSeed() throws {
        let cluster = try RedisCluster()
        defer { cluster.stop() }
        let publisher = RedisPublisher(configuration: testConfiguration(cluster.nodes[0].url, host: "seed-host"))
        try publisher.start(events: GeneratedEventSource(total: 120, gate: SourceGate(released: 120)))
        #expect(publisher.flush(timeout: .seconds(30)))
        publisher.stop()
        let dead = "redis://127.0.0.1:\(try RedisServer.freePort())/0"
        let live = "127.0.0.1:\(cluster.nodes[2].port)"
        let plain = try TailTests.tail(url: dead, ["--cluster-node", live, "--host", "seed-host", "--from", "0", "--count", "120"])
        #expect(plain.status == 0, "\(plain.stderr)")
        #expect(plain.lines.filter { $0.hasPrefix("PLUGBOARD[") }.count == 120, "\(plain.stderr)")
        let grouped = try TailTests.tail(url: dead, ["--cluster-node", live, "--host-pattern", "seed-*", "--from", "0",
                                                      "--group", "g", "--consumer", "c", "--count", "120"])
        #expect(grouped.status == 0, "\(grouped.stderr)")
        #expect(grouped.lines.filter { $0.hasPrefix("PLUGBOARD[seed-host ") }.count == 120, "\(grouped.stderr)")
        let bad = try TailTests.tail(url: dead, ["--cluster-node", "10.0.0.2", "--host", "seed-host"])
        #expect(bad.status == 64 && bad.stderr.contains("--cluster-node '10.0.0.2' is not HOST:PORT"), "\(bad.stderr)")
    }

    @Test("the master the publisher was seeded with dies with entries its replica lacks: the publisher finds the promoted replica and, with WAIT, loses nothing")
    func publisherSurvivesFailover() throws {
        let cluster = try RedisCluster(replicas: 1, nodeTimeoutMs: 1000)
        defer { cluster.stop() }
        let key = "plugboard:{test-host}:events"
        let master = try cluster.owner(of: key)
        let replica = try cluster.replica(of: master)
        var config = testConfiguration(master.url)
        config.waitReplicas = 1
        config.waitTimeout = .milliseconds(200)
        let gate = SourceGate(released: 5000)
        let publisher = RedisPublisher(configuration: config)
        try publisher.start(events: GeneratedEventSource(total: 10_000, gate: gate))
        #expect(publisher.flush(timeout: .seconds(30)))

        // The replica stops: the next batches reach the master only, which stores them, and dies.
        // (Not acknowledged, they are sent again after each WAIT that falls short: two batches.)
        replica.signal(SIGSTOP)
        gate.release(upTo: 10_000)
        #expect(eventually {
            guard case .integer(let n)? = try? master.client().command(["XLEN", key]) else { return false }
            return n > 5000
        })
        #expect(publisher.stats.pending > 0, "not acknowledged: the replica does not have them")
        master.kill()
        replica.signal(SIGCONT)
        #expect(eventually(timeout: .seconds(60)) { cluster.isMaster(replica) }, "the replica was promoted")
        // The promoted replica has no replica of its own until the old master comes back as one.
        try master.start()
        #expect(publisher.flush(timeout: .seconds(90)), "\(publisher.stats)")
        let stats = publisher.stop()
        #expect(stats.pending == 0 && stats.published == 10_000 && stats.rejected == 0 && stats.dropped == 0, "\(stats)")
        #expect(stats.redirects >= 1, "followed MOVED to the promoted replica: \(stats)")
        expectExactlyOnce(try readAll(replica.client(), key), count: 10_000, fieldStride: 101)
    }

    @Test("tail seeded with a master that dies: reconnects through another node to the promoted replica, prints every event once")
    func tailSurvivesFailover() throws {
        let cluster = try RedisCluster(replicas: 1, nodeTimeoutMs: 1000)
        defer { cluster.stop() }
        let key = "plugboard:{tail-host}:events"
        let master = try cluster.owner(of: key)
        let replica = try cluster.replica(of: master)
        var config = testConfiguration(master.url, host: "tail-host")
        config.waitReplicas = 1
        config.waitTimeout = .milliseconds(200)
        let gate = SourceGate(released: 200)
        let publisher = RedisPublisher(configuration: config)
        try publisher.start(events: GeneratedEventSource(total: 400, gate: gate))
        #expect(publisher.flush(timeout: .seconds(30)))

        var options = StreamTail.Options(url: master.url, host: "tail-host")
        options.from = "0"
        options.count = 400
        options.blockMs = 100
        final class Seen: Sendable {
            let ids = Mutex<[String]>([])
            let error = Mutex<String?>(nil)
            let done = DispatchSemaphore(value: 0)
        }
        let seen = Seen()
        let readerOptions = options
        let reader = Thread {
            do {
                try StreamTail(options: readerOptions).run { e in seen.ids.withLock { $0.append(e.id) } }
            } catch {
                seen.error.withLock { $0 = "\(error)" }
            }
            seen.done.signal()
        }
        reader.start()
        #expect(eventually { seen.ids.withLock { $0.count } == 200 })
        master.kill()
        #expect(eventually(timeout: .seconds(60)) { cluster.isMaster(replica) }, "the replica was promoted")
        // The next 200 go to the promoted replica, once the old master is back as its replica (WAIT 1).
        try master.start()
        gate.release(upTo: 400)
        #expect(publisher.flush(timeout: .seconds(60)))
        publisher.stop()
        #expect(seen.done.wait(timeout: .now() + 60) == .success, "tail did not finish after the failover")
        #expect(seen.error.withLock { $0 } == nil)
        let seqs = seen.ids.withLock { $0 }.compactMap { $0.split(separator: "-").last.flatMap { UInt64($0) } }
        #expect(seqs == Array(1...400), "every event once, in order")
    }
}

/// `plugboard-fleet-bed` at a small size: 10 `plugboard run` hosts x 10,000 events into a Redis
/// Cluster of 3 masters and 3 replicas, 3 `plugboard tail` consumers in one group; a master and a
/// consumer are killed mid-run (docs/benchmarks.md, "Fleet").
@Suite("A fleet on a Redis Cluster with a failover (plugboard-fleet-bed, the real binaries)", .serialized)
struct FleetBedTests {
    @Test("10 hosts x 10,000 events, a master and a consumer killed mid-run: nothing lost, every duplicate explained", .timeLimit(.minutes(4)))
    func fleetSurvivesFailover() throws {
        let out = Pipe(), err = Pipe()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: PackagePaths.product("plugboard-fleet-bed"))
        p.arguments = ["--plugboard", PackagePaths.product("plugboard"), "--hosts", "10", "--events", "10000",
                       "--timeout", "180", "--json"]
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let stderrData = Mutex(Data())
        let errReader = Thread { stderrData.withLock { $0 = err.fileHandleForReading.readDataToEndOfFile() } }
        errReader.start()
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        _ = eventually(timeout: .seconds(5)) { !stderrData.withLock { $0.isEmpty } }
        let stderr = String(decoding: stderrData.withLock { $0 }, as: UTF8.self)
        let json = try #require(stdout.split(separator: "\n").last { $0.hasPrefix("{") }, "no report; stderr:\n\(stderr.suffix(3000))")
        let r = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(p.terminationStatus == 0, "\(stdout)\n\(stderr.suffix(3000))")
        #expect(r["loss"] as? Int == 0, "\(stdout)")
        #expect((r["incomplete_hosts"] as? [String: Any])?.isEmpty == true, "each host's 10,000 events all consumed: \(stdout)")
        #expect(r["consumed_distinct"] as? Int == 100_000, "\(stdout)")
        #expect(r["stored_missing"] as? Int == 0 && r["stored_duplicates"] as? Int == 0, "each event stored once: \(stdout)")
        #expect(r["failover"] as? Bool == true && r["killed_replica_rejoined"] as? Bool == true, "a replica became master: \(stdout)")
        #expect(r["duplicates_unexplained"] as? Int == 0, "\(stdout)")
        #expect((r["publisher_exit_codes"] as? [Int]) == Array(repeating: 0, count: 10), "\(stdout)")
        // The bed sends its redis-servers' output to /dev/null: it must still be the device after
        // (an atomic "create file" once replaced it with a regular file for the whole machine).
        var st = stat()
        #expect(stat("/dev/null", &st) == 0 && (st.st_mode & S_IFMT) == S_IFCHR, "/dev/null is still a character device")
    }
}
