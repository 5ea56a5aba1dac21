import Foundation
import Testing

/// `plugboard ctl` against the real `plugboard serve`: the control socket, its peer check, and
/// the production reload with its canary, on C plugins built here in several variants.
@Suite("Control socket and plugboard ctl", .serialized)
struct ControlTests {
    /// A plugin directory with the canary test plugin (variant `defines`) and its manifest.
    static func installCanary(in dir: String, version: String, defines: [String] = [], isolation: String = "process") throws {
        let so = dir + "/libcanary.so"
        // Built aside and renamed into place, as an operator installs a new build.
        try compileC(packageRoot + "/Tests/TestPlugins/canary/canary.c", output: so + ".new",
                     defines: ["CANARY_VERSION=\"\(version)\""] + defines)
        try FileManager.default.moveItem(atPath: so + ".new", toPath: so + ".tmp")
        _ = rename(so + ".tmp", so)
        let toml = (dir as NSString).deletingLastPathComponent + "/canary-\(version).toml"
        try """
            [plugin]
            name = "canary"
            version = "\(version)"
            library = "libcanary.so"

            [worker]
            isolation = "\(isolation)"
            batch = 16

            [[match]]
            subsystem = "usb"

            [exports]
            canary_add = "int32_t (int32_t a, int32_t b)"
            canary_crash = "int32_t (void)"
            """.write(toFile: toml, atomically: true, encoding: .utf8)
        let r = try runProcess(productBinary("plugboard")!, ["pack", toml, "--library", so, "-o", dir + "/canary.pbm.new"], env: [:])
        guard r.status == 0 else { throw TestFailure("pack failed: \(r.stderr)") }
        _ = rename(dir + "/canary.pbm.new", dir + "/canary.pbm")
        try? FileManager.default.removeItem(atPath: toml)
    }

    /// A replay of `count` add/remove events of one flash drive, `gapMs` apart: a source that
    /// stays live for the length of a test.
    static func longReplay(_ path: String, count: Int, gapMs: Int = 5) throws {
        var lines: [String] = []
        let syspath = "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1.2"
        for i in 0..<count {
            if i % 2 == 0 {
                lines.append(#"{"action":"add","seqnum":\#(5000 + i),"busnum":1,"devnum":5,"vendor_id":"0781","product_id":"5581","syspath":"\#(syspath)","devnode":"/dev/bus/usb/001/005","product":"Ultra","serial":"S\#(i / 2)","driver":"usb","delay_ms":\#(gapMs)}"#)
            } else {
                lines.append(#"{"action":"remove","seqnum":\#(5000 + i),"syspath":"\#(syspath)","delay_ms":\#(gapMs)}"#)
            }
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// `plugboard serve` on a long replay with the plugins of `plugins`, its control socket at `socket`.
    static func serve(_ dir: TempDir, socket: String, plugins: String, events: Int = 20_000, set: [String] = [],
                      plugin: [String] = []) throws -> DaemonProcess {
        let replay = dir.path + "/long.jsonl"
        try longReplay(replay, count: events)
        var args = ["--listen", "127.0.0.1:0", "--set", "plugins.manifests=true", "--set", "plugins.dirs=\(plugins)",
                    "--set", "source=replay:\(replay)", "--set", "control.socket=\(socket)", "--set", "shutdown.deadline=20s"]
        for s in set { args += ["--set", s] }
        for p in plugin { args += ["--plugin-config", p] }
        let d = try DaemonProcess(arguments: args)
        _ = try d.port()
        try d.waitFor("the control socket") { FileManager.default.fileExists(atPath: socket) }
        return d
    }

    /// Runs `plugboard ctl ARGS --socket SOCKET`, as another user when `user` is given
    /// (`setpriv` arguments, e.g. ["--reuid=65534", "--regid=65534", "--clear-groups"]).
    static func ctl(_ args: [String], socket: String, user: [String]? = nil) throws -> ProcessResult {
        let binary = productBinary("plugboard")!
        // After the subcommand: `call` passes everything after its symbol on to the function.
        var full = ["ctl"] + args
        full.insert(contentsOf: ["--socket", socket], at: args.first == "quarantine" ? 3 : 2)
        if let user { return try runProcess("/usr/bin/setpriv", user + ["--", binary] + full, env: [:]) }
        return try runProcess(binary, full, env: [:])
    }

    /// A client that is not plugboard ctl: a bare connected socket, to send what ctl never would.
    static func rawConnect(_ socket: String) throws -> Int32 {
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: Array(socket.utf8)) }
        let c = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard fd >= 0, c == 0 else { throw TestFailure("cannot connect to \(socket)") }
        return fd
    }

    static func json(_ text: String) -> Any? { try? JSONSerialization.jsonObject(with: Data(text.utf8)) }

    static func pluginInfo(_ socket: String, _ name: String) throws -> [String: Any]? {
        let r = try ctl(["plugins", "--json"], socket: socket)
        return (json(r.stdout) as? [[String: Any]])?.first { $0["name"] as? String == name }
    }

    @Test("status, plugins and devices answer as text and as JSON; /plugins and ctl plugins --json agree")
    func readCommands() throws {
        let dir = TempDir(), plugins = dir.path + "/plugins"
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        try Self.installCanary(in: plugins, version: "1.0.0")
        let socket = dir.path + "/ctl.sock"
        let d = try Self.serve(dir, socket: socket, plugins: plugins)
        defer { d.signal(SIGTERM); d.waitForExit() }
        try d.waitFor("devices") { (try Self.ctl(["devices"], socket: socket)).stdout.contains("0781:5581") }

        var r = try Self.ctl(["status"], socket: socket)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("plugins: 1 running"), "\(r.stdout)")
        r = try Self.ctl(["status", "--json"], socket: socket)
        let status = Self.json(r.stdout) as? [String: Any]
        #expect(status?["source_live"] as? Bool == true, "\(r.stdout)")
        #expect((status?["plugins"] as? [String: Any])?["running"] as? Int == 1)
        #expect(status?["pid"] as? Int == Int(d.process.processIdentifier))

        r = try Self.ctl(["plugins"], socket: socket)
        #expect(r.stdout.contains("canary") && r.stdout.contains("process"), "\(r.stdout)")
        let viaCtl = try Self.pluginInfo(socket, "canary")
        let http = try httpGetBlocking(port: d.port(), path: "/plugins")
        let viaHTTP = (Self.json(http.body) as? [[String: Any]])?.first
        #expect(viaCtl?["pid"] as? Int == viaHTTP?["pid"] as? Int && viaCtl?["pid"] as? Int != 0)
        #expect(Set(viaCtl?.keys.map { $0 } ?? []) == Set(viaHTTP?.keys.map { $0 } ?? []))

        // The drive comes and goes every 5 ms: asked until it is there.
        try d.waitFor("the drive in devices --json") {
            let devices = Self.json(try Self.ctl(["devices", "--json"], socket: socket).stdout) as? [[String: Any]]
            return devices?.contains { $0["vendor_id"] as? String == "0781" && $0["product_id"] as? String == "5581" } == true
        }
    }

    @Test("refusals: no daemon (69), a user the socket's mode keeps out (77), a peer SO_PEERCRED refuses even on a world-writable socket (77, logged), a member of control.group is let in, a malformed request, an unknown plugin")
    func refusals() throws {
        let dir = TempDir(), plugins = dir.path + "/plugins"
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        try Self.installCanary(in: plugins, version: "1.0.0")
        var r = try Self.ctl(["status"], socket: dir.path + "/nobody-here.sock")
        #expect(r.status == 69 && r.stderr.contains("no daemon answers"), "\(r.stderr)")

        let socket = dir.path + "/ctl.sock"
        let d = try Self.serve(dir, socket: socket, plugins: plugins, set: ["control.group=users"])
        defer { d.signal(SIGTERM); d.waitForExit() }
        let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"]
        // The socket file is 0660 and the group's: another user cannot even connect.
        var st = stat()
        #expect(lstat(socket, &st) == 0 && st.st_mode & 0o777 == 0o660 && st.st_gid == 100)
        r = try Self.ctl(["status"], socket: socket, user: nobody)
        #expect(r.status == 77 && r.stderr.contains("permission denied"), "\(r.status) \(r.stderr)")
        // A careless chmod opens the file: the daemon still refuses the peer by its credentials.
        chmod(socket, 0o666)
        r = try Self.ctl(["reload", "canary"], socket: socket, user: nobody)
        #expect(r.status == 77 && r.stderr.contains("uid 65534 may not use the control socket"), "\(r.status) \(r.stderr)")
        try d.waitFor("the refusal in the log") { d.stderr.contains("refused a peer") && d.stderr.contains("uid=65534") }
        #expect(try Self.pluginInfo(socket, "canary")?["version"] as? String == "1.0.0")
        // A member of control.group (users, gid 100) may.
        r = try Self.ctl(["status"], socket: socket, user: ["--reuid=65534", "--regid=65534", "--groups=100"])
        #expect(r.status == 0, "\(r.stderr)")

        // Not plugboard ctl: a malformed line, then a line far too long.
        for payload in ["{not json\n", String(repeating: "x", count: 100_000) + "\n"] {
            let fd = try Self.rawConnect(socket)
            _ = payload.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buffer, buffer.count, 0)
            close(fd)
            let answer = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : ""
            #expect(answer.contains("\"ok\":false"), "\(answer)")
        }
        // A byte a second, never a newline: the 5 s hold for the whole line, not for each byte.
        do {
            let fd = try Self.rawConnect(socket)
            var answer = ""
            for _ in 0..<20 {
                _ = "{".withCString { send(fd, $0, 1, Int32(MSG_NOSIGNAL)) }
                var buffer = [UInt8](repeating: 0, count: 4096)
                let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                if n > 0 { answer = String(decoding: buffer[0..<n], as: UTF8.self); break }
                sleep(1)
            }
            close(fd)
            #expect(answer.contains("no request line within 5 s"), "the slow peer was cut off: \(answer)")
        }
        r = try Self.ctl(["reload", "no-such-plugin"], socket: socket)
        #expect(r.status == 1 && r.stderr.contains("no plugin of that name"), "\(r.stderr)")
        r = try Self.ctl(["status"], socket: socket)
        #expect(r.status == 0, "the daemon answers after all that: \(r.stderr)")
    }

    @Test("reload replaces a process plugin with its new build: the new version runs, every event is delivered exactly once, the count (state) carries over")
    func reload() throws {
        let dir = TempDir(), plugins = dir.path + "/plugins"
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        try Self.installCanary(in: plugins, version: "1.0.0")
        let seen = dir.path + "/seen.txt"
        // The plugin runs as nobody: its output file is made writable for it.
        FileManager.default.createFile(atPath: seen, contents: nil, attributes: [.posixPermissions: 0o666])
        let socket = dir.path + "/ctl.sock"
        let d = try Self.serve(dir, socket: socket, plugins: plugins, plugin: ["canary.output=\(seen)"])
        try d.waitFor("events") { (try? String(contentsOfFile: seen, encoding: .utf8))?.count ?? 0 > 200 }
        let pid = try Self.pluginInfo(socket, "canary")?["pid"] as? Int
        try Self.installCanary(in: plugins, version: "2.0.0")
        let r = try Self.ctl(["reload", "canary"], socket: socket)
        #expect(r.status == 0 && r.stdout.contains("reloaded (1.0.0 -> 2.0.0)"), "\(r.stdout) \(r.stderr)")
        let info = try Self.pluginInfo(socket, "canary")
        #expect(info?["version"] as? String == "2.0.0")
        #expect(info?["pid"] as? Int != pid)
        try d.waitFor("events after the reload") { (try? String(contentsOfFile: seen, encoding: .utf8))?.count ?? 0 > 4000 }
        d.signal(SIGTERM)
        #expect(d.waitForExit() == 0, "\(d.stderr)")
        let lines = (try String(contentsOfFile: seen, encoding: .utf8)).split(separator: "\n").filter { !$0.hasPrefix("COUNT") }.compactMap { UInt64($0) }
        #expect(!lines.isEmpty && lines == Array(1...UInt64(lines.count)), "every sequence once, in order, across the reload")
        #expect(d.stderr.contains("state=transferred"), "\(d.stderr)")
    }

    @Test("a canary of an equivalent build is promoted; one whose output differs is rolled back naming the first differing record; --allow-diff lets a debug topic differ; a crashing candidate is rolled back; the running build never stops meanwhile")
    func canary() throws {
        let dir = TempDir(), plugins = dir.path + "/plugins"
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        try Self.installCanary(in: plugins, version: "1.0.0")
        let socket = dir.path + "/ctl.sock"
        let d = try Self.serve(dir, socket: socket, plugins: plugins, events: 40_000)
        defer { d.signal(SIGTERM); d.waitForExit() }
        try d.waitFor("events") { (try Self.pluginInfo(socket, "canary")?["events"] as? Int ?? 0) > 100 }

        // Same output (the count carried by the snapshot), another version: promoted.
        try Self.installCanary(in: plugins, version: "1.1.0")
        var r = try Self.ctl(["reload", "canary", "--canary", "1s", "--json"], socket: socket)
        var report = Self.json(r.stdout) as? [String: Any]
        #expect(r.status == 0 && report?["verdict"] as? String == "promoted", "\(r.stdout) \(r.stderr)")
        #expect((report?["events"] as? Int ?? 0) > 0 && report?["running_records"] as? Int == report?["candidate_records"] as? Int)
        #expect((report?["candidate_records"] as? Int ?? 0) > 0)
        #expect(try Self.pluginInfo(socket, "canary")?["version"] as? String == "1.1.0")

        // A behaviour change: rolled back, the first difference shown, 1.1.0 keeps running.
        var pid = try Self.pluginInfo(socket, "canary")?["pid"] as? Int
        try Self.installCanary(in: plugins, version: "1.2.0", defines: ["CANARY_DIFFERENT"])
        r = try Self.ctl(["reload", "canary", "--canary", "1s"], socket: socket)
        #expect(r.status == 3, "\(r.stdout) \(r.stderr)")
        #expect(r.stderr.contains("rolled back") && r.stderr.contains(" v2") && r.stderr.contains("the running build (1.1.0) stays"), "\(r.stderr)")
        var info = try Self.pluginInfo(socket, "canary")
        #expect(info?["version"] as? String == "1.1.0" && info?["pid"] as? Int == pid && info?["state"] as? String == "running")

        // Extra records on a topic the operator allows to differ: promoted.
        try Self.installCanary(in: plugins, version: "1.3.0", defines: ["CANARY_DEBUG"])
        r = try Self.ctl(["reload", "canary", "--canary", "1s", "--json"], socket: socket)
        #expect(r.status == 3, "without --allow-diff the debug records are a difference: \(r.stdout)")
        r = try Self.ctl(["reload", "canary", "--canary", "1s", "--allow-diff", "debug", "--json"], socket: socket)
        report = Self.json(r.stdout) as? [String: Any]
        #expect(r.status == 0 && report?["verdict"] as? String == "promoted", "\(r.stdout) \(r.stderr)")
        #expect((report?["uncompared_records"] as? Int ?? 0) > 0)
        #expect(try Self.pluginInfo(socket, "canary")?["version"] as? String == "1.3.0")

        // A build that crashes: rolled back at once, the running build untouched.
        pid = try Self.pluginInfo(socket, "canary")?["pid"] as? Int
        try Self.installCanary(in: plugins, version: "1.4.0", defines: ["CANARY_CRASH"])
        r = try Self.ctl(["reload", "canary", "--canary", "5s"], socket: socket)
        #expect(r.status == 3 && r.stderr.contains("the candidate crashed") && r.stderr.contains("SIGSEGV"), "\(r.stderr)")
        info = try Self.pluginInfo(socket, "canary")
        #expect(info?["version"] as? String == "1.3.0" && info?["pid"] as? Int == pid && info?["restarts"] as? Int == 0)
        // The rolled-back builds' records never reached the output: the plugin's own count of
        // published records is what the running builds published.
        #expect(try Self.ctl(["status"], socket: socket).status == 0)
    }

    /// `serve` with the canary plugin (built with `defines`) and a synthetic source at full speed
    /// (flow-controlled), its control socket answering; the daemon and the socket's path.
    static func floodedDaemon(_ dir: TempDir, defines: [String] = []) throws -> (DaemonProcess, String) {
        let plugins = dir.path + "/plugins"
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        try installCanary(in: plugins, version: "1.0.0", defines: defines)
        let socket = dir.path + "/ctl.sock"
        let d = try DaemonProcess(arguments: ["--listen", "127.0.0.1:0", "--set", "plugins.manifests=true", "--set", "plugins.dirs=\(plugins)",
                                              "--set", "source=synthetic:1000000000", "--set", "control.socket=\(socket)",
                                              "--set", "plugins.registry_cache=none"])
        do {
            _ = try d.port()
            try d.waitFor("the control socket") { FileManager.default.fileExists(atPath: socket) }
        } catch {
            d.signal(SIGTERM)
            d.waitForExit()
            throw error
        }
        return (d, socket)
    }

    @Test("under a flood (a synthetic source at full speed, flow-controlled): five canaries of an equal build are each promoted over thousands of events, none lapped")
    func canaryUnderFlood() throws {
        let dir = TempDir()
        let (d, socket) = try Self.floodedDaemon(dir)
        defer { d.signal(SIGTERM); d.waitForExit(); withExtendedLifetime(dir) {} }
        for round in 1...5 {
            // A round the host fell behind in (a full host-call queue refused a record: void, as
            // the report says, never "differs") is run again, as an operator would; at most 3 times.
            var attempt = 0
            var r: ProcessResult
            var report: [String: Any]?
            repeat {
                attempt += 1
                r = try Self.ctl(["reload", "canary", "--canary", "100ms", "--json"], socket: socket)
                report = Self.json(r.stdout) as? [String: Any]
            } while attempt < 3 && (report?["reason"] as? String)?.contains("the host fell behind and refused") == true
            #expect(r.status == 0 && report?["verdict"] as? String == "promoted", "round \(round), attempt \(attempt): \(r.stdout) \(r.stderr)")
            #expect((report?["events"] as? Int ?? 0) > 1000, "round \(round): \(r.stdout)")
        }
    }

    /// A record a worker could not queue (the host behind, PB_ERR_FULL) is a gap in one build's
    /// output that says nothing about its code: a comparison it spoils is void, named as such, not
    /// "the output differs". Both builds here are the same and push a million records at once on
    /// every 4000th event, far past what their queues hold. (A full-suite run once rolled back a
    /// canary of an equal build, "under a flood" above, for one record a full queue refused.)
    @Test("a canary during which a build's host-call queue refused records is void, named as such, not a difference; nothing changes")
    func canaryVoidWhenRecordsRefused() throws {
        let dir = TempDir()
        let (d, socket) = try Self.floodedDaemon(dir, defines: ["CANARY_FLOOD"])
        defer { d.signal(SIGTERM); d.waitForExit(); withExtendedLifetime(dir) {} }
        let pid = try Self.pluginInfo(socket, "canary")?["pid"] as? Int
        let r = try Self.ctl(["reload", "canary", "--canary", "300ms", "--json"], socket: socket)
        let report = Self.json(r.stdout) as? [String: Any]
        #expect(r.status != 0 && report?["verdict"] as? String == "rolled_back", "\(r.stdout) \(r.stderr)")
        let reason = report?["reason"] as? String ?? ""
        #expect(reason.contains("the comparison is void") && reason.contains("refused") && !reason.contains("differs"), "\(reason)")
        #expect(try Self.pluginInfo(socket, "canary")?["pid"] as? Int == pid, "the running build stays")
    }

    @Test("a thread plugin gets no canary, with the reason; a plain reload still works for it")
    func threadCanaryRefused() throws {
        let dir = TempDir(), plugins = dir.path + "/plugins"
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        try Self.installCanary(in: plugins, version: "1.0.0", isolation: "thread")
        let socket = dir.path + "/ctl.sock"
        let d = try Self.serve(dir, socket: socket, plugins: plugins)
        defer { d.signal(SIGTERM); d.waitForExit() }
        try Self.installCanary(in: plugins, version: "2.0.0", isolation: "thread")
        var r = try Self.ctl(["reload", "canary", "--canary", "1s"], socket: socket)
        #expect(r.status == 1 && r.stderr.contains("runs in a thread"), "\(r.stderr)")
        r = try Self.ctl(["reload", "canary"], socket: socket)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Self.pluginInfo(socket, "canary")?["version"] as? String == "2.0.0")
    }

    @Test("a reload is refused when the new build is refused at its checks (a .so that does not match its manifest's hash), and the running build stays")
    func reloadRefusedBuild() throws {
        let dir = TempDir(), plugins = dir.path + "/plugins"
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        try Self.installCanary(in: plugins, version: "1.0.0")
        let socket = dir.path + "/ctl.sock"
        let d = try Self.serve(dir, socket: socket, plugins: plugins)
        defer { d.signal(SIGTERM); d.waitForExit() }
        // A new .so dropped in without packing its manifest again.
        try compileC(packageRoot + "/Tests/TestPlugins/canary/canary.c", output: plugins + "/libcanary.so.new",
                     defines: ["CANARY_VERSION=\"9.9.9\""])
        _ = rename(plugins + "/libcanary.so.new", plugins + "/libcanary.so")
        let r = try Self.ctl(["reload", "canary"], socket: socket)
        #expect(r.status == 1 && r.stderr.contains("the new build is refused") && r.stderr.contains("running build stays"), "\(r.stderr)")
        #expect(try Self.pluginInfo(socket, "canary")?["version"] as? String == "1.0.0")
    }

    @Test("quarantine release gives a quarantined plugin a new worker that reads on from the newest event")
    func quarantineRelease() throws {
        let dir = TempDir(), plugins = dir.path + "/plugins"
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        try Self.installCanary(in: plugins, version: "1.0.0")
        let crash = dir.path + "/crash-now"
        FileManager.default.createFile(atPath: crash, contents: nil)
        let socket = dir.path + "/ctl.sock"
        let d = try Self.serve(dir, socket: socket, plugins: plugins,
                               set: ["plugins.crash_burst=1", "plugins.restart_backoff=10ms"], plugin: ["canary.crash_file=\(crash)"])
        defer { d.signal(SIGTERM); d.waitForExit() }
        try d.waitFor("the quarantine") { try Self.pluginInfo(socket, "canary")?["state"] as? String == "quarantined" }
        var r = try Self.ctl(["reload", "canary"], socket: socket)
        #expect(r.status == 1, "a quarantined plugin is not reloaded: \(r.stderr)")
        // The cause is fixed (the crash file goes); the operator releases it.
        try? FileManager.default.removeItem(atPath: crash)
        r = try Self.ctl(["quarantine", "release", "canary"], socket: socket)
        #expect(r.status == 0 && r.stdout.contains("released"), "\(r.stdout) \(r.stderr)")
        let before = try Self.pluginInfo(socket, "canary")?["events"] as? Int ?? 0
        try d.waitFor("events after the release") {
            let i = try Self.pluginInfo(socket, "canary")
            return i?["state"] as? String == "running" && (i?["events"] as? Int ?? 0) > before + 50
        }
        r = try Self.ctl(["quarantine", "release", "canary"], socket: socket)
        #expect(r.status == 1 && r.stderr.contains("is not quarantined"), "\(r.stderr)")
    }

    @Test("call runs an exported function in a process of its own: its result, and a crash that leaves the daemon serving")
    func call() throws {
        let dir = TempDir(), plugins = dir.path + "/plugins"
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        try Self.installCanary(in: plugins, version: "1.0.0")
        let socket = dir.path + "/ctl.sock"
        let d = try Self.serve(dir, socket: socket, plugins: plugins)
        defer { d.signal(SIGTERM); d.waitForExit() }
        var r = try Self.ctl(["call", "canary", "canary_add", "2", "40"], socket: socket)
        #expect(r.status == 0 && r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "42", "\(r.stdout) \(r.stderr)")
        r = try Self.ctl(["call", "canary", "canary_crash"], socket: socket)
        #expect(r.status == 1 && r.stderr.contains("SIGSEGV"), "\(r.stderr)")
        r = try Self.ctl(["call", "canary", "not_declared"], socket: socket)
        #expect(r.status == 1 && r.stderr.contains("not declared in [exports]"), "\(r.stderr)")
        #expect(try Self.ctl(["status"], socket: socket).status == 0)
    }

    @Test("an explicitly configured control socket that cannot be created stops serve with the key and the fix")
    func badSocket() throws {
        let dir = TempDir()
        let r = try runProcess(productBinary("plugboard")!, ["serve", "--listen", "127.0.0.1:0", "--set", "plugins.manifests=false",
                                                             "--set", "source=synthetic:3", "--set", "plugins.dirs=\(dir.path)",
                                                             "--set", "control.socket=/proc/no-such-dir/ctl.sock"], env: [:])
        #expect(r.status == 1 && r.stderr.contains("control.socket") && r.stderr.contains("fix:"), "\(r.stderr)")
    }
}
