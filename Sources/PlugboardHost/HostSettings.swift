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

    /// The worker program: `configured` if set, else `plugboard-worker` beside this executable,
    /// else the packaged one.
    public static func workerExecutable(configured: String) -> String {
        if !configured.isEmpty { return configured }
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        if n > 0 {
            let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let sibling = (exe as NSString).deletingLastPathComponent + "/plugboard-worker"
            if access(sibling, X_OK) == 0 { return sibling }
        }
        return "/usr/lib/plugboard/plugboard-worker"
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
    public var discovery: PluginDiscovery
    public var udev: UdevSourceOptions
    /// nil: events are not published.
    public var redis: RedisPublisher.Configuration?
    /// One deadline for the whole graceful shutdown (stop source, drain, plugin shutdown, flush).
    public var shutdownDeadline: Duration
    public var isolation: IsolationSettings
    /// File trust checks before loading: strict, warn or off (`plugins.trust`).
    public var trust: String = "strict"
    /// Refuse plugins whose manifest is not signed by a trusted key (`plugins.require_signature`).
    public var requireSignature = false
    /// The trusted public keys' directory (`plugins.trusted_keys_dir`).
    public var trustedKeysDir = "/etc/plugboard/trusted.d"
    /// Multiplier of a replay's `delay_ms` (1: as recorded, 0: no waits; `replay.pace`).
    public var replayPace: Double = 1
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
        isolation = IsolationSettings(mode: p.isolation, threadPlugins: Set(p.threadPlugins), processPlugins: Set(p.processPlugins),
                                      policy: policy)
        for key in ConfigSchema.keys { origins[key.path] = effective.origin(key.path).description }
        if !config.redis.url.isEmpty {
            let url: RedisURL
            do { url = try RedisURL(parsing: config.redis.url) } catch {
                throw HostStartError("redis.url (from \(effective.origin("redis.url"))): \(error)")
            }
            var r = RedisPublisher.Configuration(url: url, host: config.redis.host.isEmpty ? StreamKeys.localHost : config.redis.host)
            r.mode = RedisPublisher.Mode(rawValue: config.redis.mode) ?? .stream
            r.maxLength = config.redis.maxlen == 0 ? nil : config.redis.maxlen
            r.maxBatch = config.redis.batch
            redis = r
        }
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
        s.append(("udev_mode", udev.mode.rawValue))
        s.append(("udev_receive_buffer", "\(udev.receiveBufferBytes)"))
        if let redis {
            s.append(("redis", redis.url.redacted))
            s.append(("redis_stream", StreamKeys(host: redis.host).events))
            s.append(("redis_mode", redis.mode.rawValue))
            s.append(("redis_maxlen", redis.maxLength.map { "\($0)" } ?? "0"))
            s.append(("redis_batch", "\(redis.maxBatch)"))
        } else {
            s.append(("redis", "off"))
        }
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

    /// `summary` on one line: `source=udev plugins=/usr/lib/plugboard/plugins ...`.
    public var summaryLine: String { summary.map { "\($0.key)=\($0.value)" }.joined(separator: " ") }
}

extension HostSettings {
    /// The configuration key behind each core error code. The core says what failed and what to do
    /// in general terms; it knows nothing of flags or keys.
    static let keyForErrorCode: [String: String] = [
        "plugins.dir": "plugins.dirs",
        "replay.open": "source", "replay.field": "source",
        "ring.memfd": "performance.event_buffer_size", "ring.mmap": "performance.event_buffer_size",
        "config.cpu_affinity": "performance.cpu_affinity",
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

/// The host could not start; the message says what to change.
public struct HostStartError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ message: String) { description = message }
}
