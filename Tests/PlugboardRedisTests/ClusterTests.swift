import Foundation
import PlugboardRedis
import Testing

/// Three real redis-server masters in cluster mode (`redis-cli --cluster create`), and with
/// `replicas: 1` a replica each (`--cluster-replicas 1`), online before `init` returns.
final class RedisCluster {
    let nodes: [RedisServer]

    init(replicas: Int = 0, nodeTimeoutMs: Int = 5000) throws {
        nodes = try (0..<(3 * (1 + replicas))).map { _ in
            try RedisServer(extraArgs: ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                        "--cluster-node-timeout", "\(nodeTimeoutMs)", "--repl-diskless-sync-delay", "0"])
        }
        let p = RedisServer.tool("/usr/bin/redis-cli", ["--cluster", "create"] + nodes.map { "127.0.0.1:\($0.port)" }
                                 + ["--cluster-replicas", "\(replicas)", "--cluster-yes"])
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw TestFailure("redis-cli --cluster create exited \(p.terminationStatus)") }
        let ok = eventually(timeout: .seconds(30)) { [nodes] in
            nodes.allSatisfy { n in
                guard case .string(let b)? = try? n.client().command(["CLUSTER", "INFO"]) else { return false }
                guard String(decoding: b, as: UTF8.self).contains("cluster_state:ok") else { return false }
                guard replicas > 0, case .string(let r)? = try? n.client().command(["INFO", "replication"]) else { return true }
                let info = String(decoding: r, as: UTF8.self)
                return info.contains("role:slave") || info.contains("state=online")
            }
        }
        guard ok else { throw TestFailure("the cluster did not reach cluster_state:ok (with its replicas online)") }
    }

    /// The node `CLUSTER NODES` (asked of a running node) lists as `node`'s replica. The node
    /// asked may learn of the replica a moment after the cluster reports ok (gossip): asked
    /// again for up to 10 s (a `make test` under load once found none on the first look).
    func replica(of node: RedisServer) throws -> RedisServer {
        let end = Date().addingTimeInterval(10)
        while true {
            let lines = try clusterNodes()
            if let id = lines.first(where: { $0[1].hasPrefix("127.0.0.1:\(node.port)@") })?[0],
               let line = lines.first(where: { $0[3] == id }) {
                guard let r = nodes.first(where: { line[1].hasPrefix("127.0.0.1:\($0.port)@") }) else { throw TestFailure("unknown node \(line[1])") }
                return r
            }
            if Date() > end { throw TestFailure("no replica of \(node.port) in CLUSTER NODES after 10 s") }
            usleep(100_000)
        }
    }

    /// Whether a running node sees `node` as a master that is not failing.
    func isMaster(_ node: RedisServer) -> Bool {
        guard let line = try? clusterNodes().first(where: { $0[1].hasPrefix("127.0.0.1:\(node.port)@") }) else { return false }
        let flags = line[2].split(separator: ",")
        return flags.contains("master") && !flags.contains("fail") && !flags.contains("fail?")
    }

    /// `CLUSTER NODES` of the first running node, one array of fields per line.
    func clusterNodes() throws -> [[Substring]] {
        for n in nodes where n.isRunning {
            guard case .string(let b)? = try? n.client().command(["CLUSTER", "NODES"]) else { continue }
            return String(decoding: b, as: UTF8.self).split(separator: "\n").map { $0.split(separator: " ") }.filter { $0.count >= 8 }
        }
        throw TestFailure("no running node answers CLUSTER NODES")
    }

    func stop() { nodes.forEach { $0.stop() } }

    /// The node serving `key`'s slot: the one that answers XLEN instead of MOVED.
    func owner(of key: String) throws -> RedisServer {
        for n in nodes {
            if case .integer = try n.client().command(["XLEN", key]) { return n }
        }
        throw TestFailure("no node serves \(key)")
    }

    func id(_ node: RedisServer) throws -> String {
        guard case .string(let b) = try node.client().command(["CLUSTER", "MYID"]) else { throw TestFailure("CLUSTER MYID") }
        return String(decoding: b, as: UTF8.self)
    }
}

@Suite("RedisPublisher against a real Redis Cluster", .serialized)
struct ClusterTests {
    @Test("pointed at a node that does not serve the stream's slot: follows MOVED, every event once on the owner")
    func followsMovedAtStart() throws {
        let cluster = try RedisCluster()
        defer { cluster.stop() }
        let key = "plugboard:{test-host}:events"
        let owner = try cluster.owner(of: key)
        let other = try #require(cluster.nodes.first { $0.port != owner.port })
        let publisher = RedisPublisher(configuration: testConfiguration(other.url))
        try publisher.start(events: GeneratedEventSource(total: 20_000, gate: SourceGate(released: 20_000)))
        #expect(publisher.flush(timeout: .seconds(60)))
        let stats = publisher.stop()
        #expect(stats.redirects >= 1 && stats.published == 20_000 && stats.rejected == 0, "\(stats)")
        expectExactlyOnce(try readAll(owner.client(), key), count: 20_000, fieldStride: 101)
    }

    @Test("the stream's slot migrates to another node mid-run (ASK, then MOVED): every event once on the new owner")
    func followsSlotMigration() throws {
        let cluster = try RedisCluster()
        defer { cluster.stop() }
        let key = "plugboard:{test-host}:events"
        let source = try cluster.owner(of: key)
        let target = try #require(cluster.nodes.first { $0.port != source.port })
        let gate = SourceGate(released: 10_000)
        let publisher = RedisPublisher(configuration: testConfiguration(source.url))
        try publisher.start(events: GeneratedEventSource(total: 30_000, gate: gate))
        #expect(eventually { publisher.stats.published == 10_000 })

        // The documented manual migration of one slot, with events still coming.
        let src = try source.client(), dst = try target.client()
        guard case .integer(let slot) = try src.command(["CLUSTER", "KEYSLOT", key]) else { throw TestFailure("KEYSLOT") }
        _ = try dst.command(["CLUSTER", "SETSLOT", "\(slot)", "IMPORTING", try cluster.id(source)])
        _ = try src.command(["CLUSTER", "SETSLOT", "\(slot)", "MIGRATING", try cluster.id(target)])
        gate.release(upTo: 20_000)
        #expect(eventually { publisher.stats.published >= 15_000 })
        let moved = try src.command(["MIGRATE", "127.0.0.1", "\(target.port)", "", "0", "5000", "KEYS", key])
        #expect(moved == .status("OK"), "\(moved)")
        gate.release(upTo: 30_000)
        usleep(100_000)  // the publisher meets ASK: the key left, the slot is not handed over yet
        for n in cluster.nodes {
            _ = try n.client().command(["CLUSTER", "SETSLOT", "\(slot)", "NODE", try cluster.id(target)])
        }
        #expect(publisher.flush(timeout: .seconds(60)))
        let stats = publisher.stop()
        #expect(stats.redirects >= 1 && stats.published == 30_000 && stats.rejected == 0 && stats.dropped == 0, "\(stats)")
        guard case .error(let e) = try src.command(["EXISTS", key]) else { Issue.record("the old node still serves the slot"); return }
        #expect(e.hasPrefix("MOVED \(slot) 127.0.0.1:\(target.port)"))
        expectExactlyOnce(try readAll(dst, key), count: 30_000, fieldStride: 101)
    }
}

/// `plugboard tail` (the real binary) against a real Redis Cluster: redirects and hosts on every node.
@Suite("plugboard tail against a real Redis Cluster", .serialized)
struct ClusterTailTests {
    /// Publishes test events 1...n for `host` through `node` (the publisher follows MOVED itself).
    func publish(_ n: Int, host: String, through node: RedisServer) throws {
        let publisher = RedisPublisher(configuration: testConfiguration(node.url, host: host))
        try publisher.start(events: GeneratedEventSource(total: n, gate: SourceGate(released: n)))
        #expect(publisher.flush(timeout: .seconds(60)))
        publisher.stop()
    }

    func sequences(_ lines: [Substring]) -> [UInt64] {
        lines.filter { $0.hasPrefix("PLUGBOARD[") }.compactMap { $0.split(separator: "]").first?.split(separator: "-").last.flatMap { UInt64($0) } }
    }

    @Test("pointed at a node that does not serve the stream: tail follows MOVED and prints every event, with and without a group")
    func followsMoved() throws {
        let cluster = try RedisCluster()
        defer { cluster.stop() }
        let key = "plugboard:{test-host}:events"
        let owner = try cluster.owner(of: key)
        let other = try #require(cluster.nodes.first { $0.port != owner.port })
        try publish(250, host: "test-host", through: other)
        let plain = try TailTests.tail(url: other.url.redacted, ["--host", "test-host", "--from", "0", "--count", "250"])
        #expect(plain.status == 0, "\(plain.stderr)")
        #expect(sequences(plain.lines) == Array(1...250))
        #expect(plain.stderr.contains("following MOVED to redis://127.0.0.1:\(owner.port)/0"), "\(plain.stderr)")
        let grouped = try TailTests.tail(url: other.url.redacted, ["--host", "test-host", "--from", "0", "--group", "g",
                                                                    "--consumer", "c", "--count", "250"])
        #expect(grouped.status == 0, "\(grouped.stderr)")
        #expect(sequences(grouped.lines) == Array(1...250))
        guard case .array(let summary) = try owner.client().command(["XPENDING", key, "g"]) else { Issue.record("XPENDING"); return }
        #expect(summary.first == .integer(0), "every entry acknowledged, on the owner")
    }

    @Test("during a slot migration, after the key left the old node: tail follows ASK to the new one and prints every event")
    func followsAsk() throws {
        let cluster = try RedisCluster()
        defer { cluster.stop() }
        let key = "plugboard:{test-host}:events"
        let source = try cluster.owner(of: key)
        let target = try #require(cluster.nodes.first { $0.port != source.port })
        try publish(150, host: "test-host", through: source)
        let src = try source.client(), dst = try target.client()
        guard case .integer(let slot) = try src.command(["CLUSTER", "KEYSLOT", key]) else { throw TestFailure("KEYSLOT") }
        _ = try dst.command(["CLUSTER", "SETSLOT", "\(slot)", "IMPORTING", try cluster.id(source)])
        _ = try src.command(["CLUSTER", "SETSLOT", "\(slot)", "MIGRATING", try cluster.id(target)])
        #expect(try src.command(["MIGRATE", "127.0.0.1", "\(target.port)", "", "0", "5000", "KEYS", key]) == .status("OK"))
        guard case .error(let e) = try src.command(["XLEN", key]), e.hasPrefix("ASK ") else {
            Issue.record("the old node does not answer ASK"); return
        }
        let r = try TailTests.tail(url: source.url.redacted, ["--host", "test-host", "--from", "0", "--count", "150"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(sequences(r.lines) == Array(1...150))
        #expect(r.stderr.contains("following ASK to redis://127.0.0.1:\(target.port)/0"), "\(r.stderr)")
        for n in cluster.nodes { _ = try n.client().command(["CLUSTER", "SETSLOT", "\(slot)", "NODE", try cluster.id(target)]) }
    }

    @Test("--host-pattern finds hosts whose streams live on all three nodes (SCAN on every master) and prints each host's events")
    func patternOverEveryNode() throws {
        let cluster = try RedisCluster()
        defer { cluster.stop() }
        // Host names until every node serves at least one of them.
        var hosts: [String] = []
        var served = Set<Int>()
        for i in 0..<60 where served.count < 3 || hosts.count < 4 {
            let host = "node-\(i)"
            let port = try cluster.owner(of: StreamKeys(host: host).events).port
            if !served.contains(port) || hosts.count < 4 { hosts.append(host); served.insert(port) }
        }
        #expect(served.count == 3, "hosts on every node")
        for h in hosts { try publish(20, host: h, through: cluster.nodes[0]) }
        let r = try TailTests.tail(url: cluster.nodes[1].url.redacted, ["--host-pattern", "node-*", "--from", "0",
                                                                         "--count", "\(20 * hosts.count)", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        var byHost: [String: [Int]] = [:]
        for line in r.lines {
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
            byHost[o["host"] as? String ?? "?", default: []].append(o["sequence"] as? Int ?? 0)
        }
        #expect(byHost == Dictionary(uniqueKeysWithValues: hosts.map { ($0, Array(1...20)) }), "\(byHost.mapValues(\.count))")
    }
}
