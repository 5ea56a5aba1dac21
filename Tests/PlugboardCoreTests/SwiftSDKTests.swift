import Foundation
import PlugboardCore
import PlugboardReplay
import Synchronization
import Testing

@Suite("Swift plugin SDK (SamplePlugins/swift-counter, a real Swift .so)")
struct SwiftSDKTests {
    @Test("a plugin written in Swift loads, receives a replayed session and publishes its summary")
    func swiftPluginRuns() throws {
        let dir = try TestSupport.pluginDir([(TestSupport.plugin("swift-counter"), "libswift-counter.so")])
        let runtime = try TestSupport.runToEnd(pluginDirs: [dir],
                                               source: ReplaySource(path: "\(TestSupport.packageRoot)/demo/session.jsonl", pace: 0))
        let stats = try #require(runtime.pluginStats.first)
        #expect(stats.name == "swift-counter" && stats.version == "1.0.0" && stats.events == 9 && stats.errors == 0, "\(stats)")
        let worker = try #require(runtime.workers.first as? Worker)
        #expect(!worker.plugin.unload(), "an image that contains Swift is never closed")
        let records = runtime.outputQueue.drain()
        #expect(records.count == 1)
        let summary = String(decoding: try #require(records.first).payload, as: UTF8.self)
        // The session's two removes carry no ids; the host fills them in from the device table.
        #expect(summary == "{\"events\":9,\"devices\":{\"046d:c31c\":3,\"05e3:0610\":1,\"0781:5581\":4,\"1d6b:0002\":1}}", "\(summary)")
    }

    @Test("its state survives a hot reload (save_state in one image, restore_state in the next)")
    func swiftPluginStateSurvivesReload() throws {
        let dir = try TestSupport.pluginDir([(TestSupport.plugin("swift-counter"), "libswift-counter.so")])
        var options = RuntimeOptions()
        let runtime = try Runtime(options: options, logger: TestSupport.logger)
        try runtime.addLibraries(in: [dir])
        runtime.startWorkers()
        let feed = FeedSource()
        runtime.start(source: feed)
        feed.wanted.store(1000, ordering: .releasing)
        while (runtime.pluginStats.first?.events ?? 0) < 1000 { usleep(1000) }
        let replaced = try runtime.reload(pluginNamed: "swift-counter", from: "\(dir)/libswift-counter.so")
        #expect(replaced.state == .running)
        _ = runtime.stop(deadline: .seconds(5))
        let summary = runtime.outputQueue.drain().map { String(decoding: $0.payload, as: UTF8.self) }
        #expect(summary.count == 2, "one summary per build: \(summary)")
        #expect(summary.last?.hasPrefix("{\"events\":1000,") == true, "the new build counted on from the old one's state: \(summary)")
    }

    @Test("a Swift plugin's thrown errors reach the host: init refused with the message, callback errors counted")
    func thrownErrorsAreReported() throws {
        let dir = try TestSupport.pluginDir([(TestSupport.plugin("pbtest-swift-throws"), "libswift-throws.so")])
        var runtime = try TestSupport.runToEnd(pluginDirs: [dir], source: SyntheticSource(count: 10),
                                               config: ["swift-throws": ["fail_init": "1"]])
        let failure = try #require(runtime.failures.first)
        #expect(failure.description.contains("init") && failure.description.contains("fail_init is set, refusing to start"), "\(failure)")
        runtime = try TestSupport.runToEnd(pluginDirs: [dir], source: SyntheticSource(count: 10))
        let stats = try #require(runtime.pluginStats.first)
        #expect(stats.events == 10 && stats.errors > 0, "\(stats)")
    }
}
