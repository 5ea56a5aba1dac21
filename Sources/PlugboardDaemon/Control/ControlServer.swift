import Foundation
import Logging
import PlugboardCore
import PlugboardHost
import PlugboardSystem
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Who may use the control socket (daemon config `[control]`).
public struct ControlSettings: Sendable {
    /// The socket's path; nil serves none.
    public var socket: String?
    /// Members of this group may connect (with root and the daemon's own user); nil: nobody else.
    public var group: (name: String, gid: UInt32)?

    public init(socket: String?, group: (name: String, gid: UInt32)?) {
        self.socket = socket
        self.group = group
    }
}

/// The control socket behind `plugboard ctl` (docs/operations.md, "Control socket").
///
/// One JSON request line in, one JSON response line out, then the connection closes:
///
///     → {"command":"reload","plugin":"usb-logger","canary_ms":30000,"allow_diff":["stats"]}
///     ← {"ok":true,"exit":0,"text":"...","data":{...}}
///
/// Every peer is checked with `SO_PEERCRED`/`SO_PEERGROUPS` (root, the daemon's own user or a
/// member of `control.group`), whatever the socket file's mode says, and every request is logged
/// with who sent it. A peer has 5 s to send its line (64 KiB at most); eight connections are
/// served at once, more are told to retry. One reload runs at a time.
public final class ControlServer: Sendable {
    /// `plugboard ctl` exit codes, sent in each response.
    public enum Exit {
        public static let ok: Int32 = 0
        /// The daemon refused or could not do what was asked.
        public static let failed: Int32 = 1
        /// A canary found a difference: the running build stays.
        public static let rolledBack: Int32 = 3
        /// No daemon answers on the socket (EX_UNAVAILABLE).
        public static let unavailable: Int32 = 69
        /// The peer may not use the socket (EX_NOPERM).
        public static let notPermitted: Int32 = 77
    }

    let listener: UnixListener
    let settings: ControlSettings
    let host: HostAssembly
    let state: DaemonState
    let version: String
    let logger: Logger
    let started = ContinuousClock.now
    let stopping = Atomic<Bool>(false)
    let connections = Atomic<Int>(0)
    let reloading = Mutex<String?>(nil)
    let thread = Mutex<NativeThread?>(nil)
    /// Ends the accept loop's wait when `stop` is called (nil if no eventfd could be made: the
    /// loop then sees the stop at its next timeout).
    let wake = try? EventFD()
    static let maxConnections = 8
    static let maxRequest = 64 * 1024

    /// Binds the socket (creating its directory, 0755, when missing) and gives it to
    /// `control.group` with mode 0660.
    /// - Throws: `PlugboardError` naming the path, the key and the fix.
    public init(settings: ControlSettings, host: HostAssembly, state: DaemonState, version: String, logger: Logger) throws {
        guard let path = settings.socket else {
            throw PlugboardError(code: "control.socket", field: "control.socket", reason: "no control socket is configured")
        }
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty && !FileManager.default.fileExists(atPath: dir) {
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        }
        listener = try Self.listen(path, dir: dir)
        if let group = settings.group {
            do throws(Errno) { try listener.setOwner(uid: nil, gid: group.gid) } catch {
                logger.warning("control socket: cannot give \(path) to group \(group.name): \(error.reason); only root and the daemon's user can use it")
            }
        }
        self.settings = settings
        self.host = host
        self.state = state
        self.version = version
        self.logger = logger
    }

    deinit { try? wake?.close() }

    public var path: String { listener.path }

    static func listen(_ path: String, dir: String) throws(PlugboardError) -> UnixListener {
        let result: Result<UnixListener, Errno>
        do throws(Errno) { result = .success(try UnixListener(path: path, mode: 0o660)) } catch { result = .failure(error) }
        switch result {
        case .success(let l): return l
        case .failure(let error):
            let fix: String
            switch error.code {
            case EADDRINUSE: fix = "another plugboard daemon serves this socket: stop it, or give this one another control.socket"
            case EACCES, EPERM: fix = "run as a user that may create \(dir) (systemd: RuntimeDirectory=plugboard), or change control.socket"
            case ENOENT: fix = "create \(dir), or change control.socket"
            default: fix = "change control.socket, or set it to \"\" to serve no control socket"
            }
            throw PlugboardError(code: "control.socket", file: path, field: "control.socket", reason: "cannot listen: \(error.reason)", fix: fix)
        }
    }

    /// Starts accepting connections on a thread of its own.
    public func start() {
        let t = NativeThread(name: "pb-control") { [self] in acceptLoop() }
        thread.withLock { $0 = t }
    }

    /// Stops accepting, closes the socket and removes its file. A request under way finishes.
    public func stop() {
        if stopping.exchange(true, ordering: .acquiringAndReleasing) { return }
        // The accept loop's wait ends now, not at its next 200 ms timeout (which every daemon
        // stop used to wait for).
        try? wake?.signal()
        _ = thread.withLock { $0 }?.join()
        listener.close()
    }

    func acceptLoop() {
        while !stopping.load(ordering: .acquiring) {
            let accepted: (UnixStream, PeerCredentials)?
            do { accepted = try listener.accept(timeoutMilliseconds: 200, wake: wake) } catch {
                logger.error("control socket: \(error)")
                sleepThread(for: .milliseconds(200))
                continue
            }
            guard let (stream, peer) = accepted else { continue }
            if connections.wrappingAdd(1, ordering: .relaxed).newValue > Self.maxConnections {
                connections.subtract(1, ordering: .relaxed)
                stream.setTimeouts(.seconds(1))
                respond(stream, ok: false, exit: Exit.failed, text: "the daemon is busy with \(Self.maxConnections) control connections; retry", data: nil)
                try? stream.close()
                continue
            }
            _ = NativeThread(name: "pb-control-conn") { [self] in
                defer { connections.subtract(1, ordering: .relaxed) }
                serve(stream, peer: peer)
                // Closing with unread input would reset the connection (ECONNRESET) before the
                // peer read the answer: take what it still sends (a refused peer's request, the
                // rest of an oversized line) until it closes, for a second at most.
                stream.setTimeouts(.seconds(1))
                _ = stream.readToEnd(limit: 1 << 20)
                try? stream.close()
            }
        }
    }

    /// Whether `peer` may use the socket: root, the daemon's own user, or a member of `control.group`.
    func permits(_ peer: PeerCredentials) -> Bool {
        if peer.uid == 0 || peer.uid == geteuid() { return true }
        if let group = settings.group, peer.isMember(of: group.gid) { return true }
        return false
    }

    struct Request: Decodable {
        var command: String
        var plugin: String?
        var canary_ms: Int?
        var allow_diff: [String]?
        var symbol: String?
        var args: [String]?
    }

    func serve(_ stream: UnixStream, peer: PeerCredentials) {
        stream.setTimeouts(.seconds(5))
        guard permits(peer) else {
            let who = settings.group.map { "root, the daemon's user or a member of group \($0.name)" } ?? "root or the daemon's user"
            logger.warning("control socket: refused a peer", metadata: ["uid": "\(peer.uid)", "gid": "\(peer.gid)", "pid": "\(peer.pid)"])
            respond(stream, ok: false, exit: Exit.notPermitted,
                    text: "permission denied: uid \(peer.uid) may not use the control socket (only \(who); fix: run as root, or add the user to control.group)",
                    data: nil)
            return
        }
        guard let line = stream.readLine(limit: Self.maxRequest, within: .seconds(5)) else {
            respond(stream, ok: false, exit: Exit.failed, text: "no request line within 5 s (or longer than 64 KiB)", data: nil)
            return
        }
        let request: Request
        do { request = try JSONDecoder().decode(Request.self, from: Data(line)) } catch {
            respond(stream, ok: false, exit: Exit.failed, text: "malformed request: expected one JSON object with a \"command\" (plugboard ctl sends it)", data: nil)
            return
        }
        logger.notice("control request", metadata: [
            "command": "\(request.command)", "plugin": "\(request.plugin ?? "")", "uid": "\(peer.uid)", "pid": "\(peer.pid)"])
        // A reload or a canary may take long: the client waits as long as it asked for.
        stream.setTimeouts(.seconds(Int64(max(0, request.canary_ms ?? 0) / 1000 + 300)))
        let answer = handle(request)
        respond(stream, ok: answer.exit == Exit.ok, exit: answer.exit, text: answer.text, data: answer.data)
    }

    struct Answer {
        var exit: Int32
        var text: String
        var data: String?
        static func ok(_ text: String, _ data: String? = nil) -> Answer { Answer(exit: Exit.ok, text: text, data: data) }
        static func failed(_ text: String) -> Answer { Answer(exit: Exit.failed, text: text, data: nil) }
    }

    func handle(_ r: Request) -> Answer {
        switch r.command {
        case "status": return status()
        case "plugins": return plugins()
        case "devices": return devices()
        case "reload":
            guard let name = r.plugin else { return .failed("reload: which plugin? (plugboard ctl reload NAME)") }
            var canary: CanaryOptions?
            if let ms = r.canary_ms {
                guard ms > 0 && ms <= 86_400_000 else { return .failed("reload --canary: the duration must be between 1 ms and 24 h") }
                canary = CanaryOptions(duration: .milliseconds(ms), allowDiff: Set(r.allow_diff ?? []))
            }
            return reload(name, canary: canary)
        case "release":
            guard let name = r.plugin else { return .failed("quarantine release: which plugin?") }
            if state.shuttingDown { return .failed("the daemon is shutting down") }
            do { try host.releaseQuarantine(named: name) } catch { return .failed("\(error)") }
            let p = host.status().plugins.first { $0.name == name }
            var w = JSONWriter()
            w.beginObject()
            w.key("plugin"); w.string(name)
            w.key("state"); w.string(p?.state.rawValue ?? "unknown")
            w.key("pid"); w.number(Int(p?.pid ?? 0))
            w.endObject()
            return .ok("\(name): released from quarantine (pid \(p?.pid ?? 0)); it reads from the newest event\n", w.text)
        case "call":
            guard let name = r.plugin, let symbol = r.symbol else { return .failed("call: which plugin and function? (plugboard ctl call NAME SYMBOL ARGS...)") }
            return call(name, symbol, r.args ?? [])
        default:
            let known = ["status", "plugins", "devices", "reload", "release", "call"]
            let guess = Text.closestMatch(to: r.command, in: known).map { " (did you mean \"\($0)\"?)" } ?? ""
            return .failed("unknown command \"\(r.command)\"\(guess); the daemon knows: \(known.joined(separator: ", "))")
        }
    }

    // MARK: Commands

    func status() -> Answer {
        let s = host.status()
        let reason = state.notReadyReason(s)
        let uptime = (ContinuousClock.now - started).inSeconds
        var counts: [String: Int] = [:]
        for p in s.plugins { counts[p.state.rawValue, default: 0] += 1 }
        var w = JSONWriter()
        w.beginObject()
        w.key("version"); w.string(version)
        w.key("pid"); w.number(Int(getpid()))
        w.key("uptime_seconds"); w.number(uptime)
        w.key("ready"); w.bool(reason == nil)
        w.key("not_ready_reason"); if let reason { w.string(reason) } else { w.null() }
        w.key("source"); w.string(host.source.name)
        w.key("source_live"); w.bool(s.sourceLive)
        w.key("plugins"); w.beginObject()
        for (k, v) in counts.sorted(by: { $0.key < $1.key }) { w.key(k); w.number(v) }
        w.endObject()
        w.key("failed_plugins"); w.number(host.runtime.failures.count)
        w.key("devices"); w.number(s.devices.count)
        w.key("ring"); w.beginObject()
        w.key("slots"); w.number(s.ring.slots)
        w.key("published"); w.number(s.ring.published)
        w.key("fill"); w.number(s.ring.fill)
        w.endObject()
        w.key("redis")
        if let r = s.redis {
            w.beginObject()
            w.key("connected"); w.bool(r.connected)
            w.key("published"); w.number(r.published)
            w.key("spilled"); w.number(r.spilled)
            w.key("dropped"); w.number(r.dropped)
            w.endObject()
        } else { w.null() }
        w.endObject()
        var text = "plugboard \(version), pid \(getpid()), up \(String(format: "%.0f", uptime)) s: \(reason.map { "not ready (\($0))" } ?? "ready")\n"
        text += "source: \(host.source.name) (\(s.sourceLive ? "live" : "not live")), \(s.ring.published) events\n"
        text += "plugins: " + (counts.isEmpty ? "none" : counts.sorted(by: { $0.key < $1.key }).map { "\($0.value) \($0.key)" }.joined(separator: ", "))
        text += host.runtime.failures.isEmpty ? "\n" : ", \(host.runtime.failures.count) refused\n"
        text += "devices: \(s.devices.count)\n"
        if let r = s.redis {
            text += "redis: \(r.connected ? "connected" : "disconnected"), \(r.published) published, \(r.spilled) spilled, \(r.dropped) dropped\n"
        }
        return .ok(text, w.text)
    }

    func plugins() -> Answer {
        let list = host.status().plugins
        let data = (try? JSONValue.encoding(list.map(PluginJSON.init)))?.text(sortedKeys: true) ?? "[]"
        var rows = [["NAME", "VERSION", "STATE", "ISOLATION", "PID", "EVENTS", "ERRORS", "RESTARTS", "LAG"]]
        for p in list {
            rows.append([p.name, p.version, p.state.rawValue, p.isolation, p.pid == 0 ? "-" : "\(p.pid)", "\(p.events)",
                         "\(p.errors)", "\(p.restarts)", "\(p.lag)"])
        }
        var text = Self.table(rows)
        for p in list { if let q = p.quarantineReason { text += "\(p.name): quarantined: \(q)\n" } }
        for f in host.runtime.failures { text += "refused: \(f.description)\n" }
        return .ok(text, data)
    }

    func devices() -> Answer {
        let list = host.status().devices
        var rows = [["SYSPATH", "VID:PID", "BUS/DEV", "PRODUCT", "SERIAL"]]
        for d in list {
            rows.append([d.syspath, String(format: "%04x:%04x", d.vendorID, d.productID), "\(d.busnum)/\(d.devnum)",
                         d.product.isEmpty ? "-" : d.product, d.serial.isEmpty ? "-" : d.serial])
        }
        return .ok(list.isEmpty ? "no devices\n" : Self.table(rows), MonitoringServer.devicesJSON(list))
    }

    func reload(_ name: String, canary: CanaryOptions?) -> Answer {
        if state.shuttingDown { return .failed("the daemon is shutting down: no reload") }
        if !state.started { return .failed("the daemon is still starting: retry once `plugboard ctl status` says ready") }
        let busy = reloading.withLock { current -> String? in
            if let current { return current }
            current = name
            return nil
        }
        if let busy { return .failed("a reload of \(busy) is under way; one at a time (retry when it has finished)") }
        defer { reloading.withLock { $0 = nil } }
        let before = host.runtime.workers.first { $0.name == name }?.version ?? "?"
        let report: CanaryReport?
        do { report = try host.reloadPlugin(named: name, canary: canary) } catch {
            logger.error("control: \(error)")
            return .failed("\(error)\n")
        }
        let after = host.runtime.workers.first { $0.name == name }?.version ?? "?"
        guard let report else {
            var w = JSONWriter()
            w.beginObject()
            w.key("plugin"); w.string(name)
            w.key("verdict"); w.string("reloaded")
            w.key("from_version"); w.string(before)
            w.key("to_version"); w.string(after)
            w.endObject()
            return .ok("\(name): reloaded (\(before) -> \(after)); cursor and state handed over\n", w.text)
        }
        let data = Self.canaryJSON(name, report)
        var text = "\(name): canary of \(report.candidateVersion) beside \(report.runningVersion) over \(report.events) events "
        text += "(\(report.runningRecords) and \(report.candidateRecords) records"
        text += report.uncompared > 0 ? ", \(report.uncompared) on allowed topics not compared)" : ")"
        if report.verdict == .promoted {
            text += ": they agree; promoted (\(before) -> \(after))\n"
            if report.events == 0 { text += "note: no event arrived during the canary; only its start and its health were checked\n" }
            logger.notice("canary promoted", metadata: ["plugin": "\(name)", "events": "\(report.events)", "version": "\(after)"])
            return .ok(text, data)
        }
        text += ": rolled back, \(report.reason ?? "")\n"
        for d in report.firstDifferences {
            text += "  record \(d.index): running \(Self.describe(d.running)) | candidate \(Self.describe(d.candidate))\n"
        }
        text += "the running build (\(report.runningVersion)) stays\n"
        logger.warning("canary rolled back", metadata: ["plugin": "\(name)", "reason": "\(report.reason ?? "")"])
        return Answer(exit: Exit.rolledBack, text: text, data: data)
    }

    func call(_ name: String, _ symbol: String, _ args: [String]) -> Answer {
        do {
            let r = try host.callExport(plugin: name, symbol: symbol, arguments: args,
                                        executable: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0],
                                        timeout: .seconds(10))
            guard r.status == .exited(code: 0) else {
                let why = r.errors.trimmingCharacters(in: .whitespacesAndNewlines)
                return .failed("\(name).\(symbol): the call \(r.status)\(why.isEmpty ? "" : ": \(Text.logRecord(why, limit: 4096))")\n")
            }
            var w = JSONWriter()
            w.beginObject()
            w.key("plugin"); w.string(name)
            w.key("symbol"); w.string(symbol)
            w.key("result"); w.string(r.output.trimmingCharacters(in: .newlines))
            w.endObject()
            return .ok(r.output.hasSuffix("\n") ? r.output : r.output + "\n", w.text)
        } catch {
            return .failed("\(error)\n")
        }
    }

    // MARK: Output

    static func describe(_ r: OutputRecord?) -> String {
        guard let r else { return "(nothing)" }
        return "topic \(r.topic): " + Text.logRecord(String(decoding: r.payload, as: UTF8.self), limit: 300)
    }

    static func canaryJSON(_ name: String, _ r: CanaryReport) -> String {
        var w = JSONWriter()
        w.beginObject()
        w.key("plugin"); w.string(name)
        w.key("verdict"); w.string(r.verdict.rawValue)
        w.key("reason"); if let reason = r.reason { w.string(reason) } else { w.null() }
        w.key("running_version"); w.string(r.runningVersion)
        w.key("candidate_version"); w.string(r.candidateVersion)
        w.key("from_sequence"); w.number(r.from)
        w.key("to_sequence"); w.number(r.to)
        w.key("events"); w.number(r.events)
        w.key("running_records"); w.number(r.runningRecords)
        w.key("candidate_records"); w.number(r.candidateRecords)
        w.key("running_errors"); w.number(r.runningErrors)
        w.key("candidate_errors"); w.number(r.candidateErrors)
        w.key("uncompared_records"); w.number(r.uncompared)
        w.key("differences"); w.beginArray()
        for d in r.firstDifferences {
            w.beginObject()
            w.key("index"); w.number(d.index)
            for (key, rec) in [("running", d.running), ("candidate", d.candidate)] {
                w.key(key)
                if let rec {
                    w.beginObject()
                    w.key("topic"); w.string(rec.topic)
                    w.key("payload"); w.string(String(decoding: rec.payload, as: UTF8.self))
                    w.endObject()
                } else { w.null() }
            }
            w.endObject()
        }
        w.endArray()
        w.endObject()
        return w.text
    }

    static func table(_ rows: [[String]]) -> String {
        guard let first = rows.first else { return "" }
        var widths = first.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        return rows.map { r in
            r.enumerated().map { i, c in i == r.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }

    func respond(_ stream: UnixStream, ok: Bool, exit: Int32, text: String, data: String?) {
        var w = JSONWriter()
        w.beginObject()
        w.key("ok"); w.bool(ok)
        w.key("exit"); w.number(Int(exit))
        w.key("text"); w.string(text.hasSuffix("\n") || text.isEmpty ? text : text + "\n")
        w.key("data")
        if let data {
            let bytes = Array(data.utf8)
            w.value { sink in bytes.withUnsafeBytes { sink.write($0) } }
        } else {
            w.null()
        }
        w.endObject()
        try? stream.write(Array((w.text + "\n").utf8))
        stream.finishWriting()
    }
}
