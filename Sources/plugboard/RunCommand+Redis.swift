import ArgumentParser
import PlugboardHost

/// `plugboard run` options for publishing to Redis (docs/redis.md); each sets a `redis.*` key.
struct RedisRunOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Publish events to this Redis server (key redis.url): redis://[user:password@]host:port/db, rediss://... (TLS: --set redis.tls_ca_file=FILE) or unix:///path?db=N.",
                               valueName: "URL"))
    var redis: String?

    @Option(name: .customLong("redis-host"), help: ArgumentHelp("{HOST} in the Redis key names (key redis.host; default: this machine's host name).", valueName: "H"))
    var redisHost: String?

    @Option(name: .customLong("redis-mode"), help: ArgumentHelp("stream (XADD), publish (PUBLISH JSON) or both (key redis.mode).", valueName: "MODE"))
    var redisMode: String?

    @Option(name: .customLong("redis-maxlen"), help: ArgumentHelp("Trim the stream to about this many entries (key redis.maxlen: MAXLEN ~ N); 0 keeps everything.", valueName: "N"))
    var redisMaxlen: Int?

    @Option(name: .customLong("redis-retention"), help: ArgumentHelp("What the streams keep (key redis.retention): a time such as 7d, 12h, 30m (XADD MINID ~) or an entry count (MAXLEN ~); not with --redis-maxlen.", valueName: "T|N"))
    var redisRetention: String?

    var overrides: [ConfigOverride] {
        var o: [ConfigOverride] = []
        if let redis { o.append(.init(key: "redis.url", value: redis, flag: "--redis \(redis)")) }
        if let redisHost { o.append(.init(key: "redis.host", value: redisHost, flag: "--redis-host \(redisHost)")) }
        if let redisMode { o.append(.init(key: "redis.mode", value: redisMode, flag: "--redis-mode \(redisMode)")) }
        if let redisMaxlen { o.append(.init(key: "redis.maxlen", value: "\(redisMaxlen)", flag: "--redis-maxlen \(redisMaxlen)")) }
        if let redisRetention { o.append(.init(key: "redis.retention", value: redisRetention, flag: "--redis-retention \(redisRetention)")) }
        return o
    }
}
