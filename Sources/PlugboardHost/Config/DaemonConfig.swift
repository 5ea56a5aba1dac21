import PlugboardCore

/// The validated configuration, each value with where it came from.
public struct EffectiveConfig: Sendable {
    /// The file that was read, if any.
    public let file: String?
    let entries: [String: (ConfigValue, ConfigOrigin)]

    /// The value of `path` (a key from `ConfigSchema.keys`).
    public func value(_ path: String) -> ConfigValue {
        guard let v = entries[path]?.0 else { preconditionFailure("no configuration key \(path)") }
        return v
    }

    /// Where the value of `path` came from.
    public func origin(_ path: String) -> ConfigOrigin {
        entries[path]?.1 ?? .defaultValue
    }

    /// The typed view the daemon uses.
    public var daemon: DaemonConfig { DaemonConfig(self) }

    /// The value of `key` as it may be shown: a Redis URL without its password.
    func shown(_ key: ConfigKey) -> ConfigValue {
        if case .redisURL = key.kind, case .string(let url) = value(key.path) { return .string(Text.redactingCredentials(url)) }
        return value(key.path)
    }

    /// The effective configuration for people: one line per key, with its origin.
    public func render() -> String {
        var lines = ["# effective configuration (file: \(file ?? "none, built-in defaults"))"]
        let width = ConfigSchema.keys.map(\.path.count).max()! + 1
        for key in ConfigSchema.keys {
            lines.append(key.path.padding(toLength: width, withPad: " ", startingAt: 0) + "= " + "\(shown(key))"
                         + "  # " + origin(key.path).description)
        }
        let d = daemon
        lines.append("performance.ring_slots".padding(toLength: width, withPad: " ", startingAt: 0) + "= \(d.performance.ringSlots)"
                     + "  # derived from performance.event_buffer_size (next power of two)")
        return lines.joined(separator: "\n")
    }

    /// The effective configuration as JSON: `{"file": ..., "values": {key: {"value": ..., "origin": ...}}}`.
    public func renderJSON() -> String {
        var w = JSONWriter()
        w.beginObject()
        w.key("file")
        if let file { w.string(file) } else { w.null() }
        w.key("values")
        w.beginObject()
        for key in ConfigSchema.keys {
            w.key(key.path)
            w.beginObject()
            w.key("value"); shown(key).writeJSON(into: &w)
            w.key("origin"); w.string(origin(key.path).description)
            w.endObject()
        }
        w.key("performance.ring_slots")
        w.beginObject()
        w.key("value"); w.number(daemon.performance.ringSlots)
        w.key("origin"); w.string("derived from performance.event_buffer_size")
        w.endObject()
        w.endObject()
        w.endObject()
        return w.text
    }
}

/// The daemon's configuration, typed. Built from `EffectiveConfig` (which has validated every value).
public struct DaemonConfig: Sendable, Equatable {
    public struct Redis: Sendable, Equatable {
        /// Empty when publishing is off.
        public var url: String
        /// The {HOST} of the key names; empty: this machine's host name.
        public var host: String
        /// A file holding the password (empty: none, or the systemd credential).
        public var passwordFile: String = ""
        /// stream, publish or both.
        public var mode: String
        public var maxlen: Int
        /// `redis.retention`; nil: not set (`maxlen` decides).
        public var retention: StreamRetention? = nil
        public var batch: Int
        /// rediss:// only; empty: not set.
        public var tlsCAFile: String = ""
        public var tlsCertFile: String = ""
        public var tlsKeyFile: String = ""
        public var tlsServerName: String = ""
        /// `redis.cluster_nodes`: more cluster nodes to try ("HOST:PORT").
        public var clusterNodes: [String] = []
        /// `redis.wait_replicas` (0: no WAIT) and `redis.wait_timeout`.
        public var waitReplicas: Int = 0
        public var waitTimeout: Duration = .seconds(1)
        /// `redis.linger`: how long a small batch waits for more before it is sent.
        public var linger: Duration = .milliseconds(1)
    }
    public struct Performance: Sendable, Equatable {
        /// The settle window of plugins whose manifest says `settle_ms = "default"`, ms.
        public var debounceMilliseconds: Int
        public var batchSize: Int
        public var eventBufferSize: Int
        /// CPUs the source and workers are pinned to (empty: not pinned).
        public var cpuAffinity: CPUAffinity
        /// Most devices one plugin's settle window holds.
        public var settleDevices: Int = 128
        /// Most devices the device table holds.
        public var maxDevices: Int = 4096
        /// Ring slots: `eventBufferSize` rounded up to a power of two.
        public var ringSlots: Int { DaemonConfig.nextPowerOfTwo(eventBufferSize) }
    }
    public struct Monitoring: Sendable, Equatable {
        public var enabled: Bool
        public var listen: ListenAddress
        /// Empty: the endpoints need no token.
        public var tokenFile: String = ""
        public var protectMetrics: Bool = false
        public var requestTimeout: Duration = .seconds(10)
    }
    public struct Plugins: Sendable, Equatable {
        public var dirs: [String]
        /// Load only plugins with a valid manifest.
        public var manifests: Bool
        /// Empty: the default location (see `registryCachePath`).
        public var registryCache: String
        public var cacheSize: Int
        /// strict, warn or off.
        public var trust: String = "strict"
        /// Refuse plugins without a valid signature by a trusted key.
        public var requireSignature: Bool = false
        /// Where the trusted public keys are (`*.pub`).
        public var trustedKeysDir: String = "/etc/plugboard/trusted.d"
        /// manifest, process or thread.
        public var isolation: String = "manifest"
        public var threadPlugins: [String] = []
        public var processPlugins: [String] = []
        public var workerExecutable: String = ""
        public var workerUser: String = ""
        public var initDeadline: Duration = .seconds(5)
        public var callbackDeadline: Duration = .seconds(10)
        public var restartBackoff: Duration = .milliseconds(100)
        public var crashBurst: Int = 5
        public var crashInterval: Duration = .seconds(60)
        public var memoryLimit: Int = 0
        public var cpuLimit: Int = 0
        public var openFilesLimit: Int = 0
        public var maxRecordBytes: Int = 64 << 10
        public var logRate: Int = 100
        public var recycleAfterEvents: Int = 0
        public var recycleAfterSeconds: Int = 0
        public var recycle: [String] = []
        public var prewarm = false
        public var forkServer = true
        /// Most records in the plugin output queue.
        public var outputQueueRecords: Int = 4096

        /// The registry cache file to use: the configured one, else `$STATE_DIRECTORY/registry.pbr`
        /// (systemd's StateDirectory=), else nil for the registry's own default.
        public func registryCachePath(environment: [String: String]) -> String? {
            if !registryCache.isEmpty { return registryCache }
            if let state = environment["STATE_DIRECTORY"]?.split(separator: ":").first, !state.isEmpty {
                return "\(state)/registry.pbr"
            }
            return nil
        }
    }

    public var source: SourceSpec
    /// auto, udev or kernel.
    public var udevMode: String
    public var udevReceiveBuffer: Int
    public var redis: Redis
    public var performance: Performance
    public var monitoring: Monitoring
    public var plugins: Plugins
    public var shutdownDeadline: Duration
    /// recorded, fast, or Nx.
    public var replayPace: String = "recorded"
    /// Empty when none is kept.
    public var shutdownStateFile: String
    /// `[control]`: the control socket (empty: none) and the group that may use it.
    public var controlSocket: String
    public var controlGroup: String
    /// `[state]`: where the publisher's window and the ring live as files (empty: see `HostSettings`).
    public var stateDir: String
    public var stateRingDir: String

    /// Every default, as documented.
    public static var defaults: DaemonConfig {
        // The loader cannot fail with no file, no environment and no flags.
        try! ConfigLoader(searchPaths: [], environment: [:]).load().daemon
    }

    init(_ e: EffectiveConfig) {
        func int(_ p: String) -> Int { if case .integer(let i) = e.value(p) { return i }; preconditionFailure(p) }
        func str(_ p: String) -> String { if case .string(let s) = e.value(p) { return s }; preconditionFailure(p) }
        func bool(_ p: String) -> Bool { if case .bool(let b) = e.value(p) { return b }; preconditionFailure(p) }
        func list(_ p: String) -> [String] { if case .stringList(let l) = e.value(p) { return l }; preconditionFailure(p) }
        guard case .source(let source) = e.value("source"),
              case .listen(let listen) = e.value("monitoring.listen"),
              case .duration(let deadline) = e.value("shutdown.deadline")
        else { preconditionFailure("configuration schema and DaemonConfig disagree") }
        self.source = source
        self.udevMode = str("udev.mode")
        self.udevReceiveBuffer = int("udev.receive_buffer")
        self.redis = Redis(url: str("redis.url"), host: str("redis.host"), passwordFile: str("redis.password_file"),
                           mode: str("redis.mode"), maxlen: int("redis.maxlen"),
                           retention: (try? StreamRetention.parse(str("redis.retention")).get()) ?? nil,
                           batch: int("redis.batch"), tlsCAFile: str("redis.tls_ca_file"), tlsCertFile: str("redis.tls_cert_file"),
                           tlsKeyFile: str("redis.tls_key_file"), tlsServerName: str("redis.tls_server_name"))
        self.performance = Performance(debounceMilliseconds: int("performance.debounce_ms"), batchSize: int("performance.batch_size"),
                                       eventBufferSize: int("performance.event_buffer_size"),
                                       cpuAffinity: (try? CPUAffinity.parse(str("performance.cpu_affinity")).get()) ?? .none,
                                       settleDevices: int("performance.settle_devices"), maxDevices: int("performance.max_devices"))
        func duration(_ p: String) -> Duration { if case .duration(let d) = e.value(p) { return d }; preconditionFailure(p) }
        self.redis.clusterNodes = list("redis.cluster_nodes")
        self.redis.waitReplicas = int("redis.wait_replicas")
        self.redis.waitTimeout = duration("redis.wait_timeout")
        self.redis.linger = duration("redis.linger")
        self.monitoring = Monitoring(enabled: bool("monitoring.enabled"), listen: listen, tokenFile: str("monitoring.token_file"),
                                     protectMetrics: bool("monitoring.protect_metrics"),
                                     requestTimeout: duration("monitoring.request_timeout"))
        self.plugins = Plugins(dirs: list("plugins.dirs"), manifests: bool("plugins.manifests"),
                               registryCache: str("plugins.registry_cache"), cacheSize: int("plugins.cache_size"),
                               trust: str("plugins.trust"), requireSignature: bool("plugins.require_signature"),
                               trustedKeysDir: str("plugins.trusted_keys_dir"), isolation: str("plugins.isolation"), threadPlugins: list("plugins.thread"),
                               processPlugins: list("plugins.process"), workerExecutable: str("plugins.worker_executable"),
                               workerUser: str("plugins.worker_user"), initDeadline: duration("plugins.init_deadline"),
                               callbackDeadline: duration("plugins.callback_deadline"),
                               restartBackoff: duration("plugins.restart_backoff"), crashBurst: int("plugins.crash_burst"),
                               crashInterval: duration("plugins.crash_interval"), memoryLimit: int("plugins.memory_limit"),
                               cpuLimit: int("plugins.cpu_limit"), openFilesLimit: int("plugins.open_files_limit"),
                               maxRecordBytes: int("plugins.max_record_bytes"), logRate: int("plugins.log_rate"),
                               recycleAfterEvents: int("plugins.recycle_after_events"),
                               recycleAfterSeconds: int("plugins.recycle_after_seconds"), recycle: list("plugins.recycle"),
                               prewarm: bool("plugins.prewarm"), forkServer: bool("plugins.fork_server"),
                               outputQueueRecords: int("plugins.output_queue_records"))
        self.shutdownDeadline = deadline
        self.replayPace = str("replay.pace")
        self.shutdownStateFile = str("shutdown.state_file")
        self.controlSocket = str("control.socket")
        self.controlGroup = str("control.group")
        self.stateDir = str("state.dir")
        self.stateRingDir = str("state.ring_dir")
    }

    /// The smallest power of two >= n (n >= 1).
    public static func nextPowerOfTwo(_ n: Int) -> Int {
        n <= 1 ? 1 : 1 << (Int.bitWidth - (n - 1).leadingZeroBitCount)
    }
}
