import Foundation
import PlugboardCore
import PlugboardManifest
import PlugboardRedis
import PlugboardUdev
import PlugboardSystem

/// How the host finds its plugins.
public enum PluginDiscovery: Sendable, Equatable {
    /// Only plugins with a valid `.pbm` manifest (docs/manifest.md); the registry cache at
    /// `registryCache` (nil: none) and an LRU of `lruCapacity` parsed manifests.
    case manifests(registryCache: String?, lruCapacity: Int)
    /// Every `*.so` in the directories, no manifests (for tests and plugin development).
    case allLibraries
}

/// Where plugins run, and how worker processes are run (docs/security.md).
public struct IsolationSettings: Sendable {
    /// "manifest" (each plugin's `[worker] isolation`), "process" or "thread" for all.
    public var mode: String = "manifest"
    /// Plugins that run as threads, or as processes, whatever the manifest says.
    public var threadPlugins: Set<String> = []
    public var processPlugins: Set<String> = []
    /// How worker processes are started and watched.
    public var policy: ProcessPolicy

    /// Where plugin `name` runs, given what its manifest asks for.
    public func isolation(for name: String, manifest: WorkerSettings.Isolation) -> Isolation {
        if threadPlugins.contains(name) { return .thread }
        if processPlugins.contains(name) { return .process }
        switch mode {
        case "process": return .process
        case "thread": return .thread
        default: return manifest == .thread ? .thread : .process
        }
    }

    /// The worker program: `configured` if set, else `plugboard-worker` beside this executable (a
    /// build tree), else the installed layout's PREFIX/lib/plugboard/plugboard-worker next to this
    /// PREFIX/bin/plugboard (the package, `make install`, an unpacked package), else the packaged path.
    public static func workerExecutable(configured: String) -> String {
        if !configured.isEmpty { return configured }
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        if n > 0 {
            let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let bin = (exe as NSString).deletingLastPathComponent
            let sibling = bin + "/plugboard-worker"
            if access(sibling, X_OK) == 0 { return sibling }
            let installed = (bin as NSString).deletingLastPathComponent + "/lib/plugboard/plugboard-worker"
            if access(installed, X_OK) == 0 { return installed }
        }
        return "/usr/lib/plugboard/plugboard-worker"
    }
}

/// How `serve`'s HTTP endpoints are guarded (docs/security.md, "The HTTP endpoints").
public struct MonitoringSettings: Sendable {
    /// The bearer token /plugins and /devices (and /metrics with `protectMetrics`) require; nil: none.
    public var token: [UInt8]?
    public var protectMetrics = false
    /// Each request must be complete within this, and the next one start within it.
    public var requestTimeout: Duration = .seconds(10)
    /// Set when the endpoints listen beyond loopback: logged at start and shown in /readyz's body.
    public var exposureWarning: String?

    public init(token: [UInt8]? = nil, protectMetrics: Bool = false, requestTimeout: Duration = .seconds(10),
                exposureWarning: String? = nil) {
        self.token = token
        self.protectMetrics = protectMetrics
        self.requestTimeout = requestTimeout
        self.exposureWarning = exposureWarning
    }

    /// From the configuration: reads the token file, and words the warning about the exposure.
    /// - Throws: `HostStartError` when the token file cannot be used.
    init(config effective: EffectiveConfig, warnings: inout [String]) throws {
        let m = effective.daemon.monitoring
        protectMetrics = m.protectMetrics
        requestTimeout = m.requestTimeout
        if !m.tokenFile.isEmpty {
            let source = "monitoring.token_file (from \(effective.origin("monitoring.token_file")))"
            let text = try RedisSecret.readLine(m.tokenFile, source: source, what: "the token",
                                                fix: "e.g. `openssl rand -hex 32 > \(m.tokenFile)`, chmod 600", warnings: &warnings)
            guard text.utf8.count >= 16, !text.contains(" ") else {
                throw HostStartError("\(source): \(m.tokenFile) must hold one token of at least 16 characters without spaces on its first line (fix: `openssl rand -hex 32 > \(m.tokenFile)`)")
            }
            token = Array(text.utf8)
        }
        if m.enabled && !m.listen.isLoopback {
            let open = token == nil
                ? "/plugins and /devices (device serial numbers) answer anyone who can reach it (fix: set monitoring.token_file, or listen on 127.0.0.1 behind a proxy)"
                : "/plugins and /devices need the bearer token" + (protectMetrics ? ", /metrics too" : "; /metrics answers anyone (monitoring.protect_metrics)")
            let warning = "monitoring listens beyond loopback on \(m.listen) (monitoring.listen, from \(effective.origin("monitoring.listen"))): \(open)"
            // Only `serve` listens: it logs this when it starts (and `config check` prints it); `run`
            // and `monitor` serve no HTTP, so it is not one of their warnings.
            exposureWarning = warning
        }
    }

    /// Whether `header` (an Authorization value) carries the token; compared in constant time.
    public func authorizes(_ header: String?) -> Bool {
        guard let token else { return true }
        guard let header, header.hasPrefix("Bearer ") else { return false }
        let given = Array(header.utf8.dropFirst("Bearer ".utf8.count))
        var diff = UInt8(given.count == token.count ? 0 : 1)
        for i in 0..<token.count { diff |= token[i] ^ (i < given.count ? given[i] : 0) }
        return diff == 0
    }
}

/// What `plugboard run`, `serve` and `monitor` start, described once and built in one place:
/// `init(config:...)` from the effective configuration (defaults, file, environment, flags).
/// There are no other defaults: every value here comes from `ConfigSchema`.
public struct HostSettings: Sendable {
    public var source: SourceSpec
    public var pluginDirectories: [String]
    /// A missing plugin directory is a notice, not an error: true when `plugins.dirs` is the
    /// built-in default (a machine with no plugins installed yet still runs, and `monitor` works).
    public var pluginDirectoriesOptional = false
    /// Per plugin name, in the order given (`--plugin-config`): see `PluginConfiguration.overridden(by:)`.
    public var pluginConfiguration: [String: PluginConfiguration] = [:]
    public var ringSlots: Int
    public var batchSize: Int
    /// Let finite sources lap slow plugins instead of waiting for them.
    public var lossy = false
    /// CPUs the source and the plugin workers are pinned to (empty: not pinned).
    public var cpuAffinity: CPUAffinity
    /// The settle window of plugins whose manifest says `settle_ms = "default"`
    /// (`performance.debounce_ms`; zero: those plugins get every event at once).
    public var settleDefault: Duration = .milliseconds(25)
    /// Most devices one plugin's settle window holds (`performance.settle_devices`).
    public var settleDevices = SettleOptions.defaultMaxDevices
    /// Most devices the device table holds (`performance.max_devices`).
    public var maxDevices = DeviceTable.defaultMaxDevices
    /// Most records in the plugin output queue (`plugins.output_queue_records`).
    public var outputQueueRecords = 4096
    public var discovery: PluginDiscovery
    public var udev: UdevSourceOptions
    /// nil: events are not published.
    public var redis: RedisPublisher.Configuration?
    /// `state.dir`: the publisher's window and spill as files (nil: in memory). docs/redis.md, "Crash safety".
    public var stateDirectory: String?
    /// `state.ring_dir`: the event ring as a file (nil: a sealed memfd).
    public var ringDirectory: String?
    /// One deadline for the whole graceful shutdown (stop source, drain, plugin shutdown, flush).
    public var shutdownDeadline: Duration
    public var isolation: IsolationSettings
    /// File trust checks before loading: strict, warn or off (`plugins.trust`).
    public var trust: String = "strict"
    /// Largest record a plugin may publish (`plugins.max_record_bytes`): what the publisher carries.
    public var maxRecordBytes: Int = 64 << 10
    /// When worker processes are replaced by fresh ones (nil: never; `plugins.recycle_*`).
    public var recycle: RecyclePolicy?
    /// What plugins' log calls may cost (`plugins.log_rate`).
    public var logLimits = PluginLogLimits()
    /// Refuse plugins whose manifest is not signed by a trusted key (`plugins.require_signature`).
    public var requireSignature = false
    /// The trusted public keys' directory (`plugins.trusted_keys_dir`).
    public var trustedKeysDir = "/etc/plugboard/trusted.d"
    /// Multiplier of a replay's `delay_ms` (1: as recorded, 0: no waits; `replay.pace`).
    public var replayPace: Double = 1
    /// What an operator should fix although the host can start (a password readable by others...):
    /// logged at warning level by every command at start and printed by `config check`.
    public var warnings: [String] = []
    /// How `serve`'s endpoints are guarded.
    public var monitoring = MonitoringSettings()
    /// Where each configuration key's value came from (`command line --plugins /x`,
    /// `/etc/plugboard/plugboard.toml:3`, `default`), for `explain(_:)`.
    public var origins: [String: String] = [:]

    /// The settings a configuration describes.
    /// - Parameters:
    ///   - pluginConfiguration: per plugin name, values over each manifest's `[config]`
    ///     (`--plugin-config NAME.KEY=VALUE`).
    ///   - lossy: let finite sources lap slow plugins (`--lossy`).
    ///   - environment: where `STATE_DIRECTORY` (systemd) and the cache directory are looked up.
    /// - Throws: `HostStartError` naming the key when a value cannot be used on this machine.
    public init(config effective: EffectiveConfig, pluginConfiguration: [String: PluginConfiguration] = [:], lossy: Bool = false,
                environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        let config = effective.daemon
        source = config.source
        pluginDirectories = config.plugins.dirs
        pluginDirectoriesOptional = effective.origin("plugins.dirs") == .defaultValue
        self.pluginConfiguration = pluginConfiguration
        ringSlots = config.performance.ringSlots
        batchSize = config.performance.batchSize
        self.lossy = lossy
        cpuAffinity = config.performance.cpuAffinity
        settleDefault = .milliseconds(config.performance.debounceMilliseconds)
        settleDevices = config.performance.settleDevices
        maxDevices = config.performance.maxDevices
        outputQueueRecords = config.plugins.outputQueueRecords
        if config.plugins.manifests {
            let cache: String?
            if config.plugins.registryCache == "none" { cache = nil }
            else { cache = config.plugins.registryCachePath(environment: environment) ?? ManifestRegistry.defaultCachePath() }
            discovery = .manifests(registryCache: cache, lruCapacity: config.plugins.cacheSize)
        } else {
            discovery = .allLibraries
        }
        udev = UdevSourceOptions()
        udev.mode = UdevMode(rawValue: config.udevMode) ?? .auto
        udev.receiveBufferBytes = config.udevReceiveBuffer
        shutdownDeadline = config.shutdownDeadline
        switch config.replayPace {
        case "recorded": replayPace = 1
        case "fast": replayPace = 0
        default:
            let t = config.replayPace
            guard t.hasSuffix("x"), let f = Double(t.dropLast()), f > 0, f <= 1_000_000 else {
                throw HostStartError("replay.pace (from \(effective.origin("replay.pace"))): \"\(t)\" is not a pace (fix: write recorded, fast, or a speed-up such as 10x)")
            }
            replayPace = 1 / f
        }
        let p = config.plugins
        trust = p.trust
        maxRecordBytes = p.maxRecordBytes
        logLimits.perSecond = p.logRate
        logLimits.burst = 2 * p.logRate
        requireSignature = p.requireSignature
        trustedKeysDir = p.trustedKeysDir
        if requireSignature, !config.plugins.manifests {
            throw HostStartError("plugins.require_signature (from \(effective.origin("plugins.require_signature"))): signatures cover the .pbm manifests, but plugins.manifests is false (fix: set plugins.manifests = true, or plugins.require_signature = false)")
        }
        var policy = ProcessPolicy(workerExecutable: IsolationSettings.workerExecutable(configured: p.workerExecutable))
        if geteuid() == 0 {
            let wanted = p.workerUser.isEmpty ? nil : p.workerUser
            var account: LockDown.Account?
            for name in wanted.map({ [$0] }) ?? ["plugboard", "nobody"] {
                account = try? LockDown.account(named: name)
                if account != nil { break }
            }
            if account == nil {
                if let wanted {
                    throw HostStartError("plugins.worker_user (from \(effective.origin("plugins.worker_user"))): there is no user \"\(wanted)\" (fix: create it, e.g. `useradd --system \(wanted)`, or name an existing unprivileged user)")
                }
                throw HostStartError("plugins.worker_user: neither a \"plugboard\" nor a \"nobody\" user exists to run plugin code as (fix: create one, e.g. `useradd --system plugboard`, or set plugins.worker_user)")
            }
            policy.account = account
        }
        policy.initDeadline = p.initDeadline
        policy.defaultCallbackDeadline = p.callbackDeadline
        policy.restartBackoff = p.restartBackoff
        policy.crashBurst = p.crashBurst
        policy.crashInterval = p.crashInterval
        policy.addressSpace = UInt64(p.memoryLimit)
        policy.cpuSeconds = UInt64(p.cpuLimit)
        policy.openFiles = UInt64(p.openFilesLimit)
        policy.prewarm = p.prewarm
        policy.forkServer = p.forkServer
        if p.recycleAfterEvents > 0 || p.recycleAfterSeconds > 0 {
            recycle = RecyclePolicy(afterEvents: UInt64(p.recycleAfterEvents),
                                    afterTime: p.recycleAfterSeconds > 0 ? .seconds(p.recycleAfterSeconds) : nil,
                                    plugins: Set(p.recycle))
        }
        isolation = IsolationSettings(mode: p.isolation, threadPlugins: Set(p.threadPlugins), processPlugins: Set(p.processPlugins),
                                      policy: policy)
        for key in ConfigSchema.keys { origins[key.path] = effective.origin(key.path).description }
        monitoring = try MonitoringSettings(config: effective, warnings: &warnings)
        if !config.redis.url.isEmpty {
            var url: RedisURL
            do { url = try RedisURL(parsing: config.redis.url) } catch {
                throw HostStartError("redis.url (from \(effective.origin("redis.url"))): \(error)")
            }
            try RedisSecret.apply(to: &url, config: effective, environment: environment, warnings: &warnings)
            url.tls = try Self.tls(config.redis, url: url, effective: effective)
            var r = RedisPublisher.Configuration(url: url, host: config.redis.host.isEmpty ? StreamKeys.localHost : config.redis.host)
            r.mode = RedisPublisher.Mode(rawValue: config.redis.mode) ?? .stream
            try Self.applyRetention(config.redis, to: &r, effective: effective)
            r.maxBatch = config.redis.batch
            r.clusterNodes = try config.redis.clusterNodes.map { node in
                guard let n = ClusterRedirect("MOVED 0 \(node)", like: url)?.node, !node.hasPrefix(":") else {
                    throw HostStartError("redis.cluster_nodes (from \(effective.origin("redis.cluster_nodes"))): \"\(node)\" is not HOST:PORT (fix: list the other nodes of the cluster as \"10.0.0.2:6379\", \"[fd00::2]:6379\"; credentials and TLS come from redis.url)")
                }
                return n
            }
            r.waitReplicas = config.redis.waitReplicas
            r.waitTimeout = config.redis.waitTimeout
            r.linger = UInt64(config.redis.linger.nanoseconds)
            // One limit: a record publish accepted always fits what the publisher carries.
            r.pluginMaxRecord = maxRecordBytes + OutputQueue.maxTopicBytes + OutputQueue.maxNameBytes
            redis = r
        }
        stateDirectory = try Self.stateDirectory(config.stateDir, key: "state.dir", systemd: "STATE_DIRECTORY",
                                                 effective: effective, environment: environment)
        ringDirectory = try Self.stateDirectory(config.stateRingDir, key: "state.ring_dir", systemd: "RUNTIME_DIRECTORY",
                                                effective: effective, environment: environment)
        // The loader checks the syntax; whether this machine lets us use the CPUs is checked here,
        // so config check refuses what run, serve and monitor would.
        do { try cpuAffinity.validate() } catch { throw explain(error) }
    }

    /// The settings as `key=value` pairs, in a fixed order: logged by every command at start
    /// ("host settings: ...") and printed by `plugboard config check`, so the two can be compared.
    /// Secrets (the Redis password) never appear.
    public var summary: [(key: String, value: String)] {
        var s: [(String, String)] = []
        s.append(("source", source.description))
        s.append(("plugins", pluginDirectories.joined(separator: ",")))
        switch discovery {
        case .manifests(let cache, let lru):
            s.append(("manifests", "on"))
            s.append(("registry_cache", cache ?? "none"))
            s.append(("manifest_lru", "\(lru)"))
        case .allLibraries:
            s.append(("manifests", "off"))
        }
        s.append(("ring_slots", "\(ringSlots)"))
        s.append(("batch_size", "\(batchSize)"))
        s.append(("cpu_affinity", cpuAffinity.isEmpty ? "none" : cpuAffinity.description))
        s.append(("settle_default_ms", "\(settleDefault.nanoseconds / 1_000_000)"))
        s.append(("settle_devices", "\(settleDevices)"))
        s.append(("max_devices", "\(maxDevices)"))
        s.append(("udev_mode", udev.mode.rawValue))
        s.append(("udev_receive_buffer", "\(udev.receiveBufferBytes)"))
        if let redis {
            s.append(("redis", redis.url.redacted))
            s.append(("redis_stream", StreamKeys(host: redis.host).events))
            s.append(("redis_mode", redis.mode.rawValue))
            if let age = redis.retentionAge {
                s.append(("redis_retention", "\(StreamRetention.age(age)) (MINID ~)"))
            } else {
                s.append(("redis_maxlen", redis.maxLength.map { "\($0)" } ?? "0"))
            }
            s.append(("redis_batch", "\(redis.maxBatch)"))
            s.append(("redis_linger", redis.linger == 0 ? "off" : formatDuration(.nanoseconds(Int64(redis.linger)))))
            if !redis.clusterNodes.isEmpty { s.append(("redis_cluster_nodes", redis.clusterNodes.map(\.redacted).joined(separator: ","))) }
            if redis.waitReplicas > 0 { s.append(("redis_wait", "\(redis.waitReplicas) replica(s), \(redis.waitTimeout)")) }
            if let tls = redis.url.tls {
                s.append(("redis_tls_ca_file", tls.caFile ?? "system store"))
                s.append(("redis_tls_cert_file", tls.certFile ?? "none"))
                if tls.certFile != nil { s.append(("redis_tls_key_file", tls.keyFile ?? "none")) }
                var host = ""
                if case .tcp(let h, _) = redis.url.endpoint { host = h }
                s.append(("redis_tls_server_name", tls.serverName ?? "\(host) (the URL's host)"))
            }
        } else {
            s.append(("redis", "off"))
        }
        s.append(("state_dir", stateDirectory ?? "none"))
        s.append(("ring_dir", ringDirectory ?? "none"))
        s.append(("max_record_bytes", "\(maxRecordBytes)"))
        s.append(("output_queue_records", "\(outputQueueRecords)"))
        s.append(("log_rate", "\(logLimits.perSecond)"))
        s.append(("trust", trust))
        if requireSignature { s.append(("require_signature", "true (keys: \(trustedKeysDir))")) }
        s.append(("isolation", isolation.mode))
        if !isolation.threadPlugins.isEmpty { s.append(("thread_plugins", isolation.threadPlugins.sorted().joined(separator: ","))) }
        if !isolation.processPlugins.isEmpty { s.append(("process_plugins", isolation.processPlugins.sorted().joined(separator: ","))) }
        s.append(("worker_user", isolation.policy.account?.name ?? "(daemon's own)"))
        s.append(("shutdown_deadline", formatDuration(shutdownDeadline)))
        if lossy { s.append(("lossy", "on")) }
        if case .replay = source { s.append(("replay_pace", replayPace == 1 ? "recorded" : replayPace == 0 ? "fast" : "\(1 / replayPace)x")) }
        return s
    }

    /// A `state.*` directory: the configured one, else the one systemd made for the unit (the
    /// first of a `:`-separated list), else none. It must be a directory this user can write.
    static func stateDirectory(_ configured: String, key: String, systemd: String, effective: EffectiveConfig,
                               environment: [String: String]) throws -> String? {
        var origin = "from \(effective.origin(key))"
        var dir = configured
        if dir.isEmpty, let fromSystemd = environment[systemd]?.split(separator: ":").first.map(String.init), !fromSystemd.isEmpty {
            dir = fromSystemd
            origin = "from $\(systemd), set by systemd"
        }
        guard !dir.isEmpty else { return nil }
        guard dir.hasPrefix("/") else {
            throw HostStartError("\(key) (\(origin)): \"\(dir)\" is not an absolute path (fix: write the directory as /var/lib/plugboard or similar, or \"\" for none)")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue,
              access(dir, W_OK | X_OK) == 0 else {
            throw HostStartError("\(key) (\(origin)): \(dir) is not a directory this user can write (fix: create it for the daemon's user, e.g. `install -d -m 0750 \(dir)`, or set \(key) = \"\" to keep it in memory)")
        }
        return dir
    }

    /// `summary` on one line: `source=udev plugins=/usr/lib/plugboard/plugins ...`.
    public var summaryLine: String { summary.map { "\($0.key)=\($0.value)" }.joined(separator: " ") }
}

extension HostSettings {
    /// The TLS settings of a `rediss://` URL from the `redis.tls_*` keys, each file checked for
    /// readability now so that `config check` refuses what the publisher would. nil for
    /// `redis://` and `unix://`, where a `redis.tls_*` key is an error (the operator meant TLS).
    static func tls(_ r: DaemonConfig.Redis, url: RedisURL, effective: EffectiveConfig) throws -> RedisTLS? {
        func from(_ key: String) -> String { "\(key) (from \(effective.origin(key)))" }
        let given = [("redis.tls_ca_file", r.tlsCAFile), ("redis.tls_cert_file", r.tlsCertFile),
                     ("redis.tls_key_file", r.tlsKeyFile), ("redis.tls_server_name", r.tlsServerName)].filter { !$0.1.isEmpty }
        guard url.tls != nil else {
            if let (key, _) = given.first {
                throw HostStartError("\(from(key)) is set but redis.url is \(url.redacted), without TLS (fix: use a rediss:// URL to connect over TLS, or remove \(key))")
            }
            return nil
        }
        for (key, path) in given where key != "redis.tls_server_name" {
            if access(path, R_OK) != 0 {
                let why = String(cString: strerror(errno))
                throw HostStartError("\(from(key)): cannot read \(path): \(why) (fix: point \(key) at a readable PEM file\(geteuid() == 0 ? "" : ", readable by this user"))")
            }
        }
        if r.tlsCertFile.isEmpty != r.tlsKeyFile.isEmpty {
            let (have, missing) = r.tlsCertFile.isEmpty ? ("redis.tls_key_file", "redis.tls_cert_file") : ("redis.tls_cert_file", "redis.tls_key_file")
            throw HostStartError("\(from(have)) is set without \(missing) (fix: set both, the client certificate and its private key)")
        }
        func opt(_ s: String) -> String? { s.isEmpty ? nil : s }
        return RedisTLS(caFile: opt(r.tlsCAFile), certFile: opt(r.tlsCertFile), keyFile: opt(r.tlsKeyFile),
                        serverName: opt(r.tlsServerName))
    }

    /// `redis.retention` or `redis.maxlen` into the publisher's trimming: a time is `MINID ~`, a
    /// count (either key) `MAXLEN ~`. Both keys set is refused: which one was meant is not ours
    /// to guess (docs/redis.md, "Retention").
    static func applyRetention(_ redis: DaemonConfig.Redis, to r: inout RedisPublisher.Configuration,
                               effective: EffectiveConfig) throws {
        let retentionOrigin = effective.origin("redis.retention"), maxlenOrigin = effective.origin("redis.maxlen")
        if let retention = redis.retention, maxlenOrigin != .defaultValue {
            throw HostStartError("redis.retention (from \(retentionOrigin)) and redis.maxlen (from \(maxlenOrigin)) are both set (fix: keep one: redis.retention = \"\(retention)\" says what the streams keep as a time or a count; redis.maxlen is the older way to say a count)")
        }
        r.retentionAge = nil
        switch redis.retention {
        case .age(let age)?:
            r.maxLength = nil
            r.retentionAge = age
        case .count(let n)?:
            r.maxLength = n
        case nil:
            r.maxLength = redis.maxlen == 0 ? nil : redis.maxlen
        }
    }

    /// The configuration key behind each core error code. The core says what failed and what to do
    /// in general terms; it knows nothing of flags or keys.
    static let keyForErrorCode: [String: String] = [
        "plugins.dir": "plugins.dirs",
        "replay.open": "source", "replay.field": "source",
        "ring.memfd": "performance.event_buffer_size", "ring.mmap": "performance.event_buffer_size",
        "config.cpu_affinity": "performance.cpu_affinity",
        "state.dir": "state.dir", "state.busy": "state.dir", "ring.file": "state.ring_dir", "ring.busy": "state.ring_dir",
    ]

    /// `error` with the setting that fixes it added to its fix, written one way:
    /// `(fix: <what to do>; the setting is <key>, from <origin>)`, e.g.
    /// `... (fix: create it, or correct the plugin directory's path; the setting is plugins.dirs, from command line --plugins /opt/p)`.
    /// Errors the host has no key for come back unchanged.
    public func explain(_ error: any Error) -> any Error {
        func setting(_ key: String) -> String { "the setting is \(key), from \(origins[key] ?? "default")" }
        if var e = error as? PlugboardError, let key = Self.keyForErrorCode[e.code] {
            e.fix = (e.fix.map { $0 + "; " } ?? "") + setting(key)
            return e
        }
        if var e = error as? ManifestError, e.field == "plugins directory" {
            e.fix += "; " + setting("plugins.dirs")
            return e
        }
        return error
    }
}

/// Where the Redis password comes from, and what is wrong with where it is kept (docs/security.md).
enum RedisSecret {
    /// The systemd credential read when neither the URL nor `redis.password_file` gives a password.
    static let credentialName = "redis-password"

    /// Sets `url`'s password from `redis.password_file` or the systemd credential, and warns
    /// when a password sits where other users can read it.
    /// - Throws: `HostStartError` when the password is given twice, or its file cannot be used.
    static func apply(to url: inout RedisURL, config effective: EffectiveConfig, environment: [String: String],
                      warnings: inout [String]) throws {
        let file = effective.daemon.redis.passwordFile
        let origin = effective.origin("redis.password_file")
        if url.password != nil {
            if !file.isEmpty {
                throw HostStartError("redis.password_file (from \(origin)) and a password in redis.url (from \(effective.origin("redis.url"))): the password is given twice (fix: remove the password from redis.url, or drop redis.password_file)")
            }
            if case .file(let path, _) = effective.origin("redis.url"), let mode = otherReadable(path) {
                warnings.append("the configuration file \(path) holds the Redis password (redis.url) and is readable by other users (mode \(mode)) (fix: chmod 600 \(path), or move the password to redis.password_file or a systemd credential)")
            }
            return
        }
        let path: String
        var source: String
        if !file.isEmpty {
            path = file
            source = "redis.password_file (from \(origin))"
        } else if let dir = environment["CREDENTIALS_DIRECTORY"], !dir.isEmpty,
                  FileManager.default.fileExists(atPath: "\(dir)/\(credentialName)") {
            path = "\(dir)/\(credentialName)"
            source = "the systemd credential \(credentialName)"
        } else {
            return
        }
        url.password = try readLine(path, source: source, what: "the Redis password",
                                    fix: "readable by the daemon's user only: chmod 600", warnings: &warnings)
    }

    /// The secret a file holds alone on its first line (trailing newlines dropped), warning when
    /// group or others may read the file: the password file, the systemd credential, the
    /// monitoring token.
    /// - Throws: `HostStartError` naming `source` and the file when it cannot be read, is empty or
    ///   holds more than one line.
    static func readLine(_ path: String, source: String, what: String, fix: String, warnings: inout [String]) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw HostStartError("\(source): cannot read \(path): \(String(cString: strerror(errno))) (fix: create it holding \(what) on one line, \(fix))")
        }
        var text = String(decoding: data, as: UTF8.self)
        while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
        guard !text.isEmpty, !text.contains("\n") else {
            throw HostStartError("\(source): \(path) \(text.isEmpty ? "is empty" : "holds more than one line") (fix: write \(what) alone on the first line)")
        }
        if let mode = otherReadable(path) {
            warnings.append("\(source): \(path) holds \(what) and is readable by other users (mode \(mode)) (fix: chmod 600 \(path))")
        }
        return text
    }

    /// The file's mode in octal when group or others may read it; nil otherwise (or unreadable).
    static func otherReadable(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0, st.st_mode & 0o044 != 0 else { return nil }
        return "0" + String(st.st_mode & 0o7777, radix: 8)
    }
}

/// The host could not start; the message says what to change.
public struct HostStartError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ message: String) { description = message }
}

extension HostSettings {
    /// What `config check` checks beyond the values: the places the configuration names, as `run`
    /// and `serve` would meet them. Problems stop a start (a plugin directory that is not there, a
    /// state file that cannot be written); warnings do not (the default plugin directory not made
    /// yet, a registry cache that cannot be written: every start then reads every manifest).
    public static func checkPlaces(_ effective: EffectiveConfig) -> (problems: [ConfigProblem], warnings: [String]) {
        let config = effective.daemon
        var problems: [ConfigProblem] = [], warnings: [String] = []
        let files = FileManager.default
        for dir in config.plugins.dirs {
            var isDir: ObjCBool = false
            let exists = files.fileExists(atPath: dir, isDirectory: &isDir)
            if exists && isDir.boolValue {
                if access(dir, R_OK | X_OK) != 0 {
                    problems.append(ConfigProblem(origin: effective.origin("plugins.dirs"), key: "plugins.dirs",
                        problem: "\(dir) cannot be read (\(String(cString: strerror(errno))))",
                        fix: "let the daemon's user read it, or correct the path"))
                }
            } else if effective.origin("plugins.dirs") == .defaultValue {
                warnings.append("plugins.dirs: \(dir) does not exist yet: no plugins are loaded until it does (create it and install plugins there)")
            } else {
                problems.append(ConfigProblem(origin: effective.origin("plugins.dirs"), key: "plugins.dirs",
                    problem: exists ? "\(dir) is not a directory" : "\(dir) does not exist",
                    fix: "create it, or correct the plugin directory's path"))
            }
        }
        if !config.shutdownStateFile.isEmpty {
            let path = config.shutdownStateFile
            let dir = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
            let writable = files.fileExists(atPath: path) ? access(path, W_OK) == 0 : access(dir, W_OK | X_OK) == 0
            if !writable {
                problems.append(ConfigProblem(origin: effective.origin("shutdown.state_file"), key: "shutdown.state_file",
                    problem: "\(path) cannot be written (\(String(cString: strerror(errno))))",
                    fix: "create \(dir) writable by the daemon's user (systemd: StateDirectory=plugboard gives /var/lib/plugboard), or set shutdown.state_file = \"\""))
            }
        }
        if config.plugins.manifests, config.plugins.registryCache != "none",
           let cache = config.plugins.registryCachePath(environment: ProcessInfo.processInfo.environment) ?? ManifestRegistry.defaultCachePath() {
            var dir = (cache as NSString).deletingLastPathComponent
            // The registry creates missing directories: check the nearest one that exists.
            while !dir.isEmpty && dir != "/" && !files.fileExists(atPath: dir) { dir = (dir as NSString).deletingLastPathComponent }
            let writable = files.fileExists(atPath: cache) ? access(cache, W_OK) == 0 : access(dir.isEmpty ? "." : dir, W_OK | X_OK) == 0
            if !writable {
                warnings.append("plugins.registry_cache: \(cache) cannot be written (\(String(cString: strerror(errno)))): every start reads every manifest (fix: make its directory writable by the daemon's user, or set plugins.registry_cache)")
            }
        }
        return (problems, warnings)
    }
}
