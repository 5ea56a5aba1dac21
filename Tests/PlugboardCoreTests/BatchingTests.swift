import CPlugboard
import Foundation
import PlugboardCore
import PlugboardTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Adaptive batching (docs/operations.md, "Memory and batching"): a batch is what is waiting when
/// the worker polls, up to the plugin's ceiling. Checked on what the plugin itself was handed (the
/// recorder's `BATCH n` lines) and on the host's batch-size histogram, which must agree.
@Suite("Batching: 1 event per call when events come one at a time, up to the ceiling under a burst, never above")
struct BatchingTests {
    static let ceiling = 16

    /// One recorder (`batch_log`), in `isolation`, with the ceiling above.
    func runtime(_ isolation: Isolation, in dir: String, config: PluginConfiguration) throws -> Runtime {
        var options = RuntimeOptions()
        options.ringSlots = 256
        options.batchSize = Self.ceiling
        var policy = ProcessPolicy(workerExecutable: PackagePaths.product("plugboard-worker"))
        policy.restartBackoff = .milliseconds(5)
        options.processPolicy = policy
        let rt = try Runtime(options: options, logger: TestSupport.logger)
        let path = try ProcessWorkerCoreTests.recorder(named: "batched", in: dir)
        switch isolation {
        case .thread:
            #expect(rt.addPlugin(try PluginLoader.open(path), configuration: config))
        case .process:
            #expect(rt.addProcessPlugin(ProcessPluginSpec(path: path, name: "batched", version: "1", configuration: config,
                                                          batchSize: Self.ceiling, deadline: nil, manifest: [])))
        }
        #expect(rt.startWorkers() == 1, "\(rt.failures.map(\.description))")
        return rt
    }

    /// The batch sizes the recorder wrote.
    static func batches(_ path: String) -> [Int] {
        TestSupport.lines(path).compactMap { $0.hasPrefix("BATCH ") ? Int($0.dropFirst(6)) : nil }
    }

    /// The host's histogram must say what the plugin saw: same number of batches and events, same buckets.
    static func expectAgrees(_ host: BatchSizes.Snapshot, with seen: [Int]) {
        var buckets = Array(repeating: UInt64(0), count: BatchSizes.bucketCount)
        for n in seen { buckets[BatchSizes.bucket(of: n)] += 1 }
        #expect(host.batches == UInt64(seen.count) && host.events == UInt64(seen.reduce(0, +)), "\(host) vs \(seen.count) batches")
        #expect(host.buckets == buckets && host.largest == UInt64(seen.max() ?? 0), "\(host)")
    }

    @Test("events sent one at a time, each after the last was delivered, arrive one per call", arguments: [Isolation.thread, .process])
    func idleMeansOne(isolation: Isolation) throws {
        let dir = try TestSupport.tempDir("batch-idle")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = "\(dir)/batched.txt"
        let rt = try runtime(isolation, in: dir, config: ["output": out, "batch_log": "1"])
        let source = GatedSource()
        rt.start(source: source)
        for i in 0..<20 {
            source.send([.change("d\(i % 3)", "s\(i)")])
            let end = ContinuousClock.now + .seconds(30)
            while Self.batches(out).count < i + 1 {
                if ContinuousClock.now > end { throw TestFailure("event \(i) was not delivered") }
                usleep(1_000)
            }
        }
        let host = try #require(rt.workers.first).batchSizes
        _ = rt.stop(deadline: .seconds(10))
        let seen = Self.batches(out)
        #expect(seen == Array(repeating: 1, count: 20), "\(seen)")
        Self.expectAgrees(host, with: seen)
    }

    @Test("a burst at a slow plugin is delivered in batches at the ceiling, none above it", arguments: [Isolation.thread, .process])
    func burstFillsToCeiling(isolation: Isolation) throws {
        let dir = try TestSupport.tempDir("batch-burst")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = "\(dir)/batched.txt"
        // 300 µs per call: the burst (a finite source, held back only by the ring's flow control)
        // is always far ahead of the plugin.
        let rt = try runtime(isolation, in: dir, config: ["output": out, "batch_log": "1", "delay_us": "300"])
        let steps = (0..<2000).map { Step.change("d\($0 % 7)", "s\($0)") }
        rt.start(source: ScriptSource(steps))
        rt.waitUntilDrained()
        let host = try #require(rt.workers.first).batchSizes
        _ = rt.stop(deadline: .seconds(10))
        let seen = Self.batches(out)
        #expect(seen.reduce(0, +) == 2000)
        #expect(seen.max() == Self.ceiling, "never above the ceiling, and it is reached: \(seen.max() ?? 0)")
        // Nearly every event rides in a full batch (the first and last batches may be partial).
        let inFull = seen.filter { $0 == Self.ceiling }.reduce(0, +)
        #expect(inFull >= 1600, "\(inFull) of 2000 events in full batches: \(seen)")
        Self.expectAgrees(host, with: seen)
    }
}
