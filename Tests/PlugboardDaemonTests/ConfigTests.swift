import Foundation
import PlugboardCore
import PlugboardManifest
import Testing

@testable import PlugboardDaemon
@testable import PlugboardHost
import PlugboardTestSupport

/// A temporary directory with a config file in it, removed at deinit.
final class TempDir {
    let path: String
    init() {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("pbd-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func write(_ name: String, _ text: String) -> String {
        let p = path + "/" + name
        try! text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Loads `toml` (if any) with `env` and `flags`; returns the problems, or [] when valid.
func problems(toml: String? = nil, env: [String: String] = [:], flags: [String] = []) -> [ConfigProblem] {
    let dir = TempDir()
    let file = toml.map { dir.write("plugboard.toml", $0) }
    do {
        _ = try ConfigLoader(searchPaths: [], environment: env).load(file: file, overrides: flags.map { ConfigOverride.parse($0)! })
        return []
    } catch {
        return error.problems
    }
}

@Suite("Configuration")
struct ConfigTests {
    @Test("no file, no environment, no flags gives the documented defaults")
    func defaults() throws {
        let c = try ConfigLoader(searchPaths: [], environment: [:]).load()
        let d = c.daemon
        #expect(c.file == nil)
        #expect(d.source == .udev)
        #expect(d.performance.debounceMilliseconds == 25)
        #expect(d.performance.batchSize == 20)
        #expect(d.performance.eventBufferSize == 4096)
        #expect(d.performance.ringSlots == 4096)
        #expect(d.redis.maxlen == 100_000)
        #expect(d.redis.batch == 1024)
        #expect(d.redis.linger == .milliseconds(1))
        #expect(d.monitoring.enabled)
        #expect(d.monitoring.listen == ListenAddress(host: "127.0.0.1", port: 8080))
        #expect(d.monitoring.listen.isLoopback)
        #expect(d.plugins.cacheSize == 200)
        #expect(d.shutdownDeadline == .seconds(5))
        #expect(d.udevReceiveBuffer == 128 << 20)
        #expect(d.redis.url == "")
        for key in ConfigSchema.keys { #expect(c.origin(key.path) == .defaultValue) }
    }

    @Test("ring slots are the event buffer size rounded up to a power of two")
    func ringSlotsRounding() {
        #expect(DaemonConfig.nextPowerOfTwo(2000) == 2048)
        #expect(DaemonConfig.nextPowerOfTwo(2048) == 2048)
        #expect(DaemonConfig.nextPowerOfTwo(2049) == 4096)
        #expect(DaemonConfig.nextPowerOfTwo(16) == 16)
        #expect(DaemonConfig.nextPowerOfTwo(17) == 32)
    }

    @Test("the file overrides defaults, the environment overrides the file, flags override the environment")
    func precedence() throws {
        let dir = TempDir()
        let file = dir.write("p.toml", """
            source = "synthetic:10"
            [performance]
            batch_size = 5
            debounce_ms = 7
            event_buffer_size = 100
            """)
        let env = ["PLUGBOARD_PERFORMANCE_BATCH_SIZE": "6", "PLUGBOARD_PERFORMANCE_DEBOUNCE_MS": "8"]
        let c = try ConfigLoader(searchPaths: [], environment: env)
            .load(file: file, overrides: [ConfigOverride.parse("performance.debounce_ms=9")!])
        #expect(c.daemon.source == .synthetic(count: 10))
        #expect(c.origin("source") == .file(path: file, line: 1))
        #expect(c.daemon.performance.eventBufferSize == 100)
        #expect(c.daemon.performance.ringSlots == 128)
        #expect(c.origin("performance.event_buffer_size") == .file(path: file, line: 5))
        #expect(c.daemon.performance.batchSize == 6)
        #expect(c.origin("performance.batch_size") == .environment(name: "PLUGBOARD_PERFORMANCE_BATCH_SIZE"))
        #expect(c.daemon.performance.debounceMilliseconds == 9)
        #expect(c.origin("performance.debounce_ms") == .commandLine(flag: "--set performance.debounce_ms=9"))
        #expect(c.origin("shutdown.deadline") == .defaultValue)
        let text = c.render()
        #expect(text.contains("performance.debounce_ms       = 9  # command line --set performance.debounce_ms=9"))
        #expect(text.contains("performance.batch_size        = 6  # environment PLUGBOARD_PERFORMANCE_BATCH_SIZE"))
        #expect(text.contains("= 128  # derived"))
        let json = try JSONSerialization.jsonObject(with: Data(c.renderJSON().utf8)) as! [String: Any]
        let values = json["values"] as! [String: [String: Any]]
        #expect(values["performance.debounce_ms"]?["value"] as? Int == 9)
        #expect(json["file"] as? String == file)
    }

    @Test("the first existing search path is read; /etc before ./")
    func searchOrder() throws {
        let dir = TempDir()
        let etc = dir.path + "/etc.toml"
        let local = dir.write("local.toml", "source = \"synthetic:3\"\n")
        var c = try ConfigLoader(searchPaths: [etc, local], environment: [:]).load()
        #expect(c.file == local)
        #expect(c.daemon.source == .synthetic(count: 3))
        _ = dir.write("etc.toml", "source = \"synthetic:4\"\n")
        c = try ConfigLoader(searchPaths: [etc, local], environment: [:]).load()
        #expect(c.file == etc)
        #expect(c.daemon.source == .synthetic(count: 4))
        // PLUGBOARD_CONFIG names the file instead of the search.
        c = try ConfigLoader(searchPaths: [etc], environment: ["PLUGBOARD_CONFIG": local]).load()
        #expect(c.file == local)
    }

    @Test("every key can be set from the environment under its documented name")
    func everyKeyFromEnvironment() throws {
        let samples: [String: String] = [
            "source": "replay:/tmp/s.jsonl", "udev.receive_buffer": "1MiB", "redis.url": "redis://127.0.0.1:6390/2",
            "redis.host": "h", "redis.mode": "both", "udev.mode": "kernel", "plugins.manifests": "false", "plugins.registry_cache": "/r", "redis.maxlen": "10", "redis.retention": "7d", "redis.batch": "3", "redis.wait_replicas": "1", "redis.cluster_nodes": "10.0.0.2:6379, 10.0.0.3:6379", "redis.wait_timeout": "250ms", "redis.linger": "0ms", "performance.debounce_ms": "0",
            "performance.batch_size": "1", "performance.event_buffer_size": "16", "monitoring.enabled": "false",
            "monitoring.listen": "[::1]:9000", "plugins.dirs": "/a, /b", "plugins.cache_size": "0", "shutdown.deadline": "1.5s",
            "shutdown.state_file": "/var/lib/plugboard/last-shutdown", "performance.cpu_affinity": "3, 0-1",
            "plugins.isolation": "thread", "plugins.thread": "a, b", "plugins.process": "c", "plugins.worker_executable": "/w",
            "plugins.worker_user": "nobody", "plugins.init_deadline": "2s", "plugins.callback_deadline": "1s",
            "plugins.restart_backoff": "10ms", "plugins.crash_burst": "3", "plugins.crash_interval": "10s",
            "plugins.memory_limit": "512MiB", "plugins.cpu_limit": "60", "plugins.open_files_limit": "256",
            "replay.pace": "fast", "plugins.trust": "warn",
            "redis.password_file": "/run/pw", "monitoring.token_file": "/t", "monitoring.protect_metrics": "true",
            "monitoring.request_timeout": "2s", "plugins.max_record_bytes": "1KiB", "plugins.log_rate": "5",
            "redis.tls_ca_file": "/etc/ssl/redis-ca.pem", "redis.tls_cert_file": "/etc/plugboard/client.pem",
            "redis.tls_key_file": "/etc/plugboard/client.key", "redis.tls_server_name": "redis.internal",
            "plugins.require_signature": "true", "plugins.trusted_keys_dir": "/k", "performance.settle_devices": "7",
            "control.socket": "/run/pb/ctl.sock", "control.group": "adm",
            "plugins.recycle_after_events": "100000", "plugins.recycle_after_seconds": "3600", "plugins.recycle": "a, b", "plugins.prewarm": "true", "plugins.fork_server": "false",
            "performance.max_devices": "9", "plugins.output_queue_records": "32",
            "state.dir": "/var/lib/pb", "state.ring_dir": "/run/pb",
        ]
        #expect(Set(samples.keys) == Set(ConfigSchema.keys.map(\.path)), "a key was added without a sample here")
        var env: [String: String] = [:]
        for key in ConfigSchema.keys { env[key.environmentName] = samples[key.path] }
        let c = try ConfigLoader(searchPaths: [], environment: env).load()
        for key in ConfigSchema.keys { #expect(c.origin(key.path) == .environment(name: key.environmentName)) }
        let d = c.daemon
        #expect(d.source == .replay(path: "/tmp/s.jsonl"))
        #expect(d.udevReceiveBuffer == 1 << 20)
        #expect(d.monitoring.listen == ListenAddress(host: "::1", port: 9000))
        #expect(d.monitoring.listen.isLoopback)
        #expect(d.plugins.dirs == ["/a", "/b"])
        #expect(d.shutdownDeadline == .milliseconds(1500))
        #expect(d.monitoring.enabled == false)
        #expect(d.shutdownStateFile == "/var/lib/plugboard/last-shutdown")
        #expect(d.udevMode == "kernel" && d.redis.host == "h" && d.redis.mode == "both")
        #expect(d.redis.retention == .age(.seconds(7 * 86400)))
        #expect(d.redis.waitReplicas == 1 && d.redis.waitTimeout == .milliseconds(250))
        #expect(d.redis.linger == .zero)
        #expect(d.redis.clusterNodes == ["10.0.0.2:6379", "10.0.0.3:6379"])
        #expect(d.redis.tlsCAFile == "/etc/ssl/redis-ca.pem" && d.redis.tlsCertFile == "/etc/plugboard/client.pem"
                && d.redis.tlsKeyFile == "/etc/plugboard/client.key" && d.redis.tlsServerName == "redis.internal")
        #expect(d.plugins.manifests == false && d.plugins.registryCache == "/r")
        #expect(d.plugins.requireSignature && d.plugins.trustedKeysDir == "/k")
        #expect(d.performance.cpuAffinity == CPUAffinity([0, 1, 3]))
        #expect(c.value("performance.cpu_affinity") == .string("0-1,3"), "shown in the kernel's cpulist form")
        #expect(d.performance.settleDevices == 7 && d.performance.debounceMilliseconds == 0)
        #expect(d.performance.maxDevices == 9 && d.plugins.outputQueueRecords == 32)
        #expect(d.stateDir == "/var/lib/pb" && d.stateRingDir == "/run/pb")
        #expect(d.plugins.prewarm && d.plugins.forkServer == false)
    }

    @Test("performance.cpu_affinity takes a CPU list or a bare integer; a bad list names the key and the fix", arguments: [
        ("[performance]\ncpu_affinity = \"3-1\"\n", "the range \"3-1\" runs backwards"),
        ("[performance]\ncpu_affinity = \"one\"\n", "\"one\" is not a CPU number or a range like 0-3"),
        ("[performance]\ncpu_affinity = \"0,,1\"\n", "has an empty entry"),
        ("[performance]\ncpu_affinity = \"2-\"\n", "\"2-\" is not a CPU number"),
        ("[performance]\ncpu_affinity = \"4096\"\n", "CPU 4096 is past the largest CPU number"),
        ("[performance]\ncpu_affinity = true\n", "expected a CPU list"),
    ])
    func cpuAffinityErrors(toml: String, problem: String) throws {
        expectRefused(toml, mentioning: ["performance.cpu_affinity", problem, "\"1\", \"0-3\" or \"0,2-3\""])
    }

    @Test("performance.cpu_affinity: unset pins nothing; an integer is one CPU")
    func cpuAffinityValues() throws {
        #expect(DaemonConfig.defaults.performance.cpuAffinity.isEmpty)
        let dir = TempDir()
        let file = dir.write("plugboard.toml", "[performance]\ncpu_affinity = 1\n")
        let c = try ConfigLoader(searchPaths: [], environment: [:]).load(file: file)
        #expect(c.daemon.performance.cpuAffinity.cpus == [1])
        let settings = try HostSettings(config: c, environment: [:])
        #expect(settings.cpuAffinity.cpus == [1], "the daemon's host gets it")
    }

    @Test("redis.cluster_nodes and redis.wait_*: into the publisher with redis.url's credentials, in the summary; a bad node is refused naming it and the fix")
    func redisClusterSettings() throws {
        let dir = TempDir()
        let file = dir.write("plugboard.toml", """
            [redis]
            url = "redis://:pw@10.0.0.1:7000/0"
            cluster_nodes = ["10.0.0.2:7001", "[fd00::3]:7002"]
            wait_replicas = 1
            wait_timeout = "250ms"

            """)
        let settings = try HostSettings(config: ConfigLoader(searchPaths: [], environment: [:]).load(file: file), environment: [:])
        let r = try #require(settings.redis)
        #expect(r.clusterNodes.map(\.redacted) == ["redis://:***@10.0.0.2:7001/0", "redis://:***@[fd00::3]:7002/0"])
        #expect(r.clusterNodes.allSatisfy { $0.password == "pw" })
        #expect(r.waitReplicas == 1 && r.waitTimeout == .milliseconds(250))
        #expect(settings.summary.contains { $0.key == "redis_wait" && $0.value == "1 replica(s), 0.25 seconds" })
        #expect(settings.summary.contains { $0.key == "redis_cluster_nodes" && !$0.value.contains("pw") })
        let bad = dir.write("bad.toml", "[redis]\nurl = \"redis://10.0.0.1:7000\"\ncluster_nodes = [\"10.0.0.2\"]\n")
        #expect {
            try HostSettings(config: ConfigLoader(searchPaths: [], environment: [:]).load(file: bad), environment: [:])
        } throws: { error in
            "\(error)".contains("redis.cluster_nodes (from ") && "\(error)".contains("\"10.0.0.2\" is not HOST:PORT (fix: ")
        }
    }

    @Test("settle_ms = \"default\" takes performance.debounce_ms and performance.settle_devices; 0 there turns it off; a number is its own")
    func settleWindowFromManifest() throws {
        let dir = TempDir()
        let file = dir.write("plugboard.toml", "[performance]\ndebounce_ms = 40\nsettle_devices = 9\n")
        let settings = try HostSettings(config: ConfigLoader(searchPaths: [], environment: [:]).load(file: file), environment: [:])
        #expect(settings.settle(for: WorkerSettings(settle: .daemonDefault)) == SettleOptions(window: .milliseconds(40), maxDevices: 9))
        #expect(settings.settle(for: WorkerSettings(settle: .milliseconds(250))) == SettleOptions(window: .milliseconds(250), maxDevices: 9))
        #expect(settings.settle(for: WorkerSettings()) == nil, "a plugin that does not ask gets no window")
        let off = dir.write("off.toml", "[performance]\ndebounce_ms = 0\n")
        let zero = try HostSettings(config: ConfigLoader(searchPaths: [], environment: [:]).load(file: off), environment: [:])
        #expect(zero.settle(for: WorkerSettings(settle: .daemonDefault)) == nil)
        #expect(zero.summary.contains { $0.key == "settle_default_ms" && $0.value == "0" })
    }

    @Test("a word outside a key's choices is rejected with a did-you-mean", arguments: [
        ("[udev]\nmode = \"kernal\"\n", "udev.mode", "did you mean \"kernel\""),
        ("[redis]\nmode = \"streams\"\n", "redis.mode", "did you mean \"stream\""),
    ])
    func choiceErrors(toml: String, key: String, hint: String) throws {
        expectRefused(toml, mentioning: [key, hint])
    }

    /// Loads `toml` from a file and expects it refused with a message naming the file and each of `parts`.
    private func expectRefused(_ toml: String, mentioning parts: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        let dir = TempDir()
        let file = dir.write("plugboard.toml", toml)
        #expect(sourceLocation: sourceLocation) {
            try ConfigLoader(searchPaths: [], environment: [:]).load(file: file)
        } throws: { e in
            let m = "\(e)"
            return m.contains(file) && parts.allSatisfy { m.contains($0) }
        }
    }

    @Test("the example packaging/plugboard.toml is valid and sets what it says")
    func exampleConfigIsValid() throws {
        let c = try ConfigLoader(searchPaths: [], environment: [:]).load(file: PackagePaths.root + "/packaging/plugboard.toml")
        #expect(c.daemon.source == .udev)
        #expect(c.daemon.performance.ringSlots == 2048)
        #expect(c.daemon.monitoring.listen.isLoopback)
        #expect(c.daemon.shutdownStateFile == "/var/lib/plugboard/last-shutdown")
    }

    @Test("the registry cache goes to the configured file, else systemd's state directory")
    func registryCacheLocation() throws {
        var p = DaemonConfig.defaults.plugins
        #expect(p.registryCachePath(environment: [:]) == nil)
        #expect(p.registryCachePath(environment: ["STATE_DIRECTORY": "/var/lib/plugboard"]) == "/var/lib/plugboard/registry.pbr")
        p.registryCache = "/tmp/r.pbr"
        #expect(p.registryCachePath(environment: ["STATE_DIRECTORY": "/var/lib/plugboard"]) == "/tmp/r.pbr")
    }

    @Test("sizes and durations accept their written forms in the file")
    func writtenForms() throws {
        let dir = TempDir()
        let file = dir.write("p.toml", """
            [udev]
            receive_buffer = "256MiB"
            [shutdown]
            deadline = "250ms"
            [plugins]
            dirs = ["/x", "/y"]
            """)
        let d = try ConfigLoader(searchPaths: [], environment: [:]).load(file: file).daemon
        #expect(d.udevReceiveBuffer == 256 << 20)
        #expect(d.shutdownDeadline == .milliseconds(250))
        #expect(d.plugins.dirs == ["/x", "/y"])
    }

    @Test("a listen address that is not loopback is kept when configured")
    func nonLoopbackListen() throws {
        let c = try ConfigLoader(searchPaths: [], environment: ["PLUGBOARD_MONITORING_LISTEN": "0.0.0.0:9100"]).load()
        #expect(c.daemon.monitoring.listen == ListenAddress(host: "0.0.0.0", port: 9100))
        #expect(!c.daemon.monitoring.listen.isLoopback)
    }

    // MARK: Every validation error

    @Test("an unknown key in a section is an error naming the file, line and the likely key")
    func unknownKeyDidYouMean() {
        let p = problems(toml: "[performance]\nbatch_sise = 3\n")
        #expect(p.count == 1)
        #expect(p.first?.key == "performance.batch_sise")
        #expect(p.first?.origin == .file(path: p.first.flatMap { if case .file(let f, _) = $0.origin { f } else { nil } } ?? "", line: 2))
        #expect(p.first?.fix.contains("did you mean \"performance.batch_size\"") == true)
        #expect(p.first?.description.contains("plugboard.toml:2: performance.batch_sise: unknown key") == true)
    }

    @Test("an unknown section is an error with a did-you-mean")
    func unknownSection() {
        let p = problems(toml: "[monitorin]\nenabled = true\n")
        #expect(p.count == 1)
        #expect(p.first?.key == "monitorin")
        #expect(p.first?.fix.contains("did you mean \"monitoring\"") == true)
    }

    @Test("an unknown key with nothing close lists the known keys")
    func unknownKeyNoGuess() {
        let p = problems(toml: "zzzzzzzzzzzz = 1\n")
        #expect(p.first?.problem == "unknown key")
        #expect(p.first?.fix.contains("known keys: source, udev.mode, udev.receive_buffer") == true)
    }

    @Test("a section written as a value is an error")
    func sectionNotTable() {
        let p = problems(toml: "redis = 5\n")
        #expect(p.count == 1)
        #expect(p.first?.key == "redis")
        // Names the type found, so the reader sees what was written instead of a table.
        #expect(p.first?.problem == "is a integer, expected a table")
        guard case .file(_, let line)? = p.first?.origin else { Issue.record("no file origin"); return }
        #expect(line == 1)
        #expect(p.first?.fix.contains("[redis]") == true)
    }

    @Test("a TOML syntax error names the file and line")
    func syntaxError() {
        let p = problems(toml: "[performance]\nbatch_size = = 3\n")
        #expect(p.count == 1)
        guard case .file(_, let line)? = p.first?.origin else { Issue.record("no file origin"); return }
        #expect(line == 2)
        #expect(p.first?.problem.contains("not valid TOML") == true)
    }

    @Test("a value of the wrong type names the key, the type found and what to write")
    func wrongType() {
        let p = problems(toml: "[performance]\ndebounce_ms = \"25\"\n")
        #expect(p.first?.key == "performance.debounce_ms")
        #expect(p.first?.problem == "is a string, expected an integer from 0 to 10000")
        #expect(p.first?.fix.contains("e.g. 25") == true)
        let b = problems(toml: "[monitoring]\nenabled = \"yes\"\n")
        #expect(b.first?.problem == "is a string, expected true or false")
        let l = problems(toml: "[plugins]\ndirs = \"/x\"\n")
        #expect(l.first?.key == "plugins.dirs")
        #expect(l.first?.problem.contains("expected an array") == true)
        let e = problems(toml: "[plugins]\ndirs = [\"/x\", 3]\n")
        #expect(e.first?.problem.contains("expected strings only") == true)
    }

    @Test("an integer out of range names the range and the default")
    func outOfRange() {
        let p = problems(toml: "[performance]\nbatch_size = 0\n")
        #expect(p.first?.problem == "0 is out of range")
        #expect(p.first?.fix == "use an integer from 1 to 4096 (default 20)")
        #expect(problems(toml: "[performance]\nevent_buffer_size = 8\n").first?.problem == "8 is out of range")
        #expect(problems(toml: "[plugins]\ncache_size = -1\n").first?.key == "plugins.cache_size")
        #expect(problems(toml: "[redis]\nmaxlen = -1\n").first?.key == "redis.maxlen")
        #expect(problems(toml: "[redis]\nmaxlen = 0\n").isEmpty, "0 keeps every entry, as --redis-maxlen 0 does")
        #expect(problems(toml: "[udev]\nreceive_buffer = 1024\n").first?.key == "udev.receive_buffer")
        let settle = problems(toml: "[performance]\nsettle_devices = 0\n").first
        #expect(settle?.key == "performance.settle_devices" && settle?.fix == "use an integer from 1 to 65536 (default 128)")
    }

    @Test("redis.wait_replicas and redis.wait_timeout out of range name the key, the value and the fix")
    func waitKeysOutOfRange() {
        let n = problems(toml: "[redis]\nwait_replicas = 17\n").first
        #expect(n?.key == "redis.wait_replicas" && n?.problem == "17 is out of range")
        #expect(n?.fix == "use an integer from 0 to 16 (default 0)")
        let t = problems(toml: "[redis]\nwait_timeout = \"10s\"\n").first
        #expect(t?.key == "redis.wait_timeout" && t?.problem.contains("10s") == true, "\(String(describing: t))")
        #expect(t?.fix.contains("4s") == true, "\(String(describing: t))")
        #expect(problems(toml: "[redis]\nwait_replicas = 1\nwait_timeout = \"250ms\"\n").isEmpty)
    }

    @Test("redis.linger: 0ms turns it off; past 100ms, or not a duration, names the key, the value and the fix")
    func lingerKey() {
        #expect(problems(toml: "[redis]\nlinger = \"0ms\"\n").isEmpty)
        #expect(problems(toml: "[redis]\nlinger = \"100ms\"\n").isEmpty)
        let long = problems(toml: "[redis]\nlinger = \"1s\"\n").first
        #expect(long?.key == "redis.linger" && long?.problem == "1s is out of range", "\(String(describing: long))")
        #expect(long?.fix.contains("100ms") == true, "\(String(describing: long))")
        let bad = problems(toml: "[redis]\nlinger = \"soon\"\n").first
        #expect(bad?.key == "redis.linger" && bad?.problem == "\"soon\" is not a duration", "\(String(describing: bad))")
    }

    @Test("a bad duration or one out of range is an error")
    func badDuration() {
        #expect(problems(toml: "[shutdown]\ndeadline = \"5 parsecs\"\n").first?.problem == "\"5 parsecs\" is not a duration")
        #expect(problems(toml: "[shutdown]\ndeadline = \"10ms\"\n").first?.problem == "10ms is out of range")
        #expect(problems(toml: "[shutdown]\ndeadline = true\n").first?.problem.contains("expected a duration") == true)
    }

    @Test("a bad byte size is an error")
    func badSize() {
        #expect(problems(toml: "[udev]\nreceive_buffer = \"lots\"\n").first?.problem == "\"lots\" is not a size")
    }

    @Test("a bad source is an error with a did-you-mean")
    func badSource() {
        let p = problems(toml: "source = \"udevv\"\n")
        #expect(p.first?.problem == "\"udevv\" is not a known source (did you mean \"udev\"?)")
        #expect(problems(toml: "source = \"replay:\"\n").first?.problem == "\"replay:\" needs a file name")
        #expect(problems(toml: "source = \"synthetic:abc\"\n").first?.problem == "\"abc\" is not a positive event count")
        #expect(problems(toml: "source = \"synthetic:0\"\n").first?.problem == "\"0\" is not a positive event count")
    }

    @Test("a bad listen address is an error")
    func badListen() {
        #expect(problems(toml: "[monitoring]\nlisten = \"localhost\"\n").first?.problem == "\"localhost\" has no port")
        #expect(problems(toml: "[monitoring]\nlisten = \"127.0.0.1:70000\"\n").first?.problem
                == "port \"70000\" is not a number from 0 to 65535")
        #expect(problems(toml: "[monitoring]\nlisten = \":80\"\n").first?.problem == "\":80\" has no host")
        #expect(problems(toml: "[monitoring]\nlisten = \"[::1\"\n").first?.problem == "\"[::1\" is not HOST:PORT")
    }

    @Test("a bad Redis URL is an error")
    func badRedisURL() {
        #expect(problems(toml: "[redis]\nurl = \"http://x\"\n").first?.problem == "\"http://x\" is not a redis://, rediss:// or unix:// URL")
        #expect(problems(toml: "[redis]\nurl = \"rediss://h:6380/0?ca=/x\"\n").first?.problem == "has query parameters; rediss:// takes none")
        #expect(problems(toml: "[redis]\nurl = \"redis://h:0\"\n").first?.problem == "port \"0\" is not a number from 1 to 65535")
        #expect(problems(toml: "[redis]\nurl = \"redis://h:1/x\"\n").first?.problem == "database \"x\" is not a number")
        #expect(problems(toml: "[redis]\nurl = \"redis://\"\n").first?.problem == "\"redis://\" has no host")
        #expect(problems(toml: "[redis]\nurl = \"unix://sock\"\n").first?.problem == "\"unix://sock\" has no absolute socket path")
        #expect(problems(toml: "[redis]\nurl = \"redis://user:pw@h:6379/0\"\n").isEmpty)
    }

    @Test("an empty plugin directory list is an error")
    func emptyDirs() {
        #expect(problems(toml: "[plugins]\ndirs = []\n").first?.problem == "has 0 entries, needs at least 1")
        #expect(problems(toml: "[plugins]\ndirs = [\"\"]\n").first?.problem == "has an empty entry")
    }

    @Test("a bad value in the environment names the variable")
    func badEnvironment() {
        let p = problems(env: ["PLUGBOARD_PERFORMANCE_BATCH_SIZE": "many"])
        #expect(p.first?.origin == .environment(name: "PLUGBOARD_PERFORMANCE_BATCH_SIZE"))
        #expect(p.first?.description.hasPrefix("environment variable PLUGBOARD_PERFORMANCE_BATCH_SIZE: performance.batch_size:") == true)
        #expect(problems(env: ["PLUGBOARD_MONITORING_ENABLED": "perhaps"]).first?.problem == "\"perhaps\" is not a boolean")
    }

    @Test("an unknown environment variable is a warning with a did-you-mean, not an error")
    func unknownEnvironment() throws {
        let loader = ConfigLoader(searchPaths: [], environment: ["PLUGBOARD_REDIS_UR": "x", "PLUGBOARD_CONFIG": "/nonexistent"])
        #expect(loader.unknownEnvironmentVariables() == ["PLUGBOARD_REDIS_UR (did you mean PLUGBOARD_REDIS_URL?)"])
    }

    @Test("a missing named file is an error naming it")
    func missingFile() {
        do {
            _ = try ConfigLoader(searchPaths: [], environment: [:]).load(file: "/nonexistent/plugboard.toml")
            Issue.record("loaded a missing file")
        } catch {
            #expect(error.problems.first?.key == "/nonexistent/plugboard.toml")
            #expect(error.problems.first?.problem == "the configuration file does not exist or is not readable")
        }
        #expect(problems(env: ["PLUGBOARD_CONFIG": "/nonexistent/x.toml"]).first?.origin == .environment(name: "PLUGBOARD_CONFIG"))
    }

    @Test("a file that is not UTF-8 text is an error naming it")
    func notUTF8() throws {
        let dir = TempDir()
        let path = dir.path + "/latin1.toml"
        try Data([0x73, 0x6f, 0x75, 0x72, 0x63, 0x65, 0x20, 0x3d, 0x20, 0x22, 0xe9, 0x22, 0x0a]).write(to: URL(fileURLWithPath: path))
        do {
            _ = try ConfigLoader(searchPaths: [], environment: [:]).load(file: path)
            Issue.record("loaded a file that is not UTF-8")
        } catch {
            #expect(error.problems.first?.origin == .file(path: path, line: nil))
            #expect(error.problems.first?.problem.hasPrefix("cannot be read as UTF-8 text") == true)
        }
    }

    @Test("an unknown or malformed flag key is an error naming the flag")
    func badFlags() {
        let p = problems(flags: ["performance.batchsize=3"])
        #expect(p.first?.origin == .commandLine(flag: "--set performance.batchsize=3"))
        #expect(p.first?.fix.contains("did you mean \"performance.batch_size\"") == true)
        #expect(problems(flags: ["shutdown.deadline=forever"]).first?.problem == "\"forever\" is not a duration")
        #expect(ConfigOverride.parse("novalue") == nil)
        #expect(ConfigOverride.parse("=3") == nil)
    }

    @Test("every problem in a file is reported at once")
    func allProblemsAtOnce() {
        let p = problems(toml: "source = \"x\"\n[performance]\nbatch_size = 0\ndebounce = 3\n")
        #expect(p.count == 3)
    }

    @Test("config check prints the origin of each value and fails on bad files")
    func configCheckCommand() throws {
        let binary = try #require(productBinary("plugboard"))
        let dir = TempDir()
        let good = dir.write("good.toml", "[performance]\nbatch_size = 9\n")
        var r = try runProcess(binary, ["config", "check", good], env: ["PLUGBOARD_SHUTDOWN_DEADLINE": "2s"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("performance.batch_size        = 9  # \(good):2"))
        #expect(r.stdout.contains("shutdown.deadline             = \"2s\"  # environment PLUGBOARD_SHUTDOWN_DEADLINE"))
        let bad = dir.write("bad.toml", "[performance]\nbatch_sise = 9\n")
        r = try runProcess(binary, ["config", "check", bad], env: [:])
        #expect(r.status == 1)
        #expect(r.stderr.contains("\(bad):2: performance.batch_sise: unknown key. Fix: did you mean \"performance.batch_size\"?"))
    }

    @Test("config check --json puts problems on stdout as JSON, and checks the places the configuration names")
    func configCheckJSONAndPlaces() throws {
        let binary = try #require(productBinary("plugboard"))
        let dir = TempDir()
        let empty = dir.write("empty.toml", "")
        func json(_ args: [String]) throws -> (status: Int32, value: [String: Any]) {
            let r = try runProcess(binary, ["config", "check", "--json"] + args, env: ["PLUGBOARD_CONFIG": empty])
            let value = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            return (r.status, try #require(value, "stdout is one JSON object: \(r.stdout) \(r.stderr)"))
        }
        // A bad value: not a word on stdout before, now the problem with its key, origin and fix.
        var r = try json(["--set", "performance.batch_size=0"])
        #expect(r.status == 1)
        #expect(r.value["valid"] as? Bool == false)
        var problems = try #require(r.value["problems"] as? [[String: String]])
        #expect(problems.first?["key"] == "performance.batch_size")
        #expect(problems.first?["origin"] == "command line --set performance.batch_size=0")
        #expect(problems.first?["fix"]?.contains("from 1 to 4096") == true)
        // A plugin directory that is not there, a state file that cannot be written.
        r = try json(["--set", "plugins.dirs=\(dir.path)/missing", "--set", "shutdown.state_file=\(dir.path)/no/such/dir/state",
                      "--set", "plugins.registry_cache=none"])
        #expect(r.status == 1)
        problems = try #require(r.value["problems"] as? [[String: String]])
        #expect(problems.map { $0["key"] } == ["plugins.dirs", "shutdown.state_file"])
        #expect(problems.first?["problem"] == "\(dir.path)/missing does not exist")
        #expect(problems.last?["problem"]?.hasPrefix("\(dir.path)/no/such/dir/state cannot be written") == true)
        #expect(r.value["values"] != nil, "the effective configuration is still shown")
        // Both in place: valid.
        r = try json(["--set", "plugins.dirs=\(dir.path)", "--set", "shutdown.state_file=\(dir.path)/state", "--set", "plugins.registry_cache=none"])
        #expect(r.status == 0)
        #expect(r.value["valid"] as? Bool == true)
        #expect((r.value["problems"] as? [Any])?.isEmpty == true)
        // In text, the same problems on stderr, exit 1.
        let text = try runProcess(binary, ["config", "check", "--set", "plugins.dirs=\(dir.path)/missing"], env: ["PLUGBOARD_CONFIG": empty])
        #expect(text.status == 1)
        #expect(text.stderr.contains("plugins.dirs: \(dir.path)/missing does not exist. Fix: create it, or correct the plugin directory's path."))
    }

    @Test("config check and serve refuse a CPU this machine does not let the daemon use, naming the allowed ones")
    func unusableCPU() throws {
        let binary = try #require(productBinary("plugboard"))
        let allowed = CPUAffinity.allowed
        let dir = TempDir()
        let empty = dir.write("empty.toml", "")
        let env = ["PLUGBOARD_PERFORMANCE_CPU_AFFINITY": "1000", "PLUGBOARD_CONFIG": empty]
        let problem = "CPU 1000 is not one this process may run on (allowed: \(allowed))"
        let setting = "the setting is performance.cpu_affinity, from environment PLUGBOARD_PERFORMANCE_CPU_AFFINITY"
        var r = try runProcess(binary, ["config", "check"], env: env)
        #expect(r.status == 1)
        #expect(r.stderr.contains(problem) && r.stderr.contains(setting), "\(r.stderr)")
        r = try runProcess(binary, ["serve", "--set", "plugins.dirs=\(dir.path)", "--set", "source=synthetic:3",
                                    "--set", "monitoring.enabled=false"], env: env)
        #expect(r.status != 0)
        #expect(r.stderr.contains(problem), "\(r.stderr)")
        // A CPU it may use passes.
        r = try runProcess(binary, ["config", "check"], env: ["PLUGBOARD_PERFORMANCE_CPU_AFFINITY": "\(allowed.cpus.last!)", "PLUGBOARD_CONFIG": empty])
        #expect(r.status == 0, "\(r.stderr)")
    }
}
