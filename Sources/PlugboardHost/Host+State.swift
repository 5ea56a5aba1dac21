import Logging
import PlugboardCore
import PlugboardRedis

/// Crash safety (docs/redis.md, "Crash safety"): before the ring exists, read what the previous
/// daemon left in `state.dir` and `state.ring_dir`, so that this one publishes it first and
/// continues its sequences.
extension HostAssembly {
    /// Opens the publisher's state files (into `redis.state`), takes from the previous ring the
    /// events the previous publisher had not read yet, and sets the ring's file and first sequence.
    /// A file that cannot be trusted is set aside with a warning; only a directory that cannot be
    /// used, or another daemon holding the files, is an error.
    static func recoverState(settings: HostSettings, options: inout RuntimeOptions,
                             redis: inout RedisPublisher.Configuration?, logger: Logger) throws {
        let ringFile = settings.ringDirectory.map { ($0.hasSuffix("/") ? $0 : $0 + "/") + "ring" }
        var previous: PreviousRing?
        if let ringFile {
            switch try PreviousRing.open(ringFile) {
            case .none: break
            case .found(let ring): previous = ring
            case .setAside(let warning): logger.warning("\(warning)")
            }
        }
        var next: UInt64 = 1
        if var r = redis, let dir = settings.stateDirectory {
            let state = try PublisherState(directory: dir, host: r.host, eventBytes: r.spillBytes,
                                           pluginBytes: max(r.pluginBytes, 2 * (r.pluginMaxRecord + 64)))
            for warning in state.warnings { logger.warning("\(warning)") }
            if let previous {
                if state.continuesPreviousRun {
                    let (taken, lost) = state.absorb(previous)
                    if taken > 0 || lost > 0 {
                        logger.log(level: lost > 0 ? .error : .notice,
                                   "took the events the previous run published but had not handed to Redis from its ring",
                                   metadata: ["ring": "\(previous.path)", "taken": "\(taken)", "lost": "\(lost)"])
                    }
                } else if previous.published > 0 {
                    logger.warning("the previous run's ring holds events, but there is no publisher state to say which of them reached Redis: they are not published again (fix: nothing; keep state.dir and state.ring_dir set together)",
                                   metadata: ["ring": "\(previous.path)", "newest_sequence": "\(previous.published)"])
                }
            }
            if state.pendingEvents > 0 || state.pendingPluginRecords > 0 {
                logger.notice("publishing first what the previous run had not delivered to Redis (same IDs: Redis drops what it already has)",
                              metadata: ["state_dir": "\(dir)", "events": "\(state.pendingEvents)",
                                         "plugin_records": "\(state.pendingPluginRecords)"])
            }
            next = max(next, state.lastEventSequence + 1)
            r.state = state
            redis = r
        }
        if let previous { next = max(next, previous.published + 1) }
        if next > 1 {
            logger.notice("sequences continue from the previous run", metadata: ["first_sequence": "\(next)"])
        }
        options.ringFile = ringFile
        options.firstSequence = next
    }
}
