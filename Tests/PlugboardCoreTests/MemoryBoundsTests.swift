import CPlugboard
import Foundation
import PlugboardCore
import PlugboardTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Memory pressure (docs/operations.md, "Memory and batching"): a worker that dies at its memory
/// limit is named as such, and each of the host's own bounds, when hit, is counted, never silent.
@Suite("Memory bounds: the worker memory limit named as a crash reason; the device table and the output queue bounded and counted")
struct MemoryBoundsTests {
    /// The misbehave plugin compiled into `dir` (the hog mode is in the source).
    static func misbehave(in dir: String) throws -> String {
        let path = "\(dir)/libmisbehave.so"
        let r = try TestSupport.run("/usr/bin/cc", ["-std=gnu11", "-O2", "-shared", "-fPIC", "-fvisibility=hidden",
                                                    "-I", TestSupport.packageRoot + "/SDK/include", "-o", path,
                                                    TestSupport.packageRoot + "/Tests/TestPlugins/misbehave/misbehave.c", "-ldl"])
        #expect(r.status == 0, "\(r.output)")
        return path
    }

    /// Runs misbehave in `mode` on one event in a worker process limited to 256 MiB of address
    /// space, until it has crashed twice on that event (then it is withheld: a poison event).
    func crashUnderLimit(mode: String) throws -> PluginStats {
        let dir = try TestSupport.tempDir("memlimit")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var options = RuntimeOptions()
        options.ringSlots = 16
        var policy = ProcessPolicy(workerExecutable: PackagePaths.product("plugboard-worker"))
        policy.restartBackoff = .milliseconds(5)
        policy.addressSpace = 256 << 20
        options.processPolicy = policy
        let rt = try Runtime(options: options, logger: TestSupport.logger)
        let path = try Self.misbehave(in: dir)
        #expect(rt.addProcessPlugin(ProcessPluginSpec(path: path, name: "misbehave", version: "1",
                                                      configuration: ["mode": mode, "where": "events", "at_sequence": "1"],
                                                      batchSize: 4, deadline: nil, manifest: [])))
        #expect(rt.startWorkers() == 1, "\(rt.failures.map(\.description))")
        rt.start(source: SyntheticSource(count: 1))
        rt.waitUntilDrained()
        _ = rt.stop(deadline: .seconds(10))
        return try #require(rt.pluginStats.first)
    }

    @Test("a plugin that allocates without end under plugins.memory_limit crashes with reason memory_limit, naming the peak and the limit")
    func memoryLimitNamed() throws {
        let stats = try crashUnderLimit(mode: "hog")
        #expect(stats.crashes == [MemoryLimitReport.label: 2], "\(stats.crashes)")
        let text = try #require(stats.lastCrash)
        #expect(text.hasPrefix("killed by SIGABRT"), "\(text)")
        #expect(text.contains("of its 256.0 MiB limit (plugins.memory_limit): the memory limit is the likely cause (fix: raise plugins.memory_limit"), "\(text)")
        #expect(stats.skipped == 1)
    }

    @Test("an abort far below the limit stays an abort: the peak is given, the limit is not blamed")
    func abortBelowLimitNotBlamed() throws {
        let stats = try crashUnderLimit(mode: "abort")
        #expect(stats.crashes == ["SIGABRT": 2], "\(stats.crashes)")
        let text = try #require(stats.lastCrash)
        #expect(text.contains("of its 256.0 MiB limit (plugins.memory_limit)") && !text.contains("likely cause"), "\(text)")
    }

    /// A device event for `/sys/devices/bound/NAME`.
    static func publish(_ producer: RingProducer, _ context: SourceContext, _ action: EventAction, _ name: String) {
        context.publishDeviceEvent { w in
            w.action = action
            w.event.pointee.vendor_id = 0x1234
            w.event.pointee.product_id = 0x5678
            w.setString(.syspath, "/sys/devices/bound/\(name)")
        }
    }

    /// A finite source of device events (through the device table, as udev and replay do).
    final class DeviceScript: EventSource {
        let steps: [(EventAction, String)]
        init(_ steps: [(EventAction, String)]) { self.steps = steps }
        var name: String { "devices" }
        var isFinite: Bool { true }
        func run(_ context: SourceContext) throws {
            for (a, n) in steps { MemoryBoundsTests.publish(context.producer, context, a, n) }
        }
    }

    @Test("a full device table leaves new devices out and counts them; known devices update, a remove makes room; plugins still get every event")
    func deviceTableBound() throws {
        let dir = try TestSupport.tempDir("devbound")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var options = RuntimeOptions()
        options.ringSlots = 64
        options.maxDevices = 2
        let rt = try Runtime(options: options, logger: TestSupport.logger)
        let out = "\(dir)/rec.txt"
        rt.addPlugin(try PluginLoader.open(try ProcessWorkerCoreTests.recorder(named: "rec", in: dir)), configuration: ["output": out])
        #expect(rt.startWorkers() == 1)
        rt.start(source: DeviceScript([(.add, "a"), (.add, "b"), (.add, "c"), (.change, "a"), (.add, "d"),
                                        (.remove, "b"), (.add, "e")]))
        rt.waitUntilDrained()
        _ = rt.stop(deadline: .seconds(10))
        #expect(rt.deviceTable.syspaths == ["/sys/devices/bound/a", "/sys/devices/bound/e"])
        #expect(rt.deviceTable.refused == 2, "c and d found the table full")
        #expect(recorded(out).count == 7, "the plugin got every event, refused devices too")
    }

    @Test("a full output queue refuses publish with PB_ERR_FULL and counts it, in total and per plugin")
    func outputQueueBound() throws {
        let dir = try TestSupport.tempDir("outbound")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var options = RuntimeOptions()
        options.ringSlots = 256
        options.outputQueueRecords = 16
        let rt = try Runtime(options: options, logger: TestSupport.logger)
        rt.addPlugin(try PluginLoader.open(try ProcessWorkerCoreTests.recorder(named: "pub", in: dir)),
                     configuration: ["output": "\(dir)/pub.txt", "publish": "1"])
        #expect(rt.startWorkers() == 1)
        rt.start(source: SyntheticSource(count: 200))  // nothing drains the queue here
        rt.waitUntilDrained()
        _ = rt.stop(deadline: .seconds(10))
        #expect(rt.outputQueue.count == 16)
        #expect(rt.outputQueue.fullRefusals == 184)
        #expect(rt.pluginStats.first?.publishRefused == 184)
    }

    func recorded(_ path: String) -> [String] {
        TestSupport.lines(path).filter { $0.first?.isNumber == true }
    }
}
