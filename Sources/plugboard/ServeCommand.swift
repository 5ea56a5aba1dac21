import ArgumentParser
import Foundation
import Logging
import PlugboardCore
import PlugboardDaemon
import PlugboardHost

/// `plugboard serve`: the host as a service (HTTP endpoints, systemd notify). See docs/operations.md.
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

    @OptionGroup var host: HostOptions

    @Option(help: ArgumentHelp("HTTP listen address (key `monitoring.listen`).", valueName: "HOST:PORT"))
    var listen: String?

    func run() async throws {
        let logger = CLI.makeLogger(level: host.logLevel ?? "info", format: host.logFormat)
        var extra: [ConfigOverride] = []
        if let listen { extra.append(ConfigOverride(key: "monitoring.listen", value: listen, flag: "--listen \(listen)")) }
        let (effective, settings) = try host.load(extra: extra, logger: logger)
        let config = effective.daemon
        logger.info("configuration loaded", metadata: ["file": "\(effective.file ?? "none")"])

        let assembled: HostAssembly
        do { assembled = try HostAssembly(settings: settings, logger: logger) } catch {
            FileHandle.standardError.write(Data("plugboard: \(error)\n".utf8))
            throw ExitCode(1)
        }
        var control: ControlSettings?
        if !config.controlSocket.isEmpty {
            var group: (name: String, gid: UInt32)?
            if !config.controlGroup.isEmpty {
                if let g = getgrnam(config.controlGroup) {
                    group = (config.controlGroup, g.pointee.gr_gid)
                } else {
                    logger.info("control.group \(config.controlGroup) does not exist: only root and the daemon's user may use the control socket")
                }
            }
            control = ControlSettings(socket: config.controlSocket, group: group)
        }
        var options = Daemon.Options(
            logger: logger, listen: config.monitoring.enabled ? config.monitoring.listen : nil, notify: true,
            stateFile: config.shutdownStateFile.isEmpty ? nil : config.shutdownStateFile,
            onHTTPRunning: { address in
                // One line on stdout, for people and for tests that bind port 0.
                FileHandle.standardOutput.write(Data("plugboard: listening on http://\(address)\n".utf8))
            })
        options.control = control
        if case .defaultValue = effective.origin("control.socket") {} else { options.controlRequired = true }
        let report: ShutdownReport
        let started = ContinuousClock.now
        do {
            report = try await Daemon.run(host: assembled, options: options, version: PlugboardCoreVersion.string)
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
            CLI.printSummary(runtime: assembled.runtime, sourceName: config.source.description, elapsed: ContinuousClock.now - started)
            FileHandle.standardOutput.write(Data("plugboard: \(report.message)\n".utf8))
            // Events Redis did not take by the deadline (plugins' misses are in /metrics).
            Daemon.exitIfUndelivered(assembled, plugins: false)
        }
        Daemon.exit(with: report)
    }
}
