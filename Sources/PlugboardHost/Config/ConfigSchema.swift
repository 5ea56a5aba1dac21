/// The type and allowed range of one configuration key.
public enum ConfigKind: Sendable {
    case string
    case integer(ClosedRange<Int>)
    /// Bytes; in the file either an integer or a string such as "128MiB".
    case byteSize(ClosedRange<Int>)
    case bool
    /// A list of non-empty strings; from the environment or a flag, comma-separated.
    case stringList(minCount: Int)
    case duration(ClosedRange<Duration>)
    case source
    case listen
    /// A Redis URL: "" (off), redis://HOST[:PORT][/DB], rediss://HOST[:PORT][/DB] (TLS) or unix:///path/to/socket.
    case redisURL
    /// One of a fixed set of words.
    case choice([String])
    /// CPU numbers and ranges, as `taskset -c` takes them ("1", "0-3", "0,2-3"); "" for none.
    case cpuList
    /// What a Redis stream keeps: a time ("7d") or an entry count; "" for not set (`StreamRetention`).
    case retention

    /// How an operator writes a value of this kind (for error messages and docs).
    var expected: String {
        switch self {
        case .string: "a string"
        case .integer(let r): "an integer from \(r.lowerBound) to \(r.upperBound)"
        case .byteSize(let r): "a size in bytes from \(r.lowerBound) to \(r.upperBound) (an integer or a string like \"128MiB\")"
        case .bool: "true or false"
        case .stringList(let n): n > 0 ? "an array of at least \(n) string(s)" : "an array of strings"
        case .duration(let r): "a duration from \(formatDuration(r.lowerBound)) to \(formatDuration(r.upperBound)) (a string like \"5s\" or \"250ms\")"
        case .source: "\"udev\", \"replay:FILE\" or \"synthetic:N\""
        case .listen: "\"HOST:PORT\""
        case .redisURL: "\"\" (Redis off), \"redis://HOST:PORT[/DB]\", \"rediss://HOST:PORT[/DB]\" (TLS) or \"unix:///path/to/redis.sock\""
        case .choice(let words): "one of " + words.map { "\"\($0)\"" }.joined(separator: ", ")
        case .cpuList: "a CPU list like \"1\", \"0-3\" or \"0,2-3\""
        case .retention: StreamRetention.expected
        }
    }
}

/// One configuration key: its dotted path, kind, default, and documentation.
public struct ConfigKey: Sendable {
    /// `section.key`, or a bare key for top-level keys (`source`).
    public let path: String
    public let kind: ConfigKind
    public let defaultValue: ConfigValue
    public let help: String

    /// The environment variable that overrides this key: `PLUGBOARD_` + path upper-cased, dots as underscores.
    public var environmentName: String {
        "PLUGBOARD_" + path.uppercased().replacingOccurrences(of: ".", with: "_")
    }

    var section: String? { path.contains(".") ? String(path.split(separator: ".")[0]) : nil }
    var name: String { String(path.split(separator: ".").last!) }
}

/// Every key the daemon reads. The loader, `config check`, the docs' table and the tests all use this list.
public enum ConfigSchema {
    public static let keys: [ConfigKey] = [
        ConfigKey(path: "source", kind: .source, defaultValue: .source(.udev),
                  help: "Where events come from: udev (live), replay:FILE (a JSON Lines session), synthetic:N (N generated events)."),

        ConfigKey(path: "udev.mode", kind: .choice(["auto", "udev", "kernel"]), defaultValue: .string("auto"),
                  help: "Netlink group: auto (udev when udevd runs, else kernel), udev or kernel (docs/udev.md)."),
        ConfigKey(path: "udev.receive_buffer", kind: .byteSize(65536...(1 << 30)), defaultValue: .integer(128 << 20),
                  help: "Netlink receive buffer requested for the udev monitor (the kernel may cap it; the effective size is logged)."),

        ConfigKey(path: "redis.url", kind: .redisURL, defaultValue: .string(""),
                  help: "Redis server to publish events to; empty disables publishing."),
        ConfigKey(path: "redis.password_file", kind: .string, defaultValue: .string(""),
                  help: "A file holding the Redis password (one line, mode 0600), instead of a password in redis.url; empty: $CREDENTIALS_DIRECTORY/redis-password when systemd passes that credential (LoadCredential=), else none."),
        ConfigKey(path: "redis.tls_ca_file", kind: .string, defaultValue: .string(""),
                  help: "rediss:// only: PEM file of the CA(s) the server's certificate must chain to; empty: the system's store (/etc/ssl/certs)."),
        ConfigKey(path: "redis.tls_cert_file", kind: .string, defaultValue: .string(""),
                  help: "rediss:// only: PEM client certificate, for a server with tls-auth-clients; empty: none."),
        ConfigKey(path: "redis.tls_key_file", kind: .string, defaultValue: .string(""),
                  help: "rediss:// only: PEM private key of redis.tls_cert_file (keep it 0600); needed with it."),
        ConfigKey(path: "redis.tls_server_name", kind: .string, defaultValue: .string(""),
                  help: "rediss:// only: the name (or IP address) the server's certificate must carry, also sent as SNI; empty: the URL's host."),
        ConfigKey(path: "redis.host", kind: .string, defaultValue: .string(""),
                  help: "The {HOST} in the key names plugboard:{HOST}:events and plugboard:{HOST}:plugin:NAME; empty: this machine's host name."),
        ConfigKey(path: "redis.mode", kind: .choice(["stream", "publish", "both"]), defaultValue: .string("stream"),
                  help: "stream (XADD, exactly once), publish (PUBLISH JSON, fire and forget) or both."),
        ConfigKey(path: "redis.maxlen", kind: .integer(0...1_000_000_000), defaultValue: .integer(100_000),
                  help: "Approximate stream length kept (XADD MAXLEN ~); 0 keeps every entry. Ignored when redis.retention is set; setting both is an error."),
        ConfigKey(path: "redis.retention", kind: .retention, defaultValue: .string(""),
                  help: "What the streams keep: a time (\"7d\", \"12h\", \"30m\": XADD MINID ~ now minus it, on the IDs' milliseconds) or an entry count (\"1000000\": MAXLEN ~); empty: redis.maxlen decides (docs/redis.md, \"Retention\")."),
        ConfigKey(path: "redis.batch", kind: .integer(1...10_000), defaultValue: .integer(1024),
                  help: "Most commands pipelined per round trip (also the unacknowledged window)."),
        ConfigKey(path: "redis.linger", kind: .duration(.zero...(.milliseconds(100))), defaultValue: .duration(.milliseconds(1)),
                  help: "How long a small batch of events waits for more before it is sent (\"0ms\": at once). Paced traffic then shares round trips instead of one XADD, one wake and one reply per event; a full batch (redis.batch), a stop and a finished source send at once. Adds up to this much to an event's way to Redis (docs/redis.md, \"Linger\")."),
        ConfigKey(path: "redis.cluster_nodes", kind: .stringList(minCount: 0), defaultValue: .stringList([]),
                  help: "Redis Cluster: more nodes (\"HOST:PORT\", with redis.url's credentials and TLS) to try when the one to connect to is unreachable, also at start; the publisher learns the rest with CLUSTER NODES once connected."),
        ConfigKey(path: "redis.wait_replicas", kind: .integer(0...16), defaultValue: .integer(0),
                  help: "Redis replication: after each pipelined batch, WAIT until this many replicas have it; only then are its events acknowledged (fewer: the batch is sent again after a backoff), so an acknowledged event survives the failover of its master. 0: no WAIT, replication stays asynchronous (docs/redis.md, \"Redis Cluster\")."),
        ConfigKey(path: "redis.wait_timeout", kind: .duration(.milliseconds(10)...(.seconds(4))), defaultValue: .duration(.seconds(1)),
                  help: "With redis.wait_replicas: how long one WAIT may block for the replicas (below the 5 s command timeout); past it the batch counts as not replicated."),

        ConfigKey(path: "performance.debounce_ms", kind: .integer(0...10_000), defaultValue: .integer(25),
                  help: "Settle window (ms) of plugins whose manifest says settle_ms = \"default\": each device's events within it are coalesced for those plugins; 0: they get every event at once. Other plugins are never delayed."),
        ConfigKey(path: "performance.settle_devices", kind: .integer(1...65_536), defaultValue: .integer(128),
                  help: "Most devices one plugin's settle window holds at once (2 KiB each); an event of another device past it is delivered at once and counted (plugboard_plugin_settle_overflow_total)."),
        ConfigKey(path: "performance.batch_size", kind: .integer(1...4096), defaultValue: .integer(20),
                  help: "The ceiling of a batch: most events handed to a plugin in one call (a plugin's [worker] batch can only lower it). A batch is never waited for: it is what is waiting, so 1 on an idle host and up to this under load."),
        ConfigKey(path: "performance.max_devices", kind: .integer(1...1_000_000), defaultValue: .integer(4096),
                  help: "Most devices the device table holds (2 KiB each). Past it a new device's events still reach every plugin and Redis, but the device is left out of the table (/devices, device_table, resync) and counted (plugboard_device_table_refused_total)."),
        ConfigKey(path: "performance.event_buffer_size", kind: .integer(16...(1 << 20)), defaultValue: .integer(4096),
                  help: "Events the ring holds (its slots); rounded up to a power of two (3000 -> 4096 slots)."),
        ConfigKey(path: "performance.cpu_affinity", kind: .cpuList, defaultValue: .string(""),
                  help: "CPUs the udev source and the plugin workers are pinned to (\"1\", \"0-3\"); one CPU gives the lowest latency to idle plugins, \"\" leaves placement to the kernel."),

        ConfigKey(path: "monitoring.enabled", kind: .bool, defaultValue: .bool(true),
                  help: "Serve /metrics, /healthz, /readyz, /plugins and /devices over HTTP."),
        ConfigKey(path: "monitoring.listen", kind: .listen,
                  defaultValue: .listen(ListenAddress(host: "127.0.0.1", port: 8080)),
                  help: "HTTP listen address. Loopback by default; beyond loopback the daemon warns (log and /readyz) and should have monitoring.token_file."),
        ConfigKey(path: "monitoring.token_file", kind: .string, defaultValue: .string(""),
                  help: "A file holding a bearer token (one line, mode 0600): /plugins and /devices then answer only requests with `Authorization: Bearer TOKEN`. Empty: no token."),
        ConfigKey(path: "monitoring.protect_metrics", kind: .bool, defaultValue: .bool(false),
                  help: "With monitoring.token_file, /metrics needs the token too (/healthz and /readyz never do: probes)."),
        ConfigKey(path: "monitoring.request_timeout", kind: .duration(.milliseconds(100)...(.seconds(300))), defaultValue: .duration(.seconds(10)),
                  help: "A connection must complete each request (and send the next) within this time, or it is closed: idle and half-sent requests hold no socket."),

        ConfigKey(path: "plugins.dirs", kind: .stringList(minCount: 1), defaultValue: .stringList(["/usr/lib/plugboard/plugins"]),
                  help: "Directories searched for plugins (from the environment or a flag: comma-separated)."),
        ConfigKey(path: "plugins.manifests", kind: .bool, defaultValue: .bool(true),
                  help: "Load only plugins with a valid .pbm manifest (docs/manifest.md); false loads every .so (development only)."),
        ConfigKey(path: "plugins.registry_cache", kind: .string, defaultValue: .string(""),
                  help: "The manifest registry cache file; empty: $STATE_DIRECTORY/registry.pbr under systemd, else $XDG_CACHE_HOME/plugboard/registry.pbr; \"none\": no cache (every .pbm is read)."),
        ConfigKey(path: "plugins.cache_size", kind: .integer(0...100_000), defaultValue: .integer(200),
                  help: "Parsed manifests kept in memory (LRU)."),
        ConfigKey(path: "plugins.trust", kind: .choice(["strict", "warn", "off"]), defaultValue: .string("strict"),
                  help: "File checks before a plugin loads (docs/security.md): \"strict\" refuses a .so, .pbm or registry cache, or a directory above them, that is not owned by root or the daemon's user or is writable by group or others; \"warn\" logs and loads; \"off\" skips the checks."),
        ConfigKey(path: "plugins.require_signature", kind: .bool, defaultValue: .bool(false),
                  help: "Load only plugins whose .pbm carries a valid signature (<name>.pbm.sig) by a key in plugins.trusted_keys_dir; refused naming the key id and the reason (docs/security.md). Needs plugins.manifests = true."),
        ConfigKey(path: "plugins.trusted_keys_dir", kind: .string, defaultValue: .string("/etc/plugboard/trusted.d"),
                  help: "The public keys trusted to sign plugins: every *.pub file in this directory (`plugboard keygen` writes them); checked like plugin files under plugins.trust."),
        ConfigKey(path: "plugins.isolation", kind: .choice(["manifest", "process", "thread"]), defaultValue: .string("manifest"),
                  help: "Where plugin code runs: \"manifest\" (each plugin's [worker] isolation, default process), or \"process\"/\"thread\" for all (docs/security.md)."),
        ConfigKey(path: "plugins.thread", kind: .stringList(minCount: 0), defaultValue: .stringList([]),
                  help: "Plugins (by name) trusted to run as threads of the daemon whatever their manifest says."),
        ConfigKey(path: "plugins.process", kind: .stringList(minCount: 0), defaultValue: .stringList([]),
                  help: "Plugins (by name) run in worker processes whatever their manifest says."),
        ConfigKey(path: "plugins.worker_executable", kind: .string, defaultValue: .string(""),
                  help: "The plugboard-worker program; empty: the one next to the plugboard binary, else /usr/lib/plugboard/plugboard-worker."),
        ConfigKey(path: "plugins.worker_user", kind: .string, defaultValue: .string(""),
                  help: "The user worker processes run as when the daemon runs as root; empty: \"plugboard\" if it exists, else \"nobody\"."),
        ConfigKey(path: "plugins.init_deadline", kind: .duration(.milliseconds(10)...(.seconds(600))), defaultValue: .duration(.seconds(5)),
                  help: "Longest a plugin's load and init may take; a worker process past it is killed."),
        ConfigKey(path: "plugins.callback_deadline", kind: .duration(.milliseconds(10)...(.seconds(3600))), defaultValue: .duration(.seconds(10)),
                  help: "Callback deadline for process plugins whose manifest sets no deadline_ms; past it the worker is killed and restarted."),
        ConfigKey(path: "plugins.restart_backoff", kind: .duration(.milliseconds(1)...(.seconds(60))), defaultValue: .duration(.milliseconds(100)),
                  help: "Delay before restarting a crashed worker process; doubles with each crash in plugins.crash_interval, up to 5s."),
        ConfigKey(path: "plugins.crash_burst", kind: .integer(0...1000), defaultValue: .integer(5),
                  help: "More crashes than this within plugins.crash_interval quarantine the plugin (like systemd's StartLimitBurst)."),
        ConfigKey(path: "plugins.crash_interval", kind: .duration(.seconds(1)...(.seconds(86400))), defaultValue: .duration(.seconds(60)),
                  help: "The window plugins.crash_burst counts crashes in."),
        ConfigKey(path: "plugins.memory_limit", kind: .byteSize(0...(1 << 40)), defaultValue: .integer(0),
                  help: "Address-space limit of each worker process (RLIMIT_AS); 0: none."),
        ConfigKey(path: "plugins.cpu_limit", kind: .integer(0...1_000_000), defaultValue: .integer(0),
                  help: "CPU seconds each worker process may use (RLIMIT_CPU); 0: none."),
        ConfigKey(path: "plugins.output_queue_records", kind: .integer(16...1_000_000), defaultValue: .integer(4096),
                  help: "Most plugin output records (publish) waiting for the Redis publisher, over all plugins (and at most 8 MiB of payload). Past it publish returns PB_ERR_FULL, counted (plugboard_output_queue_full_total)."),
        ConfigKey(path: "plugins.max_record_bytes", kind: .byteSize(64...(64 << 10)), defaultValue: .integer(64 << 10),
                  help: "Largest record a plugin may publish (payload bytes); larger ones get PB_ERR_INVALID at the call. The Redis publisher carries exactly this much (docs/abi.md)."),
        ConfigKey(path: "plugins.log_rate", kind: .integer(0...1_000_000), defaultValue: .integer(100),
                  help: "Log messages per second each plugin may write (bursts of twice as many); the rest are dropped and counted in plugboard_plugin_log_dropped_total. 0: no limit."),
        ConfigKey(path: "plugins.open_files_limit", kind: .integer(0...1_048_576), defaultValue: .integer(0),
                  help: "Open files of each worker process (RLIMIT_NOFILE); 0: the daemon's."),
        ConfigKey(path: "plugins.recycle_after_events", kind: .integer(0...1_000_000_000_000), defaultValue: .integer(0),
                  help: "Replace a worker process by a fresh one after it delivered this many events (cursor and state handed over, nothing lost); 0: never."),
        ConfigKey(path: "plugins.recycle_after_seconds", kind: .integer(0...31_536_000), defaultValue: .integer(0),
                  help: "Replace a worker process by a fresh one after it ran this many seconds; 0: never."),
        ConfigKey(path: "plugins.recycle", kind: .stringList(minCount: 0), defaultValue: .stringList([]),
                  help: "The plugins plugins.recycle_after_* apply to; empty: every process plugin."),
        ConfigKey(path: "plugins.prewarm", kind: .bool, defaultValue: .bool(false),
                  help: "Keep a spare worker process initialised for each process plugin, so a crash restart adopts it instead of waiting for spawn, dlopen and init (one more process per plugin)."),
        ConfigKey(path: "plugins.fork_server", kind: .bool, defaultValue: .bool(true),
                  help: "Start worker processes as copies of one fork server (plugboard-worker --zygote) instead of executing plugboard-worker for each: a clone instead of exec, dynamic linking and the Swift runtime's start. false: posix_spawn each."),

        ConfigKey(path: "control.socket", kind: .string, defaultValue: .string("/run/plugboard/control.sock"),
                  help: "Unix socket of `plugboard ctl` (serve only); empty serves none. Left at its default, a socket that cannot be created is a warning; set explicitly, an error."),
        ConfigKey(path: "control.group", kind: .string, defaultValue: .string("plugboard"),
                  help: "Members of this group may use the control socket besides root and the daemon's user (checked with SO_PEERCRED); empty: nobody else."),

        ConfigKey(path: "state.dir", kind: .string, defaultValue: .string(""),
                  help: "Directory of the Redis publisher's window and spill files (redis-HOST.events, redis-HOST.plugins): what a killed daemon had not delivered is published by the next one. Empty: $STATE_DIRECTORY under systemd, else none (kept in memory)."),
        ConfigKey(path: "state.ring_dir", kind: .string, defaultValue: .string(""),
                  help: "Directory (a tmpfs such as /run/plugboard) of the event ring's file, so sequences continue and events the publisher had not read yet survive a daemon crash. Empty: $RUNTIME_DIRECTORY under systemd, else none (a sealed memfd)."),

        ConfigKey(path: "replay.pace", kind: .string, defaultValue: .string("recorded"),
                  help: "How a replay source is paced: \"recorded\" (each line's delay_ms), \"fast\" (no waits), or a speed-up such as \"10x\"."),

        ConfigKey(path: "shutdown.deadline", kind: .duration(.milliseconds(100)...(.seconds(300))), defaultValue: .duration(.seconds(5)),
                  help: "Hard limit for a graceful shutdown; past it the daemon exits 70 naming the stuck component."),
        ConfigKey(path: "shutdown.state_file", kind: .string, defaultValue: .string(""),
                  help: "File where each shutdown's duration is kept for the next run's plugboard_last_shutdown_* metrics; empty keeps none."),
    ]

    /// Environment variables with the prefix that are not keys but are still understood.
    public static let otherEnvironment: [String: String] = [
        "PLUGBOARD_CONFIG": "configuration file to read instead of the default search",
        "PLUGBOARD_LOG_FORMAT": "log format when --log-format is not given: auto, text, journal or json",
    ]

    static let byPath: [String: ConfigKey] = Dictionary(uniqueKeysWithValues: keys.map { ($0.path, $0) })
    static let sections: [String] = {
        var seen: [String] = []
        for k in keys { if let s = k.section, !seen.contains(s) { seen.append(s) } }
        return seen
    }()
}
