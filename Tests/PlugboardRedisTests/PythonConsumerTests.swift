import Foundation
import PlugboardRedis
import Testing
import PlugboardTestSupport

/// Debian's python3 with redis-py (package python3-redis, in the Makefile's APT_PACKAGES): a real
/// client no one here wrote. `python3` on PATH may be another interpreter without it.
enum RedisPy {
    static let python = "/usr/bin/python3"
    static let available: Bool = {
        guard FileManager.default.isExecutableFile(atPath: python),
              let r = try? TestProcess.run(python, ["-c", "import redis"]) else { return false }
        return r.status == 0
    }()
}

/// docs/examples/redis-consumer.py, the consumer docs/redis.md shows, against a stream the real
/// `plugboard run` published to a real redis-server.
@Suite("the documented redis-py consumer against the real stream", .serialized)
struct PythonConsumerTests {
    var plugboard: String { PackagePaths.product("plugboard") }
    var script: String { PackagePaths.root + "/docs/examples/redis-consumer.py" }

    /// One JSON object per line.
    func objects(_ text: String) throws -> [NSDictionary] {
        try text.split(separator: "\n").filter { $0.hasPrefix("{") }.map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? NSDictionary)
        }
    }

    @Test("docs/redis.md shows the script exactly as tested")
    func docsShowTheScript() throws {
        let docs = try String(contentsOfFile: PackagePaths.root + "/docs/redis.md", encoding: .utf8)
        let file = try String(contentsOfFile: script, encoding: .utf8)
        #expect(docs.contains("```python\n" + file + "```\n"), "copy docs/examples/redis-consumer.py into docs/redis.md, section \"A consumer in Python\"")
    }

    @Test("it prints every event run published once, each the object tail --json prints, claims a dead consumer's entries first and acknowledges all",
          .enabled(if: RedisPy.available, "redis-py is missing: /usr/bin/python3 cannot import redis (make deps installs python3-redis)"))
    func consumesTheRealStream() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let url = "redis://127.0.0.1:\(server.port)/0"
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pb-py-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let total = 500
        let run = try TestProcess.run(plugboard, ["run", "--plugins", dir, "--source", "synthetic:\(total)", "--redis", url, "--redis-host", "py-host"])
        #expect(run.status == 0, "\(run.output.suffix(2000))")

        // A consumer of the group that read 20 entries and died without acknowledging them.
        let key = "plugboard:{py-host}:events"
        let client = try server.client()
        #expect(try client.command(["XGROUP", "CREATE", key, "readers", "0"]) == .status("OK"))
        _ = try client.command(["XREADGROUP", "GROUP", "readers", "dead", "COUNT", "20", "STREAMS", key, ">"])
        usleep(200_000)

        let py = try TestProcess.run(RedisPy.python, [script, "--redis", url, "--host", "py-host", "--group", "readers",
                                                      "--consumer", "alive", "--claim-idle-ms", "100", "--count", "\(total)"])
        #expect(py.status == 0, "\(py.output.suffix(2000))")
        let consumed = try objects(py.output)
        let tail = try TestProcess.run(plugboard, ["tail", "--redis", url, "--host", "py-host", "--from", "0", "--count", "\(total)", "--json"])
        #expect(tail.status == 0, "\(tail.output.suffix(2000))")
        let tailed = try objects(tail.output)

        #expect(consumed.count == total && tailed.count == total)
        let sequences = consumed.compactMap { $0["sequence"] as? Int }
        #expect(sequences.sorted() == Array(1...total), "every event once")
        #expect(Array(sequences.prefix(20)).sorted() == Array(1...20), "the dead consumer's 20 were claimed first")
        let byID = Dictionary(uniqueKeysWithValues: tailed.map { ($0["id"] as? String ?? "", $0) })
        let differing = consumed.filter { byID[$0["id"] as? String ?? ""] != $0 }
        #expect(differing.isEmpty, "each object equals tail --json's: \(differing.prefix(2))")
        guard case .array(let pending) = try client.command(["XPENDING", key, "readers"]) else { Issue.record("XPENDING"); return }
        #expect(pending.first == .integer(0), "everything printed was acknowledged")
    }
}
