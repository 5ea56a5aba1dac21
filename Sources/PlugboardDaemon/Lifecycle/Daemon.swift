import Foundation
import Logging
import PlugboardCore
import PlugboardSystem
import ServiceLifecycle
import Synchronization
import PlugboardCore
import PlugboardHost

/// Runs the host as a service under one ServiceGroup: `plugboard serve` with its HTTP endpoints and
/// systemd notifications, and `plugboard run` and `monitor`, which are the same service without them.
///
/// SIGTERM or SIGINT (`ShutdownSignals`, the one handler) starts a graceful shutdown
/// (`ShutdownCoordinator`): stop the source, drain the ring, shut the plugins down, flush the sinks,
/// within `shutdown.deadline`. A second signal exits at once. Use `Daemon.exit(with:)` afterwards
/// for the documented exit codes.
public enum Daemon {
    /// Exit code when a component was still busy at the shutdown deadline (EX_SOFTWARE).
    public static let stuckExitCode: Int32 = 70
    /// Exit code when the shutdown completed but events were not delivered (to Redis, or with
    /// `run` to a plugin): what was not delivered is printed first (docs/operations.md).
    public static let undeliveredExitCode: Int32 = 3

    /// Prints what `host` did not deliver and exits 3; returns when it delivered everything.
    /// - Parameter plugins: count plugins' missed, skipped and quarantined events too (`run`).
    public static func exitIfUndelivered(_ host: HostAssembly, plugins: Bool) {
        let lines = host.undelivered(plugins: plugins)
        guard !lines.isEmpty else { return }
        FileHandle.standardError.write(Data(("plugboard: events not delivered (exit \(undeliveredExitCode)):\n"
            + lines.map { "  \($0)\n" }.joined()).utf8))
        Foundation.exit(undeliveredExitCode)
    }

    /// What differs between `serve`, `run` and `monitor`.
    public struct Options: Sendable {
        public var logger: Logger
        public var environment: [String: String]
        /// Where the HTTP endpoints listen; nil serves none (`run`, `monitor`).
        public var listen: ListenAddress?
        /// Send READY=1, WATCHDOG=1 and STOPPING=1 when systemd gave a NOTIFY_SOCKET (`serve`).
        public var notify: Bool
        /// Shut down gracefully once a finite source has ended and the plugins read all of it
        /// (`run`, `monitor`); `serve` keeps serving until a signal.
        public var stopWhenSourceEnds: Bool
        /// Where the last shutdown's duration is kept between runs; nil to keep none.
        public var stateFile: String?
        /// Called with the bound address once the HTTP listener runs (port 0 resolved).
        public var onHTTPRunning: @Sendable (ListenAddress) async -> Void
        /// Called once the host has started (every plugin initialised, the source running).
        public var onStarted: @Sendable () -> Void
        /// Called when the shutdown begins, before its first step.
        public var onStopping: @Sendable () -> Void
        /// The control socket (`serve`); nil serves none. `controlRequired`: a socket that
        /// cannot be served stops the start (it was configured explicitly) rather than a warning.
        public var control: ControlSettings?
        public var controlRequired = false
        /// Called with the control socket's path once it listens.
        public var onControlListening: @Sendable (String) -> Void = { _ in }

        public init(logger: Logger = Logger(label: "plugboard"), environment: [String: String] = ProcessInfo.processInfo.environment,
                    listen: ListenAddress? = nil, notify: Bool = false, stopWhenSourceEnds: Bool = false, stateFile: String? = nil,
                    onHTTPRunning: @escaping @Sendable (ListenAddress) async -> Void = { _ in },
                    onStarted: @escaping @Sendable () -> Void = {}, onStopping: @escaping @Sendable () -> Void = {}) {
            self.logger = logger
            self.environment = environment
            self.listen = listen
            self.notify = notify
            self.stopWhenSourceEnds = stopWhenSourceEnds
            self.stateFile = stateFile
            self.onHTTPRunning = onHTTPRunning
            self.onStarted = onStarted
            self.onStopping = onStopping
        }
    }

    /// Runs until a graceful shutdown ends.
    /// - Returns: how the shutdown went (`completed == false` when the deadline passed).
    /// - Throws: when the host cannot start or the HTTP listener cannot bind.
    public static func run(host: HostAssembly, options: Options, version: String = "0.1.0") async throws -> ShutdownReport {
        let metrics = DaemonMetrics(version: version)
        // Worker processes that run as the daemon's own user (a daemon that is not root, as under
        // the unit's DynamicUser; or plugins.worker_user naming it) could otherwise ptrace it or
        // write its memory, the ring's writable mapping included, through /proc/PID/mem.
        if let uid = host.settings.isolation.policy.account?.uid ?? Optional(geteuid()), uid == geteuid() {
            if LockDown.makeNonDumpable() {
                options.logger.info("plugin worker processes run as the daemon's own user: the daemon is made non-dumpable, so they cannot ptrace it or reach its memory (docs/security.md)",
                                    metadata: ["uid": "\(uid)"])
            }
        }
        if let stateFile = options.stateFile { metrics.recordLastShutdown(ShutdownRecord.read(from: stateFile)) }
        let state = DaemonState()
        let notifier = SystemdNotifier(environment: options.notify ? options.environment : [:])
        let service = DaemonService(host: host, options: options, metrics: metrics, state: state, notifier: notifier)
        // The control socket listens from the start (`ctl status` answers while plugins
        // initialise) and closes last, after the shutdown.
        var control: ControlServer?
        if let settings = options.control {
            do {
                control = try ControlServer(settings: settings, host: host, state: state, version: version, logger: options.logger)
            } catch {
                if options.controlRequired { throw error }
                options.logger.warning("no control socket (plugboard ctl will not reach this daemon): \(error)")
            }
        }
        if let control {
            control.start()
            options.logger.info("control socket listening", metadata: ["path": "\(control.path)"])
            options.onControlListening(control.path)
        }
        defer { control?.stop() }

        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let listen = options.listen {
            if let warning = host.settings.monitoring.exposureWarning { options.logger.warning("\(warning)") }
            let app = MonitoringServer(runtime: host, metrics: metrics, state: state, security: host.settings.monitoring)
                .application(listen: listen, logger: options.logger, onRunning: options.onHTTPRunning)
            // First in the list: the group stops services in reverse order, so HTTP keeps answering
            // (/readyz 503, /metrics) while the daemon drains, and stops last.
            services.append(.init(service: app, successTerminationBehavior: .gracefullyShutdownGroup,
                                  failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        services.append(.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup,
                              failureTerminationBehavior: .gracefullyShutdownGroup))
        // No signals of the group's own: `ShutdownSignals` is the one handler of every command.
        var configuration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [],
                                                      cancellationSignals: [], logger: options.logger)
        // Backstop only: the coordinator already returns at the deadline.
        configuration.maximumGracefulShutdownDuration = host.settings.shutdownDeadline + .seconds(2)
        let group = ServiceGroup(configuration: configuration)
        service.requestShutdown = { Task { await group.triggerGracefulShutdown() } }
        let signals = ShutdownSignals { signal in
            options.logger.notice("\(ShutdownSignals.name(signal)) received: stopping (drain, then shut plugins down); send it again to stop at once")
            Task { await group.triggerGracefulShutdown() }
        }
        try await group.run()
        _ = signals
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
}

/// The host as a Service: start, READY=1, watchdog, then on graceful shutdown STOPPING=1 and the
/// bounded shutdown.
final class DaemonService: Service, Sendable {
    let host: HostAssembly
    let options: Daemon.Options
    let metrics: DaemonMetrics
    let state: DaemonState
    let notifier: SystemdNotifier
    private let reportBox = Mutex<ShutdownReport?>(nil)
    private let shutdownTrigger = Mutex<(@Sendable () -> Void)?>(nil)

    init(host: HostAssembly, options: Daemon.Options, metrics: DaemonMetrics, state: DaemonState, notifier: SystemdNotifier) {
        self.host = host
        self.options = options
        self.metrics = metrics
        self.state = state
        self.notifier = notifier
    }

    var report: ShutdownReport? { reportBox.withLock { $0 } }

    /// Starts the group's graceful shutdown (set by `Daemon.run` once the group exists).
    var requestShutdown: (@Sendable () -> Void)? {
        get { shutdownTrigger.withLock { $0 } }
        set { shutdownTrigger.withLock { $0 = newValue } }
    }

    func run() async throws {
        let logger = options.logger
        let host = self.host
        // A SIGTERM while plugins initialise must not wait for them: a worker process still in
        // init is killed, the source is not started, and the shutdown follows. A thread plugin
        // stuck in init cannot be stopped: past the shutdown deadline the daemon exits 70.
        try await withThrowingTaskGroup(of: Bool.self) { tasks in
            tasks.addTask {
                try await onThread("pb-start") { try host.start() }
                return true
            }
            tasks.addTask {
                do { try await gracefulShutdown() } catch { return false }
                if Task.isCancelled { return false }
                host.abortStart()
                try? await Task.sleep(for: host.settings.shutdownDeadline)
                if !Task.isCancelled {
                    let busy = host.runtime.startingWorkers.map { "plugin \($0) (in init)" }.joined(separator: ", ")
                    logger.error("shutdown deadline passed while plugins were initialising: \(busy)")
                    FileHandle.standardError.write(Data("plugboard: shutdown stuck in start: \(busy)\n".utf8))
                    _exit(Daemon.stuckExitCode)
                }
                return false
            }
            while let started = try await tasks.next() { if started { break } }
            tasks.cancelAll()
        }
        state.started = true
        // start() returned: every plugin's init has returned and the source was started. That is
        // what READY=1 promises systemd (a finite source may already have ended; /readyz says so).
        let status = host.status()
        metrics.ready.set(to: state.notReadyReason(status) == nil ? 1 : 0)
        do { try notifier.ready(status: "\(status.plugins.count) plugins, source started") } catch {
            logger.warning("\(error)")
        }
        logger.info("plugboard running", metadata: ["plugins": "\(status.plugins.count)"])
        options.onStarted()
        if options.stopWhenSourceEnds, let trigger = requestShutdown {
            // A plain thread: the wait blocks until the source ends, which a live source never does
            // unless the shutdown stops it.
            _ = NativeThread(name: "pb-source-end") {
                host.waitUntilSourceDrained()
                trigger()
            }
        }

        await withTaskGroup(of: Void.self) { tasks in
            if let interval = notifier.watchdogPingInterval {
                let notifier = self.notifier, metrics = self.metrics
                tasks.addTask {
                    while !Task.isCancelled {
                        // status() proves the host answers; a deadlocked host stops the pings.
                        _ = host.status()
                        try? notifier.watchdog()
                        metrics.watchdogPings.increment()
                        do { try await Task.sleep(for: interval) } catch { return }
                    }
                }
            }
            // Returns on SIGTERM/SIGINT or the source's end (through the group).
            try? await gracefulShutdown()
            state.shuttingDown = true
            options.onStopping()
            try? notifier.stopping()
            let deadline = host.settings.shutdownDeadline
            logger.info("shutting down", metadata: ["deadline": "\(deadline)"])
            let report = await onThread("pb-shutdown-wait") { ShutdownCoordinator.shutdown(host, deadline: deadline) }
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
