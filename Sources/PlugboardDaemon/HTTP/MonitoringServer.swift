import CoreMetrics
import Foundation
import PlugboardHost
import PlugboardSystem
import Hummingbird
import Logging
import NIOCore
import NIOHTTPTypes
import PlugboardCore
import ServiceLifecycle
import Synchronization

/// Daemon-wide flags the endpoints read.
public final class DaemonState: Sendable {
    private let shuttingDownFlag = Atomic<Bool>(false)
    private let startedFlag = Atomic<Bool>(false)

    public init() {}

    /// `RuntimeControl.start()` has returned.
    public var started: Bool {
        get { startedFlag.load(ordering: .acquiring) }
        set { startedFlag.store(newValue, ordering: .releasing) }
    }
    /// A graceful shutdown has begun: /readyz answers 503 from then on.
    public var shuttingDown: Bool {
        get { shuttingDownFlag.load(ordering: .acquiring) }
        set { shuttingDownFlag.store(newValue, ordering: .releasing) }
    }

    /// Nil when ready; otherwise why not, for /readyz.
    public func notReadyReason(_ status: RuntimeStatus) -> String? {
        if shuttingDown { return "shutting down" }
        if !started || !status.pluginsInitialised { return "plugins are initialising" }
        if !status.sourceLive { return "the event source is not live" }
        return nil
    }
}

/// The HTTP endpoints: /metrics, /healthz, /readyz, /plugins, /devices (Hummingbird 2).
///
/// Guarded as `MonitoringSettings` says: a bearer token for /plugins and /devices (and /metrics
/// when asked), a deadline for every request, and a warning in /readyz when reachable beyond loopback.
public struct MonitoringServer: Sendable {
    let runtime: any RuntimeControl
    let metrics: DaemonMetrics
    let state: DaemonState
    let security: MonitoringSettings

    public init(runtime: any RuntimeControl, metrics: DaemonMetrics, state: DaemonState,
                security: MonitoringSettings = MonitoringSettings()) {
        self.runtime = runtime
        self.metrics = metrics
        self.state = state
        self.security = security
    }

    /// The application, bound to `listen`. `onRunning` receives the bound address (port 0 picks a free port).
    public func application(listen: ListenAddress, logger: Logger,
                            onRunning: @escaping @Sendable (ListenAddress) async -> Void = { _ in }) -> some ApplicationProtocol & Service {
        let router = Router()
        let runtime = self.runtime, metrics = self.metrics, state = self.state, security = self.security
        /// Nil when `request` may see a guarded endpoint; otherwise the 401 to answer.
        @Sendable func refusal(_ request: Request) -> Response? {
            guard !security.authorizes(request.headers[.authorization]) else { return nil }
            var r = Self.text("unauthorized: send the token of monitoring.token_file as `Authorization: Bearer TOKEN`\n",
                              status: .unauthorized)
            r.headers[.wwwAuthenticate] = "Bearer realm=\"plugboard\""
            return r
        }
        let counters = ["/metrics", "/healthz", "/readyz", "/plugins", "/devices"].reduce(into: [String: CoreMetricsCounter]()) {
            $0[$1] = CoreMetricsCounter(metrics.httpRequests(path: $1))
        }
        router.get("/metrics") { request, _ -> Response in
            counters["/metrics"]?.increment()
            if security.protectMetrics, let r = refusal(request) { return r }
            return Self.text(metrics.scrape(runtime.status()), contentType: "text/plain; version=0.0.4; charset=utf-8")
        }
        router.get("/healthz") { _, _ -> Response in
            counters["/healthz"]?.increment()
            return Self.text("ok\n")
        }
        router.get("/readyz") { _, _ -> Response in
            counters["/readyz"]?.increment()
            let warning = security.exposureWarning.map { "warning: \($0)\n" } ?? ""
            if let reason = state.notReadyReason(runtime.status()) {
                return Self.text("not ready: \(reason)\n" + warning, status: .serviceUnavailable)
            }
            return Self.text("ready\n" + warning)
        }
        router.get("/plugins") { request, _ -> Response in
            counters["/plugins"]?.increment()
            if let r = refusal(request) { return r }
            return Self.json(runtime.status().plugins.map(PluginJSON.init))
        }
        router.get("/devices") { request, _ -> Response in
            counters["/devices"]?.increment()
            if let r = refusal(request) { return r }
            return Self.json(text: Self.devicesJSON(runtime.status().devices))
        }
        let timeout = TimeAmount.nanoseconds(security.requestTimeout.nanoseconds)
        return Application(
            router: router,
            server: .http1(configuration: .init(additionalChannelHandlers: [RequestDeadline(timeout: timeout)])),
            configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "plugboard"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? listen.port
                await onRunning(ListenAddress(host: listen.host, port: port))
            },
            logger: logger
        )
    }

    static func text(_ body: String, status: HTTPResponse.Status = .ok, contentType: String = "text/plain; charset=utf-8") -> Response {
        Response(status: status, headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    /// `value` as JSON (keys sorted), through the one JSON writer.
    static func json<T: Encodable>(_ value: T) -> Response {
        json(text: (try? JSONValue.encoding(value))?.text(sortedKeys: true) ?? "[]")
    }

    static func json(text: String) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// The /devices array: each device's fields under the event schema's names and formats
    /// (`vendor_id` a 4-digit hex string...), as `monitor --json` and the Redis stream show them.
    static func devicesJSON(_ devices: [DeviceInfo]) -> String {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: EventLayout.maxSize, alignment: 16)
        defer { buffer.deallocate() }
        var json = JSONWriter()
        json.beginArray()
        for d in devices {
            let record = EventRecord(values: [
                .syspath: .string(d.syspath), .devnode: .string(d.devnode), .serial: .string(d.serial),
                .manufacturer: .string(d.manufacturer), .product: .string(d.product), .driver: .string(d.driver),
                .vendorID: .number(UInt64(d.vendorID)), .productID: .number(UInt64(d.productID)),
                .busnum: .number(UInt64(d.busnum)), .devnum: .number(UInt64(d.devnum)),
            ])
            var w = EventWriter(at: buffer, sequence: 0)
            record.write(into: &w)
            EventSchema.writeJSON(UnsafePointer(w.event), into: &json, fields: Set(record.values.keys))
        }
        json.endArray()
        return json.text
    }
}

/// Closes a connection that has not completed a request within `timeout` of opening, or of the
/// response to its previous request: a client that sends half a request (or nothing, or a byte at
/// a time) holds no socket for longer. While the daemon works on a response the clock is stopped,
/// so a slow answer is never cut. Hummingbird's idle timeout alone would not do: a client sending
/// one byte at a time is never idle.
final class RequestDeadline: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart
    let timeout: TimeAmount
    private var deadline: Scheduled<Void>?

    init(timeout: TimeAmount) { self.timeout = timeout }

    func handlerAdded(context: ChannelHandlerContext) { arm(context) }
    func handlerRemoved(context: ChannelHandlerContext) { deadline?.cancel() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // The request is complete: the daemon answers it, however long that takes.
        if case .end = unwrapInboundIn(data) {
            deadline?.cancel()
            deadline = nil
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // The response is complete: the next request has `timeout` from now.
        if case .end = unwrapOutboundIn(data) { arm(context) }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        context.fireChannelInactive()
    }

    private func arm(_ context: ChannelHandlerContext) {
        deadline?.cancel()
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: timeout) { bound.value.close(promise: nil) }
    }
}

/// Sendable box for a swift-metrics counter (CoreMetrics.Counter is a final class, Sendable).
struct CoreMetricsCounter: Sendable {
    let counter: CoreMetrics.Counter
    init(_ c: CoreMetrics.Counter) { counter = c }
    func increment() { counter.increment() }
}

/// /plugins entry.
struct PluginJSON: Encodable {
    var name: String
    var version: String
    var state: String
    var events: UInt64
    var errors: UInt64
    var lag: UInt64
    var laps: UInt64
    var last_error: String?
    var load_seconds: Double?
    var isolation: String
    var pid: Int32
    var restarts: UInt64
    var recycles: UInt64
    var crashes: [String: UInt64]
    var skipped_events: UInt64
    var quarantined: String?
    var last_crash: String?
    /// Only for a plugin with a settle window.
    struct Settle: Encodable { var window_ms: Int; var coalesced: UInt64; var flaps: UInt64; var overflow: UInt64 }
    var settle: Settle?

    init(_ p: PluginStatus) {
        if p.settleMilliseconds > 0 {
            settle = Settle(window_ms: p.settleMilliseconds, coalesced: p.settleCoalesced, flaps: p.settleFlaps,
                            overflow: p.settleOverflow)
        }
        isolation = p.isolation
        pid = p.pid
        restarts = p.restarts
        recycles = p.recycles
        crashes = p.crashes
        skipped_events = p.skipped
        quarantined = p.quarantineReason
        last_crash = p.lastCrash
        name = p.name
        version = p.version
        state = p.state.rawValue
        events = p.events
        errors = p.errors
        lag = p.lag
        laps = p.laps
        last_error = p.lastError
        load_seconds = p.loadTime.map(\.inSeconds)
    }

    // Always write last_error (null when none), so clients see the field.
    enum CodingKeys: String, CodingKey {
        case name, version, state, events, errors, lag, laps, last_error, load_seconds
        case isolation, pid, restarts, recycles, crashes, skipped_events, quarantined, last_crash, settle
    }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(version, forKey: .version)
        try c.encode(state, forKey: .state)
        try c.encode(events, forKey: .events)
        try c.encode(errors, forKey: .errors)
        try c.encode(lag, forKey: .lag)
        try c.encode(laps, forKey: .laps)
        try c.encode(last_error, forKey: .last_error)
        try c.encode(isolation, forKey: .isolation)
        try c.encode(pid, forKey: .pid)
        try c.encode(restarts, forKey: .restarts)
        try c.encode(recycles, forKey: .recycles)
        try c.encode(crashes, forKey: .crashes)
        try c.encode(skipped_events, forKey: .skipped_events)
        try c.encode(quarantined, forKey: .quarantined)
        try c.encode(last_crash, forKey: .last_crash)
        try c.encode(load_seconds, forKey: .load_seconds)
        try c.encodeIfPresent(settle, forKey: .settle)
    }
}
