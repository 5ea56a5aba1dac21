import CPlugboard
import Foundation
import Logging
import PlugboardCore
import Synchronization

@testable import PlugboardHost

/// A real host (the one `run`, `serve` and `monitor` build) on recorder plugins compiled into `dir`,
/// configured through the real loader and `HostSettings` mapping. `plugins` maps each recorder's
/// name to its `[config]` (its `output` file defaults to `dir/NAME.txt`).
func makeHost(in dir: String, plugins: [String: [String: String]], source: String, set: [String: String] = [:],
              sinks: [any EventSink] = []) throws -> HostAssembly {
    var config: [String: PluginConfiguration] = [:]
    for (name, c) in plugins {
        try buildRecorderPlugin(named: name, into: dir)
        config[name] = (["output": "\(dir)/\(name).txt"] as PluginConfiguration)
            .overridden(by: PluginConfiguration(c.sorted { $0.key < $1.key }.map { (key: $0.key, value: $0.value) }))
    }
    var overrides = [ConfigOverride(key: "source", value: source), ConfigOverride(key: "plugins.dirs", value: dir),
                     ConfigOverride(key: "plugins.manifests", value: "false")]
    for (k, v) in set.sorted(by: { $0.key < $1.key }) { overrides.append(ConfigOverride(key: k, value: v)) }
    let effective = try ConfigLoader(searchPaths: [], environment: [:]).load(overrides: overrides)
    let settings = try HostSettings(config: effective, pluginConfiguration: config, environment: [:])
    return try HostAssembly(settings: settings, sinks: sinks, logger: Logger(label: "test"))
}

/// A sink that counts what it reads and notes, when it is stopped, what the recorder files said by then.
final class ProbeSink: EventSink {
    let files: [String]
    /// Sleeps this long in `stop`, ignoring the deadline (a flush that never honours it).
    let stopDelay: Duration
    let seen = Atomic<Int>(0)
    let shutDownAtStop = Mutex<[Bool]>([])
    private let thread = Mutex<NativeThread?>(nil)

    init(files: [String] = [], stopDelay: Duration = .zero) {
        self.files = files
        self.stopDelay = stopDelay
    }

    var name: String { "probe" }

    func start(events: RingConsumer, pluginOutput: OutputQueue) throws {
        let t = NativeThread(name: "probe") { [self] in
            let batch = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: 64)
            defer { batch.deallocate() }
            loop: while true {
                switch events.poll(max: 64, into: batch) {
                case .events(let n):
                    if events.commit() { seen.add(n, ordering: .relaxed) }
                case .lapped: continue
                case .empty: events.wait(timeoutNanoseconds: 10_000_000)
                case .finished: break loop
                }
            }
            events.deregister()
        }
        thread.withLock { $0 = t }
    }

    func stop(until deadline: ContinuousClock.Instant) -> String? {
        shutDownAtStop.withLock { s in
            s = files.map { ((try? String(contentsOfFile: $0, encoding: .utf8)) ?? "").hasSuffix("SHUTDOWN\n") }
        }
        if stopDelay > .zero { Thread.sleep(forTimeInterval: Double(stopDelay.components.seconds)) }
        return thread.withLock { $0 }?.join(timeout: max(.zero, deadline - .now)) == false ? "probe" : nil
    }
}
