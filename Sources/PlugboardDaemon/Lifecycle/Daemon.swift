import Foundation
import Logging
import PlugboardCore
import PlugboardSystem
import ServiceLifecycle
import Synchronization
import UnixSignals

/// Runs the daemon: the runtime, the HTTP endpoints and systemd notifications under one ServiceGroup.
///
/// SIGTERM or SIGINT starts a graceful shutdown (`ShutdownCoordinator`): stop the source, drain the
/// ring, shut the plugins down, flush Redis, within `shutdown.deadline`. A second SIGTERM/SIGINT
/// exits at once. Use `Daemon.exit(with:)` afterwards for the documented exit codes.
public enum Daemon {
    /// Exit code when a component was still busy at the shutdown deadline (EX_SOFTWARE).
    public static let stuckExitCode: Int32 = 70

    /// Everything `run` needs besides the runtime.
    public struct Options: Sendable {
        public var config: DaemonConfig
        public var environment: [String: String]
        public var logger: Logger
        /// Where the last shutdown's duration is kept between runs; nil to keep none.
        public var stateFile: String?
        /// Called with the bound address once the HTTP listener runs (port 0 resolved).
        public var onHTTPRunning: @Sendable (ListenAddress) async -> Void

        public init(config: DaemonConfig, environment: [String: String] = ProcessInfo.processInfo.environment,
                    logger: Logger = Logger(label: "plugboard"), stateFile: String? = nil,
                    onHTTPRunning: @escaping @Sendable (ListenAddress) async -> Void = { _ in }) {
            self.config = config
            self.environment = environment
            self.logger = logger
            self.stateFile = stateFile
            self.onHTTPRunning = onHTTPRunning
        }
    }

    /// Runs until a graceful shutdown ends.
    /// - Returns: how the shutdown went (`completed == false` when the deadline passed).
    /// - Throws: when the runtime cannot start or the HTTP listener cannot bind.
    public static func run(runtime: any RuntimeControl, options: Options, version: String = "0.1.0") async throws -> ShutdownReport {
        let metrics = DaemonMetrics(version: version)
        if let stateFile = options.stateFile { metrics.recordLastShutdown(ShutdownRecord.read(from: stateFile)) }
        let state = DaemonState()
        let notifier = SystemdNotifier(environment: options.environment)
        let service = DaemonService(runtime: runtime, options: options, metrics: metrics, state: state, notifier: notifier)

        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if options.config.monitoring.enabled {
            let app = MonitoringServer(runtime: runtime, metrics: metrics, state: state)
                .application(listen: options.config.monitoring.listen, logger: options.logger, onRunning: options.onHTTPRunning)
            // First in the list: the group stops services in reverse order, so HTTP keeps answering
            // (/readyz 503, /metrics) while the daemon drains, and stops last.
            services.append(.init(service: app, successTerminationBehavior: .gracefullyShutdownGroup,
                                  failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        services.append(.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup,
                              failureTerminationBehavior: .gracefullyShutdownGroup))
        var configuration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint],
                                                      cancellationSignals: [], logger: options.logger)
        // Backstop only: the coordinator already returns at the deadline.
        configuration.maximumGracefulShutdownDuration = options.config.shutdownDeadline + .seconds(2)
        let group = ServiceGroup(configuration: configuration)

        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { await secondSignalStopsAtOnce(state: state) }
            try await group.run()
            tasks.cancelAll()
        }
        guard let report = service.report else {
            // The group ended without a shutdown (cannot happen unless the service was never run).
            return ShutdownReport(completed: false, duration: .zero, stuckPhase: "start", stuck: [])
        }
        return report
    }

    /// Prints the report and exits: 0 when the shutdown completed, 70 naming the stuck component otherwise.
    public static func exit(with report: ShutdownReport) -> Never {
        if report.completed {
            Foundation.exit(0)
        }
        FileHandle.standardError.write(Data("plugboard: \(report.message)\n".utf8))
        // _exit: a plugin thread is still inside a callback; running atexit handlers and static
        // destructors under it could hang or crash.
        _exit(stuckExitCode)
    }

    /// Waits for SIGTERM/SIGINT; the first is the ServiceGroup's (graceful), the second exits now.
    private static func secondSignalStopsAtOnce(state: DaemonState) async {
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        var seen = 0
        for await signal in signals {
            seen += 1
            if seen >= 2 {
                FileHandle.standardError.write(Data("plugboard: second \(signal) during shutdown: stopping at once\n".utf8))
                _exit(128 + signal.rawValue)
            }
        }
    }
}

/// The runtime as a Service: start, READY=1, watchdog, then on graceful shutdown STOPPING=1 and the
/// bounded shutdown.
final class DaemonService: Service, Sendable {
    let runtime: any RuntimeControl
    let options: Daemon.Options
    let metrics: DaemonMetrics
    let state: DaemonState
    let notifier: SystemdNotifier
    private let reportBox = Mutex<ShutdownReport?>(nil)

    init(runtime: any RuntimeControl, options: Daemon.Options, metrics: DaemonMetrics, state: DaemonState, notifier: SystemdNotifier) {
        self.runtime = runtime
        self.options = options
        self.metrics = metrics
        self.state = state
        self.notifier = notifier
    }

    var report: ShutdownReport? { reportBox.withLock { $0 } }

    func run() async throws {
        let logger = options.logger
        let runtime = self.runtime
        try await onThread("pb-start") { try runtime.start() }
        state.started = true
        // start() returned: every plugin's init has returned and the source was started. That is
        // what READY=1 promises systemd (a finite source may already have ended; /readyz says so).
        let status = runtime.status()
        metrics.ready.set(to: state.notReadyReason(status) == nil ? 1 : 0)
        do { try notifier.ready(status: "\(status.plugins.count) plugins, source started") } catch {
            logger.warning("\(error)")
        }
        logger.info("plugboard running", metadata: ["plugins": "\(status.plugins.count)"])

        await withTaskGroup(of: Void.self) { tasks in
            if let interval = notifier.watchdogPingInterval {
                let notifier = self.notifier, metrics = self.metrics
                tasks.addTask {
                    while !Task.isCancelled {
                        // status() proves the runtime answers; a deadlocked runtime stops the pings.
                        _ = runtime.status()
                        try? notifier.watchdog()
                        metrics.watchdogPings.increment()
                        do { try await Task.sleep(for: interval) } catch { return }
                    }
                }
            }
            // Returns on SIGTERM/SIGINT (through the group); throws if the group is cancelled instead.
            try? await gracefulShutdown()
            state.shuttingDown = true
            try? notifier.stopping()
            logger.info("shutting down", metadata: ["deadline": "\(options.config.shutdownDeadline)"])
            let deadline = options.config.shutdownDeadline
            let report = await onThread("pb-shutdown-wait") { ShutdownCoordinator.shutdown(runtime, deadline: deadline) }
            reportBox.withLock { $0 = report }
            if report.completed { logger.info("\(report.message)") } else { logger.error("\(report.message)") }
            if let stateFile = options.stateFile {
                let seconds = report.duration.inSeconds
                do { try ShutdownRecord(seconds: seconds, completed: report.completed).write(to: stateFile) } catch {
                    logger.warning("could not write \(stateFile): \(error); the next run will report the last shutdown as unknown")
                }
            }
            tasks.cancelAll()
        }
    }
}

/// Runs blocking work on its own thread, off Swift's cooperative pool.
func onThread<T: Sendable>(_ name: String, _ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, any Error>) in
        _ = NativeThread(name: name) {
            do { c.resume(returning: try work()) } catch { c.resume(throwing: error) }
        }
    }
}

func onThread<T: Sendable>(_ name: String, _ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
        _ = NativeThread(name: name) { c.resume(returning: work()) }
    }
}
