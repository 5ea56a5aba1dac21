import PlugboardSystem

/// A new build's manifest settings, for a production reload (`plugboard ctl reload`), which
/// reads the new manifest: its match rules, batch, deadline and configuration replace the
/// running build's.
public struct ReloadSettings: Sendable {
    public var version: String
    public var configuration: PluginConfiguration
    public var batchSize: Int
    public var deadline: Duration?
    /// Thread mode: the match filter; nil for every event.
    public var filter: EventFilter?
    /// Process mode: the `.pbm` bytes the worker builds its filter from.
    public var manifest: [UInt8]

    public init(version: String, configuration: PluginConfiguration, batchSize: Int, deadline: Duration?,
                filter: EventFilter?, manifest: [UInt8]) {
        self.version = version
        self.configuration = configuration
        self.batchSize = batchSize
        self.deadline = deadline
        self.filter = filter
        self.manifest = manifest
    }

    func apply(to spec: inout ProcessPluginSpec) {
        spec.version = version
        spec.configuration = configuration
        spec.batchSize = batchSize
        spec.deadline = deadline
        spec.manifest = manifest
    }
}

extension Runtime {
    /// Ends a plugin's quarantine (`plugboard ctl quarantine release`): a new worker process
    /// starts for it, initialises, and reads from the newest event; what was published while it
    /// was quarantined is not delivered to it (counted in `missed`). Its crash history starts
    /// again, so it gets the whole `crash_burst` before it can be quarantined anew.
    /// - Throws: `PluginLoadError` when no plugin of that name is quarantined, or when the new
    ///   worker cannot initialise (the plugin then stays quarantined).
    @discardableResult
    public func releaseQuarantine(pluginNamed name: String) throws(PluginLoadError) -> any PluginWorker {
        guard let found = workers.first(where: { $0.name == name }) else {
            throw PluginLoadError(file: name, kind: .skipped(reason: "no plugin named '\(name)' (fix: `plugboard ctl plugins` lists them)"))
        }
        guard found.state == .quarantined, let old = found as? ProcessWorker else {
            throw PluginLoadError(file: found.path, kind: .skipped(
                reason: "plugin '\(name)' is not quarantined (it is \(found.state.rawValue)); nothing to release"))
        }
        let next: ProcessWorker
        do {
            next = try ProcessWorker(spec: old.spec, policy: old.policy, ring: ring, deviceTable: deviceTable,
                                     outputQueue: outputQueue, sourcePath: old.sourcePath, logger: logger,
                                     logLimits: options.logLimits)
        } catch {
            throw PluginLoadError(file: old.path, kind: .isolated(code: "worker", message: "\(old.path): cannot set up the worker process: \(error)"))
        }
        let passed = ring.published &- old.remote.cursor(head: ring.published)
        next.start()
        if let error = next.waitForInit() {
            _ = next.join(until: ContinuousClock.now + .seconds(5))
            throw error
        }
        next.inheritCounters(from: old)
        next.control[.missed] = next.control[.missed] &+ passed
        replaceWorker(old, with: next)
        logger.notice("plugin released from quarantine: it reads from the newest event", metadata: [
            "plugin": "\(name)", "pid": "\(next.pid)", "not_delivered": "\(passed)"])
        return next
    }
}

/// What `Runtime.canary` found.
public struct CanaryReport: Sendable {
    public enum Verdict: String, Sendable { case promoted, rolledBack = "rolled_back" }
    public var verdict: Verdict
    /// Why it was rolled back (nil when promoted).
    public var reason: String?
    /// The events both builds handled and were compared on (cursor range `from` < seq ≤ `to`).
    public var from: UInt64 = 0
    public var to: UInt64 = 0
    public var events: UInt64 { to &- from }
    /// Records each build published over those events (topics allowed to differ included).
    public var runningRecords = 0
    public var candidateRecords = 0
    /// Callback errors over those events.
    public var runningErrors: UInt64 = 0
    public var candidateErrors: UInt64 = 0
    /// The first records that differ, as (index, running build's, candidate's); nil for a
    /// record one build did not publish.
    public var firstDifferences: [(index: Int, running: OutputRecord?, candidate: OutputRecord?)] = []
    /// Records on the topics `--allow-diff` names, left out of the comparison (both builds').
    public var uncompared = 0
    /// The running and the candidate build's versions.
    public var runningVersion = ""
    public var candidateVersion = ""
}

/// How a canary runs (`plugboard ctl reload NAME --canary DURATION`).
public struct CanaryOptions: Sendable {
    /// How long the candidate runs beside the running build.
    public var duration: Duration
    /// Topics whose records may differ ("*": any record; crashes and errors still count).
    public var allowDiff: Set<String> = []
    /// Records kept per build for the comparison; more makes the canary inconclusive.
    public var recordLimit = 100_000
    /// How many differing records the report shows.
    public var differencesShown = 3
    /// Longest wait for a build to answer (the snapshot, reaching the fence).
    public var answerTimeout: Duration = .seconds(30)

    public init(duration: Duration, allowDiff: Set<String> = []) {
        self.duration = duration
        self.allowDiff = allowDiff
    }
}

extension Runtime {
    /// A canary: the candidate build runs beside the running one on the same ring, as a shadow
    /// consumer whose output is captured, never sent (docs/operations.md, "Production reload").
    ///
    /// 1. The candidate's worker process starts and initialises (held before reading).
    /// 2. The running worker is asked, between two batches, for its state and cursor C (it
    ///    keeps running); from then on it marks each batch's end in its host-call queue, so its
    ///    publishes are known to belong to the events between two cursors.
    /// 3. The candidate restores that state and reads from C, marking the same way, for
    ///    `duration`; a crash, an init failure or a hang of the candidate ends the canary.
    /// 4. Both are fenced at the same cursor E (the first batch end of the running build at or
    ///    past the head when the time is up; the candidate may read no further), and their
    ///    records for the events C < seq ≤ E are compared in order, with their callback errors.
    /// 5. If they agree (or differ only on allowed topics) the candidate's build is promoted by
    ///    the ordinary reload (cursor and state handed over, nothing lost or repeated);
    ///    otherwise the candidate is stopped and the running build goes on untouched.
    ///
    /// Only process plugins: a thread plugin's canary would run untested code inside the daemon.
    /// - Parameter promote: called to promote (the caller checks the file is still the one tried).
    public func canary(pluginNamed name: String, from path: String, settings: ReloadSettings?, options: CanaryOptions,
                       promote: () throws(PluginLoadError) -> Void) throws(PluginLoadError) -> CanaryReport {
        guard let running = workers.first(where: { $0.name == name && $0.state == .running }) else {
            throw PluginLoadError(file: path, kind: .skipped(reason: "no running plugin named '\(name)' (fix: `plugboard ctl plugins` lists them)"))
        }
        guard let old = running as? ProcessWorker else {
            throw PluginLoadError(file: path, kind: .skipped(reason:
                "plugin '\(name)' runs in a thread: a canary runs a build nobody has tried yet, so only a plugin with isolation = \"process\" can have one (fix: reload without --canary, or set isolation = \"process\" for it)"))
        }
        var spec = old.spec
        spec.path = path
        if let settings { settings.apply(to: &spec) }
        _ = try ELFImage.inspect(path: path)
        var report = CanaryReport(verdict: .rolledBack, runningVersion: old.version, candidateVersion: spec.version)
        var canaryLogger = logger
        canaryLogger[metadataKey: "canary"] = "\(name)"
        let candidate: ProcessWorker
        do {
            candidate = try ProcessWorker(spec: spec, policy: old.policy, ring: ring, deviceTable: deviceTable,
                                          outputQueue: outputQueue, sourcePath: old.sourcePath, logger: canaryLogger,
                                          logLimits: self.options.logLimits, shadow: true)
        } catch {
            throw PluginLoadError(file: path, kind: .isolated(code: "worker", message: "\(path): cannot set up the canary's worker process: \(error)"))
        }
        // Flow control holds the producer to the candidate as it does to the running build: its
        // cursor starts at the running build's, at or behind where the snapshot will find it, so
        // the events from there on stay in the ring until the candidate has read them.
        candidate.remote.reset(to: old.remote.cursor(head: ring.published))
        candidate.start(holdGo: true)
        if let error = candidate.waitForInit() {
            report.reason = "the candidate did not initialise: \(error.description)"
            candidate.stopTap()
            return report
        }
        report.candidateVersion = candidate.version
        defer {
            old.stopTap()
            candidate.stopTap()
            candidate.requestStop()
            _ = candidate.join(until: ContinuousClock.now + .seconds(5))
        }
        old.startTap(limit: options.recordLimit)
        let oldRestarts = old.stats.restarts
        guard let snap = old.snapshot(timeout: options.answerTimeout) else {
            report.reason = "the running build did not answer the snapshot request within \(options.answerTimeout.shortText) (nothing changed)"
            return report
        }
        let errorsBefore = old.counter(.errors)
        // Publishes the running build's worker could not queue from here on (see below).
        let refusedBefore = old.counter(.queueFull)
        candidate.startTap(limit: options.recordLimit)
        candidate.requestMarks()
        candidate.go(cursor: snap.cursor, state: snap.state)
        report.from = snap.cursor
        logger.notice("canary started", metadata: ["plugin": "\(name)", "running": "\(old.version)",
                                                   "candidate": "\(candidate.version)", "cursor": "\(snap.cursor)",
                                                   "duration": "\(options.duration.shortText)"])
        // The candidate runs; a crash (or a kill for a deadline, a stall...) ends it at once.
        let clock = ContinuousClock()
        let end = clock.now + options.duration
        func candidateFailure() -> String? {
            let s = candidate.stats
            if let crash = s.lastCrash { return "the candidate crashed: \(crash)" }
            if s.state != .running { return "the candidate stopped (\(s.state.rawValue))" }
            return nil
        }
        while clock.now < end {
            if let failure = candidateFailure() {
                report.reason = failure
                return report
            }
            sleepThread(for: .milliseconds(20))
        }
        // The fence: a batch end of the running build at or past the head now, and not behind
        // the candidate (a batch the candidate began before it saw the fence may end past it).
        var target = ring.published
        candidate.fence(at: target)
        func waitFor(_ what: () -> Bool) -> Bool {
            let limit = clock.now + options.answerTimeout
            while clock.now < limit {
                if what() { return true }
                if candidateFailure() != nil { return false }
                sleepThread(for: .milliseconds(5))
            }
            return what()
        }
        var fence = snap.cursor
        var met = false
        for _ in 0..<4 {
            guard waitFor({ target == snap.cursor || (old.tapped?.reached ?? 0) >= target }) else {
                report.reason = candidateFailure() ?? "the running build did not reach sequence \(target) within \(options.answerTimeout.shortText)"
                return report
            }
            fence = target == snap.cursor ? snap.cursor : (old.tapped?.segments.first { $0.upTo >= target }?.upTo ?? target)
            candidate.fence(at: fence)
            // It stops exactly there, unless a batch begun before the fence took it further.
            guard waitFor({ (candidate.tapped?.marked(fence) ?? false) || (candidate.tapped?.reached ?? 0) > fence }) else {
                report.reason = candidateFailure() ?? "the candidate did not reach sequence \(fence) within \(options.answerTimeout.shortText)"
                return report
            }
            if candidate.tapped?.marked(fence) == true {
                met = true
                break
            }
            target = candidate.tapped?.reached ?? fence
        }
        guard met else {
            report.reason = "the two builds' batch ends did not meet at a common sequence (nothing changed; run the canary again)"
            return report
        }
        report.to = fence
        if let failure = candidateFailure() {
            report.reason = failure
            return report
        }
        // Everything the workers queued up to the fence is in the taps once their monitors
        // drained the queues; both marks are there, so every record before them is too.
        let oldTap = old.stopTap(), newTap = candidate.stopTap()
        if old.stats.restarts != oldRestarts {
            report.reason = "the running build crashed during the canary, so the comparison is void (nothing changed)"
            return report
        }
        // A record a build could not queue explains a gap in its output, not a change in its code:
        // with one, a comparison that could not be made or that found a difference is void.
        let refused = (running: old.counter(.queueFull) &- refusedBefore, candidate: candidate.counter(.queueFull))
        let refusedReason = refused.running > 0 || refused.candidate > 0
            ? "the comparison is void: the host fell behind and refused \(refused.running) of the running build's and \(refused.candidate) of the candidate's records while their queues were full (nothing changed; run the canary again at a quieter time)"
            : nil
        if old.markLost || candidate.markLost || oldTap?.overflowed != false || newTap?.overflowed != false {
            report.reason = refusedReason ?? "the comparison is void: more than \(options.recordLimit) records, or a build's queue stayed full (nothing changed)"
            return report
        }
        if candidate.counter(.laps) > 0 {
            report.reason = "the candidate fell a whole ring behind during the canary, so it missed events (nothing changed)"
            return report
        }
        guard let mine = oldTap?.records(after: snap.cursor, through: fence),
              let theirs = newTap?.records(after: snap.cursor, through: fence) else {
            report.reason = "the builds' marks did not meet at sequences \(snap.cursor) and \(fence) (nothing changed)"
            return report
        }
        report.runningRecords = mine.count
        report.candidateRecords = theirs.count
        report.runningErrors = old.counter(.errors) &- errorsBefore
        report.candidateErrors = candidate.counter(.errors)
        let anyTopic = options.allowDiff.contains("*")
        let compared = { (r: [OutputRecord]) in anyTopic ? [] : r.filter { !options.allowDiff.contains($0.topic) } }
        let a = compared(mine), b = compared(theirs)
        report.uncompared = (mine.count - a.count) + (theirs.count - b.count)
        var i = 0
        while i < max(a.count, b.count) && report.firstDifferences.count < options.differencesShown {
            let x = i < a.count ? a[i] : nil, y = i < b.count ? b[i] : nil
            if x?.topic != y?.topic || x?.payload != y?.payload { report.firstDifferences.append((i, x, y)) }
            i += 1
        }
        if !report.firstDifferences.isEmpty {
            report.reason = refusedReason ?? "the builds' output differs (first at record \(report.firstDifferences[0].index) of \(max(a.count, b.count)))"
            return report
        }
        if report.candidateErrors > report.runningErrors {
            report.reason = "the candidate's events callback returned errors \(report.candidateErrors) times, the running build's \(report.runningErrors)"
            return report
        }
        // Agreed: promote through the ordinary reload (handover of cursor and state).
        candidate.requestStop()
        _ = candidate.join(until: ContinuousClock.now + .seconds(5))
        try promote()
        report.verdict = .promoted
        return report
    }
}
