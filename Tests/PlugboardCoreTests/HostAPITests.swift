import CPlugboard
import Foundation
import PlugboardCore
import PlugboardReplay
import Testing

@Suite("Host API")
struct HostAPITests {
    @Test("metrics, config, device table and publish calls from a plugin reach the host")
    func hostCallsWork() throws {
        let dir = try TestSupport.pluginDir([(TestSupport.plugin("pbtest-recorder"), "librecorder.so")])
        let out = "\(dir)/out"
        let replay = try TestSupport.replayFile([
            #"{"action":"add","vendor_id":"0001","product_id":"0002","syspath":"/sys/devices/a"}"#,
            #"{"action":"add","vendor_id":"0003","product_id":"0004","syspath":"/sys/devices/b"}"#,
            #"{"action":"remove","syspath":"/sys/devices/a"}"#,
        ])
        let runtime = try TestSupport.runToEnd(
            pluginDirs: [dir], source: ReplaySource(path: replay, pace: 0),
            config: ["recorder": ["output": out, "publish": "1", "dump_table": "1"]])
        let worker = try #require(runtime.workers.first as? Worker)
        let metrics = worker.context.metricsSnapshot
        #expect(metrics.counters["events"] == 3)
        #expect(metrics.counters["shutdowns"] == 1)
        #expect(metrics.gauges["last_batch"] != nil)
        // device_table at shutdown: only /sys/devices/b is left, as a resync record from the table.
        let table = TestSupport.lines(out).filter { $0.hasPrefix("TABLE ") }
        #expect(table.count == 1)
        #expect(table.first?.contains("resync flags=8") == true && table.first?.contains("id=0003:0004") == true)
        // publish: one record per event, in order.
        let published = runtime.outputQueue.drain()
        #expect(published.map { String(decoding: $0.payload, as: UTF8.self) } == ["1", "2", "3"])
        #expect(published.allSatisfy { $0.plugin == "recorder" && $0.topic == "seen" })
        #expect(worker.stats.published == 3)
    }

    @Test("publish past the output queue's bound is refused with PB_ERR_FULL and counted")
    func publishBounded() throws {
        let dir = try TestSupport.pluginDir([(TestSupport.plugin("pbtest-recorder"), "librecorder.so")])
        var options = RuntimeOptions()
        options.outputQueueRecords = 10
        let runtime = try TestSupport.runToEnd(pluginDirs: [dir], source: SyntheticSource(count: 25), options: options,
                                               config: ["recorder": ["output": "\(dir)/out", "publish": "1"]])
        let stats = try #require(runtime.pluginStats.first)
        #expect(stats.published == 10)
        #expect(stats.publishRefused == 15)
        #expect(runtime.outputQueue.rejected == 15)
        #expect(runtime.outputQueue.drain().count == 10)
    }
}

@Suite("State transfer (save_state / restore_state)")
struct StateTransferTests {
    @Test("device-counter's counts survive save_state in one instance and restore_state in a fresh one")
    func saveAndRestore() throws {
        let queue = OutputQueue()
        let table = DeviceTable()
        let path = TestSupport.plugin("device-counter")
        let first = try PluginLoader.open(path)
        #expect(first.supportsStateTransfer)
        let ctx1 = PluginContext(name: first.name, configuration: [:], outputQueue: queue, deviceTable: table,
                                 logger: TestSupport.logger)
        try first.initialize(context: ctx1)
        // Three events for 0781:5581, written as the ring would hold them.
        let buf = UnsafeMutableRawPointer.allocate(byteCount: EventLayout.maxSize * 3, alignment: 64)
        defer { buf.deallocate() }
        var pointers: [UnsafePointer<pb_event>?] = []
        for i in 0..<3 {
            var w = EventWriter(at: buf + i * EventLayout.maxSize, sequence: UInt64(i + 1))
            w.action = i == 2 ? .remove : .add
            w.event.pointee.vendor_id = 0x0781
            w.event.pointee.product_id = 0x5581
            w.setString(.syspath, "/sys/devices/x/\(i)")
            pointers.append(UnsafePointer(w.event))
        }
        #expect(pointers.withUnsafeBufferPointer { first.deliver($0.baseAddress!, count: 3) } == PB_OK)
        let saved = try #require(first.saveState(), "save_state returned nothing")
        #expect(saved.count > 4096, "the host grew its buffer when the plugin asked (PB_ERR_FULL)")
        first.shutdown()
        _ = queue.drain()

        let second = try PluginLoader.open(path)
        let ctx2 = PluginContext(name: second.name, configuration: [:], outputQueue: queue, deviceTable: table,
                                 logger: TestSupport.logger)
        try second.initialize(context: ctx2)
        #expect(second.restoreState(saved) == PB_OK)
        #expect(second.restoreState([1, 2, 3]) == PB_ERR_INVALID, "a wrong-sized state is refused")
        second.shutdown()
        let summary = try #require(queue.drain().first)
        let text = String(decoding: summary.payload, as: UTF8.self)
        #expect(text.contains("\"events\":3"), "\(text)")
        #expect(text.contains("{\"id\":\"0781:5581\",\"add\":2,\"remove\":1,\"other\":0}"), "\(text)")
    }
}
