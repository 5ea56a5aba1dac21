import CPlugboard
import Foundation
import PlugboardCore
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
        let worker = try #require(runtime.workers.first)
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
