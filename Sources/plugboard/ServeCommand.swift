import ArgumentParser
import Foundation
import Logging
import PlugboardCore
import PlugboardDaemon

/// `plugboard serve`: the daemon as a service (TOML config, HTTP endpoints, systemd notify,
/// graceful shutdown with a deadline). See docs/operations.md.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the daemon as a service: configuration file, /metrics and health endpoints, systemd notify.",
        discussion: """
            Configuration: FILE from --config, else $PLUGBOARD_CONFIG, else /etc/plugboard/plugboard.toml, else
            ./plugboard.toml; then PLUGBOARD_* variables; then these flags (`plugboard config check` shows the result).
            Runs until SIGTERM/SIGINT, also after a finite source ended. Exit codes: 0 clean shutdown, 1 start-up
            failure, 64 bad configuration, 70 a component still busy at the shutdown deadline; a second signal
            exits at once with 128+signal.
            """)

    @Option(help: ArgumentHelp("Configuration file (default: the search order above).", valueName: "FILE"))
    var config: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Override any key (repeatable).", valueName: "KEY=VALUE"))
    var overrides: [String] = []

    @Option(help: ArgumentHelp("Event source (key `source`): udev, replay:FILE or synthetic:N.", valueName: "SOURCE"))
    var source: String?

    @Option(name: .customLong("plugins"), help: ArgumentHelp("A plugin directory (key `plugins.dirs`; repeatable).", valueName: "DIR"))
    var pluginDirectories: [String] = []

    @Option(help: ArgumentHelp("HTTP listen address (key `monitoring.listen`).", valueName: "HOST:PORT"))
    var listen: String?

    @Option(name: .customLong("plugin-config"),
            help: ArgumentHelp("Configuration for one plugin (repeatable).", valueName: "NAME.KEY=VALUE"))
    var pluginSettings: [PluginSetting] = []

    @Flag(help: "Let finite sources lap slow plugins instead of waiting for them (as a live source does).")
    var lossy = false

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func run() async throws {
        var parsed: [ConfigOverride] = []
        for text in overrides {
            guard let o = ConfigOverride.parse(text) else {
                throw ValidationError("--set \(text): expected KEY=VALUE, e.g. --set performance.batch_size=20")
            }
            parsed.append(o)
        }
        if let source { parsed.append(ConfigOverride(key: "source", value: source, flag: "--source \(source)")) }
        if !pluginDirectories.isEmpty {
            let joined = pluginDirectories.joined(separator: ",")
            parsed.append(ConfigOverride(key: "plugins.dirs", value: joined, flag: "--plugins \(pluginDirectories.joined(separator: " --plugins "))"))
        }
        if let listen { parsed.append(ConfigOverride(key: "monitoring.listen", value: listen, flag: "--listen \(listen)")) }

        let logger = CLI.makeLogger(level: logLevel)
        let loader = ConfigLoader()
        for warning in loader.unknownEnvironmentVariables() {
            logger.warning("environment variable \(warning) is not a configuration key; ignored")
        }
        let effective: EffectiveConfig
        do {
            effective = try loader.load(file: config, overrides: parsed)
        } catch {
            FileHandle.standardError.write(Data("plugboard: \(error)\n".utf8))
            throw ExitCode(64)
        }
        let config = effective.daemon
        logger.info("configuration loaded", metadata: ["file": "\(effective.file ?? "none")", "ring_slots": "\(config.performance.ringSlots)"])

        var pluginConfiguration: [String: [String: String]] = [:]
        for s in pluginSettings { pluginConfiguration[s.plugin, default: [:]][s.key] = s.value }
        let runtime = try CoreRuntime(config: config, pluginConfiguration: pluginConfiguration, lossy: lossy, logger: logger)
        let options = Daemon.Options(
            config: config, logger: logger,
            stateFile: config.shutdownStateFile.isEmpty ? nil : config.shutdownStateFile,
            onHTTPRunning: { address in
                // One line on stdout, for people and for tests that bind port 0.
                FileHandle.standardOutput.write(Data("plugboard: listening on http://\(address)\n".utf8))
            })
        let report: ShutdownReport
        let started = ContinuousClock.now
        do {
            report = try await Daemon.run(runtime: runtime, options: options, version: PlugboardCoreVersion.string)
        } catch {
            var message = "\(error)"
            if message.contains("Address already in use") {
                message = "cannot listen on \(config.monitoring.listen) (monitoring.listen, from "
                    + "\(effective.origin("monitoring.listen"))): address already in use. Fix: choose a free port "
                    + "(--listen, PLUGBOARD_MONITORING_LISTEN or [monitoring] listen) or stop the process that holds it"
            }
            FileHandle.standardError.write(Data("plugboard: \(message)\n".utf8))
            throw ExitCode(1)
        }
        if report.completed {
            CLI.printSummary(runtime: runtime.runtime, sourceName: config.source.description, elapsed: ContinuousClock.now - started)
            FileHandle.standardOutput.write(Data("plugboard: \(report.message)\n".utf8))
        }
        Daemon.exit(with: report)
    }
}
