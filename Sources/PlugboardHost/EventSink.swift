import Logging
import PlugboardCore
import PlugboardRedis

/// A ring consumer of the host's that is not a plugin: the Redis publisher, `monitor`'s printer.
///
/// The host registers a sink's consumer before the source starts, so a sink sees every event,
/// and stops sinks in the shutdown's last step ("flush outputs"), after the plugins drained and
/// shut down (their last `publish` calls included).
public protocol EventSink: AnyObject, Sendable {
    /// For logs and for naming a sink that is still busy at the shutdown deadline.
    var name: String { get }
    /// Starts reading `events` on a thread of the sink's own. `pluginOutput` holds what plugins
    /// publish through the host API.
    /// - Throws: when the sink cannot start at all (e.g. a Redis configuration error).
    func start(events: RingConsumer, pluginOutput: OutputQueue) throws
    /// Delivers what the sink still holds until `deadline`, then stops it.
    /// - Returns: what is still busy at the deadline (e.g. `redis (still in a Redis call; ...)`), nil
    ///   when the sink stopped; what it could not deliver is the command's to report.
    func stop(until deadline: ContinuousClock.Instant) -> String?
}

/// The Redis publisher as a sink (docs/redis.md).
public final class RedisSink: EventSink {
    public let publisher: RedisPublisher
    let logger: Logger

    public init(configuration: RedisPublisher.Configuration, logger: Logger) {
        publisher = RedisPublisher(configuration: configuration, logger: logger)
        self.logger = logger
    }

    public var name: String { "redis" }

    public func start(events: RingConsumer, pluginOutput: OutputQueue) throws {
        do {
            try publisher.start(events: events, pluginOutput: pluginOutput)
        } catch {
            throw HostStartError("cannot publish to Redis: \(error)")
        }
    }

    public func stop(until deadline: ContinuousClock.Instant) -> String? {
        let stats = publisher.stop(timeout: max(.milliseconds(10), deadline - .now))
        let level: Logger.Level = stats.pending > 0 || stats.dropped > 0 || stats.rejected > 0 ? .warning : .info
        logger.log(level: level, "redis publisher stopped: \(stats)", metadata: ["stream": "\(publisher.streamKey)"])
        // Events Redis did not take by the deadline are not a stuck component: the publisher gave
        // up on them and stopped; the commands report them (`HostAssembly.undelivered`, exit 3).
        // Busy is a publisher thread still inside a Redis call.
        return publisher.hasStopped ? nil : "redis (still in a Redis call; \(stats.pending) unacknowledged)"
    }
}
