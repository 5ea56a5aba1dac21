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

/// Wiring of the Redis publisher into `plugboard run`: one more ring consumer, plus the output queue.
enum RedisWiring {
    /// Starts the publisher as a consumer of `runtime.ring` (call before the source starts, so it sees
    /// every event). Without `--redis`, says that events are not published and returns nil.
    /// - Throws: `CLI.Failure` for a configuration error (wrong password, database, key type).
    static func start(_ options: RedisRunOptions, runtime: Runtime, logger: Logger) throws -> RedisPublisher? {
        guard let text = options.redis else {
            logger.notice("Redis is not configured (--redis URL): events are not published")
            return nil
        }
        var config = RedisPublisher.Configuration(url: try RedisURL(parsing: text),
                                                  host: options.redisHost ?? StreamKeys.localHost)
        config.mode = RedisPublisher.Mode(rawValue: options.redisMode) ?? .stream
        config.maxLength = options.redisMaxlen == 0 ? nil : options.redisMaxlen
        let publisher = RedisPublisher(configuration: config, logger: logger)
        do {
            try publisher.start(events: runtime.ring.makeConsumer(name: "redis"), pluginOutput: runtime.outputQueue)
        } catch {
            throw CLI.Failure("cannot publish to Redis: \(error)")
        }
        return publisher
    }

    /// Delivers what the publisher still holds (up to `deadline`), stops it and logs its counters.
    static func stop(_ publisher: RedisPublisher?, deadline: Duration, logger: Logger) {
        guard let publisher else { return }
        let stats = publisher.stop(timeout: deadline)
        let level: Logger.Level = stats.pending > 0 || stats.dropped > 0 || stats.rejected > 0 ? .warning : .info
        logger.log(level: level, "redis publisher stopped: \(stats)", metadata: ["stream": "\(publisher.streamKey)"])
    }
}
