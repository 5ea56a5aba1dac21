import Foundation
import Logging
import PlugboardCore
import Synchronization
import Testing

@testable import PlugboardDaemon
@testable import PlugboardHost

/// Runs the monitoring server on 127.0.0.1:0 (or `host`) around `body`, with the bound port.
func withMonitoringServer(runtime: any RuntimeControl, state: DaemonState, host: String = "127.0.0.1",
                          security: MonitoringSettings = MonitoringSettings(),
                          _ body: @Sendable (Int) async throws -> Void) async throws {
    let metrics = DaemonMetrics(version: "test")
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    let app = MonitoringServer(runtime: runtime, metrics: metrics, state: state, security: security)
        .application(listen: ListenAddress(host: host, port: 0), logger: Logger(label: "test")) { address in
            continuation.yield(address.port)
        }
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await app.runService(gracefulShutdownSignals: []) }
        var it = ports.makeAsyncIterator()
        guard let port = await it.next() else { throw TestFailure("server did not start") }
        try await body(port)
        group.cancelAll()
    }
}

/// The address a TCP socket listening on `port` is bound to, from /proc/net/tcp and tcp6.
func listeningAddress(port: Int) -> String? {
    let hexPort = String(format: "%04X", port)
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { continue }
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count > 3, f[3] == "0A" else { continue }  // 0A: LISTEN
            let local = f[1].split(separator: ":")
            if local.count == 2, local[1] == hexPort { return String(local[0]) }
        }
    }
    return nil
}

@Suite("HTTP endpoints")
struct HTTPTests {
    @Test("/readyz is 503 while plugins initialise, 200 once ready, 503 again once shutting down")
    func readyzTransitions() async throws {
        let dir = TempDir()
        let gate = dir.path + "/init-may-return"
        let host = try makeHost(in: dir.path, plugins: ["p": ["init_wait_file": gate, "delay_us": "1000"]],
                                source: "synthetic:1000000000", set: ["shutdown.deadline": "2s", "plugins.init_deadline": "600s"])
        let state = DaemonState()
        let starter = NativeThread(name: "starter") { try? host.start(); state.started = true }
        try await withMonitoringServer(runtime: host, state: state) { port in
            var r = try await httpGet(port: port, path: "/readyz")
            #expect(r.status == 503)
            #expect(r.body == "not ready: plugins are initialising\n")
            #expect(try await httpGet(port: port, path: "/healthz").status == 200)
            FileManager.default.createFile(atPath: gate, contents: nil)
            let end = ContinuousClock.now + .seconds(10)
            while try await httpGet(port: port, path: "/readyz").status != 200, ContinuousClock.now < end {
                try await Task.sleep(for: .milliseconds(10))
            }
            r = try await httpGet(port: port, path: "/readyz")
            #expect(r.status == 200)
            #expect(r.body == "ready\n")
            _ = host.stopSource(until: .now + .seconds(2))
            r = try await httpGet(port: port, path: "/readyz")
            #expect(r.status == 503)
            #expect(r.body == "not ready: the event source is not live\n")
            state.shuttingDown = true
            #expect(try await httpGet(port: port, path: "/readyz").body == "not ready: shutting down\n")
        }
        _ = starter.join()
        #expect(ShutdownCoordinator.shutdown(host, deadline: .seconds(5)).completed)
    }

    @Test("/plugins and /devices serve the runtime's status as JSON")
    func pluginsAndDevicesJSON() async throws {
        let rt = StaticRuntime(status: RuntimeStatus(
            pluginsInitialised: true, sourceLive: true,
            plugins: [PluginStatus(name: "usb-logger", version: "1.2.0", state: .running, events: 42, errors: 1, lag: 3,
                                   laps: 2, lastError: "events callback returned PB_ERR_GENERIC", loadTime: .milliseconds(12))],
            devices: [DeviceInfo(syspath: "/sys/devices/usb1/1-1", devnode: "/dev/bus/usb/001/002", vendorID: 0x1d6b,
                                 productID: 0x0002, serial: "ABC", manufacturer: "Linux", product: "Hub", driver: "hub",
                                 busnum: 1, devnum: 2)]))
        try await withMonitoringServer(runtime: rt, state: DaemonState()) { port in
            let plugins = try JSONSerialization.jsonObject(with: Data(try await httpGet(port: port, path: "/plugins").body.utf8)) as! [[String: Any]]
            #expect(plugins.count == 1)
            #expect(plugins[0]["name"] as? String == "usb-logger")
            #expect(plugins[0]["version"] as? String == "1.2.0")
            #expect(plugins[0]["state"] as? String == "running")
            #expect(plugins[0]["events"] as? Int == 42)
            #expect(plugins[0]["errors"] as? Int == 1)
            #expect(plugins[0]["lag"] as? Int == 3)
            #expect(plugins[0]["laps"] as? Int == 2)
            #expect(plugins[0]["last_error"] as? String == "events callback returned PB_ERR_GENERIC")
            let devices = try JSONSerialization.jsonObject(with: Data(try await httpGet(port: port, path: "/devices").body.utf8)) as! [[String: Any]]
            #expect(devices.count == 1)
            #expect(devices[0]["syspath"] as? String == "/sys/devices/usb1/1-1")
            #expect(devices[0]["vendor_id"] as? String == "1d6b")
            #expect(devices[0]["product_id"] as? String == "0002")
            #expect(devices[0]["serial"] as? String == "ABC")
            #expect(devices[0]["busnum"] as? Int == 1)
        }
    }

    @Test("the listener is on loopback by default and on the configured address otherwise")
    func loopbackUnlessConfigured() async throws {
        #expect(DaemonConfig.defaults.monitoring.listen.host == "127.0.0.1")
        try await withMonitoringServer(runtime: StaticRuntime(status: RuntimeStatus()), state: DaemonState()) { port in
            #expect(listeningAddress(port: port) == "0100007F")  // 127.0.0.1, little-endian hex
        }
        try await withMonitoringServer(runtime: StaticRuntime(status: RuntimeStatus()), state: DaemonState(), host: "0.0.0.0") { port in
            #expect(listeningAddress(port: port) == "00000000")
        }
    }

    @Test("the real daemon binds the configured loopback address")
    func realDaemonLoopback() async throws {
        try await onTestThread {
            let dir = TempDir()
            let d = try DaemonProcess(arguments: ["--source", "synthetic:10", "--plugins", dir.path, "--listen", "127.0.0.1:0"])
            let port = try d.port()
            #expect(listeningAddress(port: port) == "0100007F")
            d.signal(SIGTERM)
            #expect(d.waitForExit() == 0)
        }
    }

    @Test("a response slower than monitoring.request_timeout is still delivered: the deadline covers the client, not the daemon")
    func slowResponseNotCut() async throws {
        try await withMonitoringServer(runtime: SlowRuntime(delay: 1.5), state: DaemonState(),
                                       security: MonitoringSettings(requestTimeout: .milliseconds(300))) { port in
            let r = try await httpGet(port: port, path: "/plugins")
            #expect(r.status == 200)
            #expect(r.body == "[]")
        }
    }
}

/// A runtime whose status is fixed (for endpoint formatting only; lifecycle tests use real threads).
/// A runtime whose status takes `delay` to read: a response slower than the request deadline.
final class SlowRuntime: RuntimeControl {
    let delay: TimeInterval
    init(delay: TimeInterval) { self.delay = delay }
    func start() throws {}
    func stopSource(until deadline: ContinuousClock.Instant) -> [String] { [] }
    func drain(until deadline: ContinuousClock.Instant) -> [String] { [] }
    func shutdownPlugins(until deadline: ContinuousClock.Instant) -> [String] { [] }
    func flushOutputs(until deadline: ContinuousClock.Instant) -> [String] { [] }
    func status() -> RuntimeStatus {
        Thread.sleep(forTimeInterval: delay)
        return RuntimeStatus()
    }
}

final class StaticRuntime: RuntimeControl {
    let fixed: RuntimeStatus
    init(status: RuntimeStatus) { fixed = status }
    func start() throws {}
    func stopSource(until deadline: ContinuousClock.Instant) -> [String] { [] }
    func drain(until deadline: ContinuousClock.Instant) -> [String] { [] }
    func shutdownPlugins(until deadline: ContinuousClock.Instant) -> [String] { [] }
    func flushOutputs(until deadline: ContinuousClock.Instant) -> [String] { [] }
    func status() -> RuntimeStatus { fixed }
}
