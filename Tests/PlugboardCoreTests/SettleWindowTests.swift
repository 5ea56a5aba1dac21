import CPlugboard
import Foundation
import PlugboardCore
import PlugboardTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// One event a test source publishes: an action on a device (by name), with a product string
/// that stands for the device's state.
struct Step: Sendable {
    var action: EventAction
    var device: String
    var state: String

    static func add(_ d: String, _ s: String = "s0") -> Step { Step(action: .add, device: d, state: s) }
    static func remove(_ d: String, _ s: String = "gone") -> Step { Step(action: .remove, device: d, state: s) }
    static func change(_ d: String, _ s: String) -> Step { Step(action: .change, device: d, state: s) }

    func publish(_ producer: RingProducer) {
        producer.publish { w in
            w.action = action
            w.event.pointee.vendor_id = 0x1234
            w.event.pointee.product_id = 0x5678
            w.setString(.syspath, "/sys/devices/settle/\(device)")
            w.setString(.product, state)
        }
    }
}

/// A finite source: publishes its steps, then the ring closes (each window then closes at once).
final class ScriptSource: EventSource {
    let steps: [Step]
    init(_ steps: [Step]) { self.steps = steps }
    var name: String { "script" }
    var isFinite: Bool { true }
    func run(_ context: SourceContext) throws {
        for s in steps { s.publish(context.producer) }
    }
}

/// A live source: publishes what the test hands it, when it does, until stopped.
final class GatedSource: EventSource {
    let queue = Mutex<[Step]>([])
    var name: String { "gated" }
    var isFinite: Bool { false }
    func send(_ steps: [Step]) { queue.withLock { $0 += steps } }
    func run(_ context: SourceContext) throws {
        while !context.shouldStop {
            let next = queue.withLock { q -> [Step] in
                defer { q = [] }
                return q
            }
            for s in next { s.publish(context.producer) }
            usleep(200)
        }
    }
}

/// What a recorder wrote: sequence, action, device, state.
struct Seen: Equatable, CustomStringConvertible {
    var sequence: UInt64
    var action: String
    var device: String
    var state: String
    var description: String { "\(sequence) \(action) \(device) \(state)" }

    static func read(_ path: String) -> [Seen] {
        TestSupport.lines(path).compactMap { line in
            let f = line.split(separator: " ")
            guard f.count > 2, let seq = UInt64(f[0]) else { return nil }
            func field(_ k: String) -> String {
                f.first { $0.hasPrefix(k + "=") }.map { String($0.dropFirst(k.count + 1)) } ?? ""
            }
            return Seen(sequence: seq, action: String(f[1]), device: String(field("syspath").split(separator: "/").last ?? ""),
                        state: field("product"))
        }
    }
}

@Suite("Settle window: a plugin that opts in gets each device's net change; the others every event at once")
struct SettleWindowTests {
    /// A long window: within a test it closes only when the stream ends (or never, for a live one).
    static let long = SettleOptions(window: .seconds(60))

    /// A runtime with recorders named `plugins` (each with its settle options), in `isolation`.
    func runtime(_ isolation: Isolation, _ plugins: [(name: String, settle: SettleOptions?)], in dir: String) throws -> Runtime {
        var options = RuntimeOptions()
        options.ringSlots = 256
        var policy = ProcessPolicy(workerExecutable: PackagePaths.product("plugboard-worker"))
        policy.restartBackoff = .milliseconds(5)
        options.processPolicy = policy
        let rt = try Runtime(options: options, logger: TestSupport.logger)
        for p in plugins {
            let path = try ProcessWorkerCoreTests.recorder(named: p.name, in: dir)
            let config: PluginConfiguration = ["output": "\(dir)/\(p.name).txt"]
            switch isolation {
            case .thread:
                #expect(rt.addPlugin(try PluginLoader.open(path), configuration: config, settle: p.settle))
            case .process:
                var spec = ProcessPluginSpec(path: path, name: p.name, version: "1", configuration: config, batchSize: 16,
                                             deadline: nil, manifest: [])
                spec.settle = p.settle
                #expect(rt.addProcessPlugin(spec))
            }
        }
        #expect(rt.startWorkers() == plugins.count, "\(rt.failures.map(\.description))")
        return rt
    }

    /// Runs `steps` through one settled recorder to the end of the stream.
    func settle(_ steps: [Step], _ isolation: Isolation, options: SettleOptions = long) throws -> ([Seen], PluginStats) {
        let dir = try TestSupport.tempDir("settle")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let rt = try runtime(isolation, [("settled", options)], in: dir)
        rt.start(source: ScriptSource(steps))
        rt.waitUntilDrained()
        return (Seen.read("\(dir)/settled.txt"), try #require(rt.pluginStats.first))
    }

    /// Waits (at most 30 s, for a loaded machine) until `done` holds.
    func waitFor(_ what: String, _ done: () -> Bool) throws {
        let end = ContinuousClock.now + .seconds(30)
        while !done() {
            if ContinuousClock.now > end { throw TestFailure("timed out waiting for \(what)") }
            usleep(2_000)
        }
    }

    @Test("a device added and removed within the window is delivered as nothing and counted as a flap",
          arguments: [Isolation.thread, .process])
    func flapIsNothing(isolation: Isolation) throws {
        let (seen, stats) = try settle([.add("a"), .remove("a")], isolation)
        #expect(seen.isEmpty, "\(seen)")
        #expect(stats.settleFlaps == 1 && stats.settleCoalesced == 2 && stats.events == 0, "\(stats)")
    }

    @Test("a burst of changes within the window is delivered once, as the last state; a new device arrives as add",
          arguments: [Isolation.thread, .process])
    func burstIsLastState(isolation: Isolation) throws {
        // "a" is new: add then changes → one add in its last state. "b" was there: changes → its last change.
        let steps: [Step] = [.add("a", "s0"), .change("a", "s1"), .change("a", "s2"), .change("a", "s3"),
                             .change("b", "t1"), .change("b", "t2")]
        let (seen, stats) = try settle(steps, isolation)
        #expect(seen == [Seen(sequence: 4, action: "add", device: "a", state: "s3"),
                         Seen(sequence: 6, action: "change", device: "b", state: "t2")], "\(seen)")
        #expect(stats.events == 2 && stats.settleCoalesced == 4 && stats.settleFlaps == 0, "\(stats)")
    }

    @Test("two devices interleaved are settled each on its own: one flaps, the other arrives in its last state",
          arguments: [Isolation.thread, .process])
    func interleavedDevices(isolation: Isolation) throws {
        let steps: [Step] = [.add("a", "a0"), .add("b", "b0"), .change("a", "a1"), .remove("b"), .change("a", "a2"),
                             .add("c", "c0"), .remove("c")]
        let (seen, stats) = try settle(steps, isolation)
        #expect(seen == [Seen(sequence: 5, action: "add", device: "a", state: "a2")], "\(seen)")
        #expect(stats.settleFlaps == 2 && stats.settleCoalesced == 6 && stats.events == 1, "\(stats)")
    }

    @Test("a removed device that comes back within the window is delivered as its last add, not as a flap",
          arguments: [Isolation.thread, .process])
    func replugIsLastAdd(isolation: Isolation) throws {
        let (seen, stats) = try settle([.change("a", "old"), .remove("a"), .add("a", "new")], isolation)
        #expect(seen == [Seen(sequence: 3, action: "add", device: "a", state: "new")], "\(seen)")
        #expect(stats.settleFlaps == 0 && stats.settleCoalesced == 2, "\(stats)")
    }

    @Test("past performance.settle_devices held devices, another device's event goes at once and is counted",
          arguments: [Isolation.thread, .process])
    func boundedDevices(isolation: Isolation) throws {
        let steps: [Step] = [.add("a"), .add("b"), .add("c"), .change("a", "a1")]
        let (seen, stats) = try settle(steps, isolation, options: SettleOptions(window: .seconds(60), maxDevices: 2))
        // c found no room: delivered at once, before a and b (held until the stream ended).
        #expect(seen.map(\.description) == ["3 add c s0", "4 add a a1", "2 add b s0"], "\(seen)")
        #expect(stats.settleOverflow == 1 && stats.events == 3 && stats.settleCoalesced == 1, "\(stats)")
    }

    @Test("a window that expires delivers the device with no further event; the next event opens a new window",
          arguments: [Isolation.thread, .process])
    func expiryDelivers(isolation: Isolation) throws {
        let dir = try TestSupport.tempDir("settle")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let rt = try runtime(isolation, [("settled", SettleOptions(window: .milliseconds(100)))], in: dir)
        let source = GatedSource()
        rt.start(source: source)
        let out = "\(dir)/settled.txt"
        source.send([.add("a", "a0"), .change("a", "a1")])
        // The stream stays open and nothing else is sent: only the window's own timer can deliver.
        try waitFor("the expired window to deliver") { Seen.read(out).count == 1 }
        #expect(rt.ring.published == 2)
        source.send([.remove("a")])
        try waitFor("the second window to deliver") { Seen.read(out).count == 2 }
        _ = rt.stop(deadline: .seconds(10))
        // In one window these three would have been a flap (nothing); in two they are add, then remove.
        #expect(Seen.read(out).map(\.description) == ["2 add a a1", "3 remove a gone"])
        let stats = try #require(rt.pluginStats.first)
        #expect(stats.settleFlaps == 0 && stats.settleCoalesced == 1 && stats.events == 2, "\(stats)")
    }

    @Test("in one run, a plugin without the window sees every event at once while the settled one still holds them",
          arguments: [Isolation.thread, .process])
    func othersSeeEveryEvent(isolation: Isolation) throws {
        let dir = try TestSupport.tempDir("settle")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let rt = try runtime(isolation, [("plain", nil), ("settled", Self.long)], in: dir)
        let source = GatedSource()
        rt.start(source: source)
        let steps: [Step] = [.add("a", "a0"), .change("a", "a1"), .remove("a"), .add("b", "b0"), .change("b", "b1"),
                             .change("b", "b2")]
        source.send(steps)
        try waitFor("the plain plugin to see all six") { Seen.read("\(dir)/plain.txt").count == 6 }
        try waitFor("the settled plugin to read all six") { rt.pluginStats.first { $0.name == "settled" }?.lag == 0 }
        // It read them all (its cursor moved, so it holds back no one), but its 60 s windows are open:
        // it has been handed nothing yet.
        #expect(Seen.read("\(dir)/settled.txt").isEmpty)
        let settled = try #require(rt.pluginStats.first { $0.name == "settled" })
        #expect(settled.events == 0 && settled.settleWindow == .seconds(60), "\(settled)")
        _ = rt.stop(deadline: .seconds(10))
        #expect(Seen.read("\(dir)/plain.txt").map(\.sequence) == [1, 2, 3, 4, 5, 6])
        #expect(Seen.read("\(dir)/settled.txt").map(\.description) == ["6 add b b2"], "a flapped; b arrived in its last state")
        let plain = try #require(rt.pluginStats.first { $0.name == "plain" })
        #expect(plain.events == 6 && plain.settleWindow == nil && plain.settleCoalesced == 0, "\(plain)")
    }
}
