import Foundation
import Testing

@testable import PlugboardDaemon
@testable import PlugboardHost

@Suite("systemd")
struct SystemdTests {
    @Test("READY=1, STOPPING=1 and WATCHDOG=1 arrive as datagrams on a NOTIFY_SOCKET path")
    func notifyPathSocket() throws {
        let dir = TempDir()
        let sock = try DatagramSocket(dir: dir.path)
        let n = SystemdNotifier(environment: ["NOTIFY_SOCKET": sock.address])
        #expect(n.isActive)
        try n.ready(status: "3 plugins")
        #expect(sock.receive(timeout: .seconds(2)) == "READY=1\nSTATUS=3 plugins")
        try n.watchdog()
        #expect(sock.receive(timeout: .seconds(2)) == "WATCHDOG=1")
        try n.stopping()
        #expect(sock.receive(timeout: .seconds(2)) == "STOPPING=1")
    }

    @Test("an abstract NOTIFY_SOCKET (@name) works")
    func notifyAbstractSocket() throws {
        let sock = try DatagramSocket(dir: nil)
        try SystemdNotifier(environment: ["NOTIFY_SOCKET": sock.address]).ready()
        #expect(sock.receive(timeout: .seconds(2)) == "READY=1")
    }

    @Test("without NOTIFY_SOCKET notifications are no-ops; a vanished socket is an error naming it")
    func inactiveAndBroken() throws {
        let n = SystemdNotifier(environment: [:])
        #expect(!n.isActive)
        try n.ready()
        let gone = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/nonexistent/notify.sock"])
        #expect(throws: SystemdNotifyError.self) { try gone.ready() }
        do { try gone.ready() } catch { #expect(error.description.contains("NOTIFY_SOCKET=/nonexistent/notify.sock")) }
    }

    @Test("WATCHDOG_USEC sets the ping interval to half of it, unless WATCHDOG_PID names another process")
    func watchdogInterval() {
        let n = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "2000000"])
        #expect(n.watchdogInterval == .seconds(2))
        #expect(n.watchdogPingInterval == .seconds(1))
        let mine = SystemdNotifier(environment: ["WATCHDOG_USEC": "1000", "WATCHDOG_PID": "\(getpid())"])
        #expect(mine.watchdogInterval == .microseconds(1000))
        let other = SystemdNotifier(environment: ["WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"])
        #expect(other.watchdogInterval == nil)
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "0"]).watchdogInterval == nil)
    }

    @Test("the real daemon sends READY=1, keeps sending WATCHDOG=1, and STOPPING=1 on SIGTERM")
    func daemonNotifies() async throws {
        try await onTestThread {
            let dir = TempDir()
            let sock = try DatagramSocket(dir: dir.path)
            let d = try DaemonProcess(arguments: ["--source", "synthetic:100000000", "--plugins", dir.path, "--listen", "127.0.0.1:0"],
                                      environment: ["NOTIFY_SOCKET": sock.address, "WATCHDOG_USEC": "200000"])
            let ready = sock.receive(until: "READY=1", timeout: .seconds(60))
            #expect(ready?.last?.hasPrefix("READY=1") == true, "stderr: \(d.stderr)")
            let pings = (0..<3).compactMap { _ in sock.receive(until: "WATCHDOG=1", timeout: .seconds(10)) }
            #expect(pings.count == 3)
            d.signal(SIGTERM)
            #expect(sock.receive(until: "STOPPING=1", timeout: .seconds(30)) != nil)
            #expect(d.waitForExit() == 0)
        }
    }

    @Test("as the unit runs it (an unprivileged user, the unit's one ambient capability) the daemon gets its 128 MiB udev receive buffer; without the capability 8 MiB and a warning with the fix",
          .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")))
    func receiveBufferWithTheUnitsCapability() throws {
        let unit = try String(contentsOfFile: packageRoot + "/packaging/plugboard.service", encoding: .utf8)
        let ambient = try #require(unit.split(separator: "\n").first { $0.hasPrefix("AmbientCapabilities=") })
        let caps = ambient.dropFirst("AmbientCapabilities=".count).split(separator: " ")
            .map { "+" + $0.lowercased().replacingOccurrences(of: "cap_", with: "") }.joined(separator: ",")
        let binary = try #require(productBinary("plugboard"))
        func monitor(_ capabilities: [String]) throws -> String {
            // A live kernel monitor never ends: `timeout` stops it once it has logged its buffer.
            let r = try runProcess("/usr/bin/timeout", ["3", "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
                                   + capabilities + ["--", binary, "monitor", "--udev-mode", "kernel", "--log-level", "info"], env: [:])
            return r.stdout + r.stderr
        }
        let granted = try monitor(["--inh-caps=\(caps)", "--ambient-caps=\(caps)"])
        #expect(granted.contains("requested_bytes=134217728 so_rcvbuf_bytes=268435456"), "\(granted)")
        let refused = try monitor([])
        #expect(refused.contains("less than the 128 MiB requested") && refused.contains("fix: run as root / with CAP_NET_ADMIN"), "\(refused)")
    }

    @Test("as the unit runs it (not root, so plugin workers share the daemon's user) the daemon makes itself non-dumpable: its /proc files are root's, a worker cannot ptrace it",
          .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")))
    func nonDumpableWhenWorkersShareItsUser() throws {
        let dir = TempDir()
        let plugins = dir.path + "/plugins"
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        chmod(dir.path, 0o755)
        // A plugin in a worker process (the default), which shares the daemon's user here.
        try buildRecorderPlugin(named: "sameuser", into: plugins)
        let binary = try #require(productBinary("plugboard"))
        let log = dir.path + "/run.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        // setpriv execs the daemon: same pid.
        p.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", "--", binary, "run", "--plugins", plugins,
                       "--registry-cache", "none", "--source", "synthetic:1000000000", "--log-level", "info",
                       "--set", "plugins.manifests=false", "--set", "plugins.isolation=process", "--lossy",
                       "--plugin-config", "sameuser.output=/dev/null", "--plugin-config", "sameuser.delay_us=1000"]
        p.environment = [:]
        p.standardOutput = out
        p.standardError = out
        try p.run()
        defer { if p.isRunning { p.terminate(); p.waitUntilExit() } }
        var logged = false
        for _ in 0..<600 where !logged {
            logged = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("the daemon is made non-dumpable")
            if !logged { usleep(10_000) }
        }
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(logged, "\(text.suffix(2000))")
        var st = stat()
        #expect(stat("/proc/\(p.processIdentifier)/status", &st) == 0)
        #expect(st.st_uid == 0, "a non-dumpable process's /proc files belong to root; a dumpable one's to its user (65534): \(st.st_uid)")
        // Its worker and the fork server the worker was copied from are non-dumpable too: one
        // plugin's worker cannot ptrace another's, though they share the user.
        let daemon = p.processIdentifier
        var children: [Int32] = []
        for _ in 0..<600 where children.count < 2 {
            children = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap(Int32.init).filter {
                ((try? String(contentsOfFile: "/proc/\($0)/status", encoding: .utf8)) ?? "").contains("PPid:\t\(daemon)\n")
            }
            if children.count < 2 { usleep(10_000) }
        }
        #expect(children.count == 2, "the fork server and the worker: \(children); \(((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").suffix(2000))")
        for child in children {
            let status = (try? String(contentsOfFile: "/proc/\(child)/status", encoding: .utf8)) ?? ""
            #expect(status.contains("Uid:\t65534"), "\(status)")
            var cs = stat()
            #expect(stat("/proc/\(child)/status", &cs) == 0 && cs.st_uid == 0, "\(child) is non-dumpable: \(cs.st_uid)")
        }
    }

    @Test("packaging/plugboard.service passes systemd-analyze verify", .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze")))
    func unitVerifies() throws {
        // verify wants ExecStart's binary to exist: point a copy of the unit at the built one.
        let dir = TempDir()
        let binary = try #require(productBinary("plugboard"))
        let unit = try String(contentsOfFile: packageRoot + "/packaging/plugboard.service", encoding: .utf8)
            .replacingOccurrences(of: "/usr/bin/plugboard", with: binary)
        let path = dir.write("plugboard.service", unit)
        let r = try runProcess("/usr/bin/systemd-analyze", ["verify", path], env: ["SYSTEMD_LOG_LEVEL": "warning"])
        let problems = (r.stdout + r.stderr).split(separator: "\n").filter { $0.contains("plugboard.service") }
        #expect(r.status == 0 && problems.isEmpty, "systemd-analyze: \(r.stdout)\(r.stderr)")
        #expect(unit.contains("Type=notify"))
        #expect(unit.contains("WatchdogSec="))
        // Nothing distribution-specific, the network fenced, one capability.
        // No distribution's groups (plugdev): only the package's own, for the control socket.
        let groups = unit.split(separator: "\n").filter { $0.hasPrefix("SupplementaryGroups=") }
        #expect(groups == ["SupplementaryGroups=plugboard"], "no Debian-only groups: \(groups)")
        #expect(unit.contains("RuntimeDirectory=plugboard\n"), "the control socket's directory")
        #expect(unit.contains("RuntimeDirectoryPreserve=restart\n"), "the ring file (state.ring_dir) survives a crash restart")
        #expect(unit.contains("StateDirectory=plugboard\n"), "state.dir: the publisher's window and spill")
        #expect(unit.contains("IPAddressDeny=any") && unit.contains("IPAddressAllow=localhost"))
        #expect(unit.contains("CapabilityBoundingSet=CAP_NET_ADMIN\n") && unit.contains("AmbientCapabilities=CAP_NET_ADMIN\n"))
        #expect(!unit.contains("DeviceAllow=/dev/bus/usb"), "DeviceAllow= names device classes or nodes, not a directory")
        // systemd's own exposure score of the unit (0 best, 10 worst), as docs/operations.md reports it.
        let security = try runProcess("/usr/bin/systemd-analyze", ["security", "--offline=true", path], env: ["SYSTEMD_LOG_LEVEL": "warning"])
        let line = (security.stdout + security.stderr).split(separator: "\n").first { $0.contains("Overall exposure level") } ?? ""
        // "→ Overall exposure level for plugboard.service: 2.2 OK :-)"
        let score = line.range(of: ".service:").flatMap { Double(line[$0.upperBound...].split(separator: " ").first ?? "") }
        #expect(score.map { $0 <= 2.5 } == true, "systemd-analyze security: \(line)")
    }
}
