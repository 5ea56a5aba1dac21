import Foundation
import PlugboardRedis
import Testing

/// Three real redis-server nodes in cluster mode (`redis-cli --cluster create`), no replicas.
final class RedisCluster {
    let nodes: [RedisServer]

    init() throws {
        nodes = try (0..<3).map { _ in
            try RedisServer(extraArgs: ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                        "--cluster-node-timeout", "5000"])
        }
        let p = RedisServer.tool("/usr/bin/redis-cli", ["--cluster", "create"] + nodes.map { "127.0.0.1:\($0.port)" } + ["--cluster-yes"])
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw TestFailure("redis-cli --cluster create exited \(p.terminationStatus)") }
        let ok = eventually(timeout: .seconds(20)) {
            nodes.allSatisfy { n in
                guard case .string(let b)? = try? n.client().command(["CLUSTER", "INFO"]) else { return false }
                return String(decoding: b, as: UTF8.self).contains("cluster_state:ok")
            }
        }
        guard ok else { throw TestFailure("the cluster did not reach cluster_state:ok") }
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
