import ArgumentParser
import Dispatch
import Foundation
import Logging
import PlugboardCore
import PlugboardDaemon
import PlugboardManifest
import PlugboardManifestHost
import PlugboardUdev
import Synchronization

/// `plugboard run`: the host daemon.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the host daemon: read events from a source and feed them to the plugins.",
        discussion: """
            The default source, udev, reads live USB events (docs/udev.md) until a signal.
            Finite sources (replay:FILE, synthetic:N) end the run once every plugin has drained them.
            SIGINT/SIGTERM stop gracefully (drain, then shut the plugins down); a second signal stops at once.
            """)

    @Option(name: .customLong("plugins"), help: ArgumentHelp("A plugin directory (repeatable).", valueName: "DIR"))
    var pluginDirectories: [String] = []

    @Option(help: ArgumentHelp("Event source: udev (live USB devices), replay:FILE or synthetic:N.", valueName: "SOURCE"))
    var source: SourceSpec = .udev

    @OptionGroup var udev: UdevOptions

    @Option(name: .customLong("plugin-config"),
            help: ArgumentHelp("Configuration for one plugin (repeatable).", valueName: "NAME.KEY=VALUE"))
    var pluginSettings: [PluginSetting] = []

    @Option(help: "Ring slots (rounded up to a power of two).")
    var ringSlots: Int = 4096

    @Option(help: "Most events per plugin callback.")
    var batchSize: Int = 64

    @Option(help: ArgumentHelp("Pin the event source and the plugin workers to these CPUs (\"1\", \"0-3\"); one CPU gives idle plugins the lowest latency (docs/benchmarks.md).", valueName: "CPUS"))
    var cpuAffinity: String = ""

    @Flag(help: "Development: when a running plugin's .so in a plugin directory is rebuilt or replaced, load the new build in its place, keeping its place in the stream and its state (docs/plugin-guide.md, \"Hot reload\").")
    var watch = false

    @Flag(help: "Let finite sources lap slow plugins instead of waiting for them (as a live source does).")
    var lossy = false

    @Option(help: "Seconds to drain and shut down after a signal before giving up.")
    var shutdownDeadline: Double = 5

    @Option(help: ArgumentHelp("Manifest registry cache (docs/manifest.md); default $XDG_CACHE_HOME/plugboard/registry.pbr, 'none' to read every .pbm.", valueName: "FILE"))
    var registryCache: String?

    @Flag(help: "Development only: load every .so without reading manifests (no filters, no [config], no order).")
    var ignoreManifests = false

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @OptionGroup(title: "Redis")
    var redisOptions: RedisRunOptions

    func validate() throws {
        if pluginDirectories.isEmpty { throw ValidationError("give at least one plugin directory with --plugins DIR") }
        if ringSlots < 2 || ringSlots > 1 << 22 { throw ValidationError("--ring-slots must be from 2 to 4194304") }
        if batchSize < 1 || batchSize > 4096 { throw ValidationError("--batch-size must be from 1 to 4096") }
        try udev.validate()
        if case .failure(let e) = CPUAffinity.parse(cpuAffinity) {
            throw ValidationError("--cpu-affinity: \(e); write CPU numbers and ranges like 1, 0-3 or 0,2-3")
        }
        if Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
    }

    func run() throws {
        let logger = CLI.makeLogger(level: logLevel)
        var settings = HostSettings()
        settings.source = source
        settings.pluginDirectories = pluginDirectories
        settings.ringSlots = ringSlots
        settings.batchSize = batchSize
        settings.lossy = lossy
        settings.cpuAffinity = (try? CPUAffinity.parse(cpuAffinity).get()) ?? .none
        for s in pluginSettings { settings.pluginConfiguration[s.plugin, default: [:]][s.key] = s.value }
        settings.discovery = ignoreManifests
            ? .allLibraries
            : .manifests(registryCache: registryCache == "none" ? nil : (registryCache ?? ManifestRegistry.defaultCachePath()),
                         lruCapacity: 200)
        settings.udev = udev.sourceOptions
        settings.redis = try redisOptions.configuration()

        let host = try Host(settings: settings, logger: logger)
        let runtime = host.runtime
        try host.startPlugins()
        do { try host.startPublisher() } catch { throw CLI.Failure("\(error)") }
        let watcher = watch ? try PluginWatcher(runtime: runtime, directories: pluginDirectories, logger: logger) : nil
        if watcher != nil { logger.notice("watching the plugin directories: a rebuilt plugin is reloaded in place") }

        let signals = SignalWatcher(signals: [SIGINT, SIGTERM])
        let clock = ContinuousClock()
        let started = clock.now
        host.startSource()

        let drained = DispatchSemaphore(value: 0)
        let drainer = NativeThread(name: "pb-drain") {
            runtime.waitUntilDrained()
            drained.signal()
        }
        var exitCode: Int32 = 0
        while drained.wait(timeout: .now() + .milliseconds(50)) == .timedOut {
            guard signals.count > 0 else { continue }
            logger.notice("signal received: stopping (drain, then shut plugins down); send it again to stop at once")
            watcher?.stop()  // no reload may swap a worker while the runtime stops them
            let report = runtime.stop(deadline: .milliseconds(Int(shutdownDeadline * 1000)))
            if !report.clean {
                logger.error("shutdown deadline of \(shutdownDeadline)s passed; still busy: \(report.stuck.joined(separator: ", "))")
                exitCode = 70
            }
            break
        }
        _ = drainer.join(timeout: exitCode == 0 ? nil : .zero)
        watcher?.stop()
        host.stopPublisher(timeout: .milliseconds(Int(max(shutdownDeadline, 5) * 1000)))
        let elapsed = clock.now - started
        CLI.printSummary(runtime: runtime, sourceName: host.source.name, elapsed: elapsed)
        if let counters = host.udevCounters { counters.log(to: logger, context: runtime.sourceContext) }
        if let e = runtime.sourceError { throw CLI.Failure("event source failed: \(e)") }
        if exitCode != 0 { throw ExitCode(exitCode) }
    }
}

/// Counts delivered signals; the first is handled gracefully, the second exits at once.
final class SignalWatcher {
    private final class Counter: Sendable {
        let received = Atomic<Int>(0)
    }
    private let counter = Counter()
    private let sources: [any DispatchSourceSignal]

    init(signals: [Int32]) {
        sources = signals.map { s in
            signal(s, SIG_IGN)
            return DispatchSource.makeSignalSource(signal: s, queue: .global())
        }
        for src in sources {
            src.setEventHandler { [counter] in
                if counter.received.add(1, ordering: .relaxed).newValue >= 2 {
                    FileHandle.standardError.write(Data("plugboard: second signal, stopping at once\n".utf8))
                    exit(130)
                }
            }
            src.resume()
        }
    }

    var count: Int { counter.received.load(ordering: .relaxed) }
}
