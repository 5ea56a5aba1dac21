import ArgumentParser
import Foundation
import Logging
import PlugboardCore
import PlugboardDaemon
import PlugboardHost
import PlugboardUdev
import Synchronization

/// `plugboard run`: the host in the foreground. The same host, configuration and shutdown as
/// `serve`, without the HTTP endpoints and systemd notifications, and it ends when a finite
/// source has been read to its end.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the host in the foreground: read events from a source and feed them to the plugins.",
        discussion: """
            Reads the same configuration as `plugboard serve` (--config FILE, else $PLUGBOARD_CONFIG, else
            /etc/plugboard/plugboard.toml, else ./plugboard.toml; then PLUGBOARD_* variables; then the flags
            below, each of which sets one key). `plugboard config check` prints the values it runs with.
            The default source, udev, reads live USB events (docs/udev.md) until a signal.
            Finite sources (replay:FILE, synthetic:N) end the run once every plugin has drained them.
            SIGINT/SIGTERM stop gracefully (drain, shut the plugins down, flush Redis) within
            shutdown.deadline; a second signal stops at once (exit 128+signal). Exit codes: 0 done,
            1 start-up or source failure, 2 with --strict: a plugin was refused or failed to initialise,
            3 events not delivered (to Redis, or to a plugin: missed, skipped, quarantined; listed on
            stderr), 64 bad configuration, 70 a component still busy at the deadline. Without --strict a refused
            plugin does not change the exit status: it is listed under "rejected plugins" in the summary.
            """)

    @OptionGroup var host: HostOptions

    @OptionGroup var udev: UdevOptions

    @Option(help: ArgumentHelp("Ring slots (key performance.event_buffer_size; rounded up to a power of two).", valueName: "N"))
    var ringSlots: Int?

    @Option(help: ArgumentHelp("Most events per plugin callback (key performance.batch_size).", valueName: "N"))
    var batchSize: Int?

    @Option(help: ArgumentHelp("Pin the event source and the plugin workers to these CPUs (key performance.cpu_affinity: \"1\", \"0-3\"); one CPU gives idle plugins the lowest latency (docs/benchmarks.md).", valueName: "CPUS"))
    var cpuAffinity: String?

    @Flag(help: "Development: when a running plugin's .so in a plugin directory is rebuilt or replaced, load the new build in its place, keeping its place in the stream and its state (docs/plugin-guide.md, \"Hot reload\").")
    var watch = false

    @Option(help: ArgumentHelp("Seconds the graceful shutdown may take (key shutdown.deadline).", valueName: "S"))
    var shutdownDeadline: Double?

    @Option(help: ArgumentHelp("Manifest registry cache (key plugins.registry_cache; docs/manifest.md); 'none' to read every .pbm.", valueName: "FILE"))
    var registryCache: String?

    @Flag(help: "Development only: load every .so without reading manifests (key plugins.manifests = false: no filters, no [config], no order).")
    var ignoreManifests = false

    @Flag(help: "Exit 2 when any plugin was refused (loader, manifest) or failed to initialise, after the run; by default such plugins are only listed in the summary and the exit status is 0.")
    var strict = false

    /// The exit status of a `--strict` run in which a plugin was refused or failed.
    static let strictFailureExitCode: Int32 = 2

    @OptionGroup(title: "Redis")
    var redisOptions: RedisRunOptions

    /// This command's flags, as the configuration keys they set.
    var overrides: [ConfigOverride] {
        var o = udev.overrides
        if let ringSlots { o.append(.init(key: "performance.event_buffer_size", value: "\(ringSlots)", flag: "--ring-slots \(ringSlots)")) }
        if let batchSize { o.append(.init(key: "performance.batch_size", value: "\(batchSize)", flag: "--batch-size \(batchSize)")) }
        if let cpuAffinity { o.append(.init(key: "performance.cpu_affinity", value: cpuAffinity, flag: "--cpu-affinity \(cpuAffinity)")) }
        if let shutdownDeadline {
            o.append(.init(key: "shutdown.deadline", value: "\(Int((shutdownDeadline * 1000).rounded()))ms",
                           flag: "--shutdown-deadline \(shutdownDeadline)"))
        }
        if let registryCache { o.append(.init(key: "plugins.registry_cache", value: registryCache, flag: "--registry-cache \(registryCache)")) }
        if ignoreManifests { o.append(.init(key: "plugins.manifests", value: "false", flag: "--ignore-manifests")) }
        return o + redisOptions.overrides
    }

    func run() async throws {
        let logger = CLI.makeLogger(level: host.logLevel ?? "info", format: host.logFormat)
        let (_, settings) = try host.load(extra: overrides, logger: logger)
        if watch && settings.requireSignature {
            // A hot reload opens the rebuilt .so without its manifest, so without its signature.
            throw CLI.Failure("--watch cannot be used with plugins.require_signature = true: a hot reload loads a rebuilt .so without checking its signed manifest (fix: drop --watch, or set plugins.require_signature = false while developing)")
        }
        let assembled: HostAssembly
        do { assembled = try HostAssembly(settings: settings, logger: logger) } catch { throw CLI.Failure("\(error)") }
        let watcher = WatcherBox()
        let options = Daemon.Options(
            logger: logger, stopWhenSourceEnds: true,
            onStarted: { [watch] in
                guard watch else { return }
                do {
                    watcher.set(try PluginWatcher(runtime: assembled.runtime, directories: settings.pluginDirectories, logger: logger))
                    logger.notice("watching the plugin directories: a rebuilt plugin is reloaded in place")
                } catch {
                    logger.error("cannot watch the plugin directories: \(error)")
                }
            },
            // No reload may swap a worker while the shutdown stops them.
            onStopping: { watcher.stop() })
        let started = ContinuousClock.now
        let report: ShutdownReport
        do {
            report = try await Daemon.run(host: assembled, options: options, version: PlugboardCoreVersion.string)
        } catch {
            throw CLI.Failure("\(error)")
        }
        watcher.stop()
        CLI.printSummary(runtime: assembled.runtime, sourceName: assembled.source.name, elapsed: ContinuousClock.now - started)
        if let counters = assembled.udevCounters { counters.log(to: logger, context: assembled.runtime.sourceContext) }
        if let e = assembled.runtime.sourceError { throw CLI.Failure("event source failed: \(e)") }
        if !report.completed { Daemon.exit(with: report) }
        let failures = assembled.runtime.failures
        if strict && !failures.isEmpty {
            FileHandle.standardError.write(Data("plugboard: --strict: \(failures.count) plugin(s) refused or failed to initialise (listed above under \"rejected plugins\")\n".utf8))
        }
        // Lost events outrank refused plugins: 3 before 2.
        Daemon.exitIfUndelivered(assembled, plugins: true)
        if strict && !failures.isEmpty { throw ExitCode(Self.strictFailureExitCode) }
    }
}

/// The `--watch` watcher, made once the host has started and stopped when the shutdown begins.
final class WatcherBox: Sendable {
    private let watcher = Mutex<PluginWatcher?>(nil)
    func set(_ w: PluginWatcher) { watcher.withLock { $0 = w } }
    func stop() { watcher.withLock { $0 }?.stop() }
}
