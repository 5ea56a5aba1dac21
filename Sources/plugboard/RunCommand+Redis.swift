import ArgumentParser
import Logging
import PlugboardCore
import PlugboardRedis

/// `plugboard run` options for publishing to Redis (docs/redis.md).
struct RedisRunOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Publish events to this Redis server: redis://[user:password@]host:port/db or unix:///path?db=N.",
                               valueName: "URL"))
    var redis: String?

    @Option(name: .customLong("redis-host"), help: ArgumentHelp("{HOST} in the Redis key names (default: this machine's host name).", valueName: "H"))
    var redisHost: String?

    @Option(name: .customLong("redis-mode"), help: "stream (XADD), publish (PUBLISH JSON) or both.")
    var redisMode: String = "stream"

    @Option(name: .customLong("redis-maxlen"), help: "Trim the stream to about this many entries (MAXLEN ~ N); 0 keeps everything.")
    var redisMaxlen: Int = 1_000_000

    func validate() throws {
        if let redis {
            do { _ = try RedisURL(parsing: redis) } catch { throw ValidationError("--redis: \(error)") }
        }
        if RedisPublisher.Mode(rawValue: redisMode) == nil {
            throw ValidationError("--redis-mode must be stream, publish or both (got '\(redisMode)')")
        }
        if redisMaxlen < 0 { throw ValidationError("--redis-maxlen must be 0 (no trimming) or more") }
    }
}

extension RedisRunOptions {
    /// The publisher configuration these options describe, or nil without `--redis`.
    func configuration() throws -> RedisPublisher.Configuration? {
        guard let text = redis else { return nil }
        var config = RedisPublisher.Configuration(url: try RedisURL(parsing: text), host: redisHost ?? StreamKeys.localHost)
        config.mode = RedisPublisher.Mode(rawValue: redisMode) ?? .stream
        config.maxLength = redisMaxlen == 0 ? nil : redisMaxlen
        return config
    }
}
