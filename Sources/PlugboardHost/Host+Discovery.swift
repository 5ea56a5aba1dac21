import Foundation
import Logging
import PlugboardCore
import PlugboardManifest
import PlugboardSigning
import PlugboardSystem

/// What a manifest-driven start did, for logs, `/plugins` and metrics.
public struct ManifestStartReport: Sendable {
    /// Plugins whose worker is running.
    public var running: Int
    /// Everything found, loadable or skipped (with the reason), the plan and the match index.
    public var catalog: PluginCatalog
    /// Manifest reads, library hashes, cache decodes... of this start.
    public var registryStats: ManifestRegistry.Stats
    /// Time to discover and validate every manifest (no dlopen).
    public var discovery: Duration
    /// Per plugin name: `PluginLoader.open` (dlopen + negotiation) time.
    public var loadTimes: [String: Duration]
    /// Manifests the registry's LRU held at the end, and its capacity (`plugins.cache_size`).
    public var cacheEntries = 0
    public var cacheCapacity = 0
}

extension HostAssembly {
    /// The file trust check of `path` under `plugins.trust`: nil when it may be used. Under "warn"
    /// a problem is logged and nil returned; under "strict" the problem is returned.
    func untrusted(_ path: String) -> FileTrust.Problem? {
        guard settings.trust != "off", let problem = FileTrust.check(path) else { return nil }
        if settings.trust == "warn" {
            logger.warning("plugins.trust = warn: loading anyway: \(problem)")
            return nil
        }
        return problem
    }

    /// Under `plugins.require_signature`, the check the catalog makes of each resolved manifest
    /// before anything is opened: its `.pbm.sig` must verify, over the very bytes the manifest was
    /// decoded from, against a key in `plugins.trusted_keys_dir`. The directory, its key files and
    /// each signature file go through the file trust check (`plugins.trust`) like plugin files.
    /// A check that succeeded is remembered in the registry cache, keyed like the hash (see
    /// `TrustedKeys.verify(_:registry:untrusted:)`), so a warm start verifies nothing again.
    func signatureCheck(registry: ManifestRegistry) -> ((ResolvedManifest) -> ManifestError?)? {
        guard settings.requireSignature else { return nil }
        let keys = TrustedKeys.load(directory: settings.trustedKeysDir, untrusted: { self.untrusted($0) })
        for problem in keys.problems { logger.error("\(problem)") }
        logger.info("plugin signatures required", metadata: [
            "trusted_keys_dir": "\(keys.directory)", "keys": "\(keys.keys.keys.sorted().joined(separator: ","))"])
        return { r in
            keys.refusal(keys.verify(r, registry: registry, untrusted: { self.untrusted($0) }), manifestAt: r.manifestPath)
        }
    }

    /// Finds, opens and initialises the plugins (in dependency order with manifests). Rejected
    /// plugins are recorded in `runtime.failures` with the reason; they never stop the others.
    /// - Throws: when a plugin directory cannot be read, or the manifests' dependencies form a cycle.
    @discardableResult
    public func startPlugins() throws -> PluginReport {
        var report = PluginReport()
        var directories = settings.pluginDirectories
        if settings.pluginDirectoriesOptional {
            directories = directories.filter { dir in
                if (try? FileStatus.of(path: dir)) != nil { return true }
                logger.notice("plugin directory \(dir) does not exist: no plugins from it (set plugins.dirs or --plugins)")
                return false
            }
        }
        switch settings.discovery {
        case .allLibraries where settings.isolation.mode == "process":
            // No manifests, but every plugin in a worker process (plugins.isolation = "process").
            let t0 = clock.now
            for path in try PluginLoader.discover(in: directories) {
                if let problem = untrusted(path) {
                    runtime.recordFailure(path: path, PluginLoadError(file: path, kind: .skipped(reason: "untrusted: \(problem)")))
                    continue
                }
                var name = (path as NSString).lastPathComponent
                if name.hasPrefix("lib") { name.removeFirst(3) }
                if name.hasSuffix(".so") { name.removeLast(3) }
                var spec = ProcessPluginSpec(path: path, name: name, version: "", configuration: settings.pluginConfiguration[name] ?? [:],
                                             batchSize: settings.batchSize, deadline: nil, manifest: [])
                spec.checkName = false
                spec.configurationByName = settings.pluginConfiguration
                runtime.addProcessPlugin(spec)
            }
            report.discovery = clock.now - t0
            report.running = runtime.startWorkers()
        case .allLibraries:
            let t0 = clock.now
            report.loadTimes = try runtime.addLibraries(in: directories) { path in
                guard let problem = self.untrusted(path) else { return nil }
                return "untrusted: \(problem)"
            }
            report.discovery = clock.now - t0
            report.running = runtime.startWorkers()
        case .manifests(let cache, let lru):
            let r = try startFromManifests(directories: directories, registryCache: cache, lruCapacity: lru,
                                           overrides: settings.pluginConfiguration)
            report.running = r.running
            report.loadTimes = r.loadTimes
            report.discovery = r.discovery
            report.cacheHits = r.registryStats.cacheDecodes + r.registryStats.lruHits
            report.cacheMisses = r.registryStats.manifestReads
            report.cacheEntries = r.cacheEntries
            report.cacheCapacity = r.cacheCapacity
            report.cacheEvictions = r.registryStats.lruEvictions
        }
        if report.running == 0 { logger.warning("no plugin is running; events will be read and dropped") }
        let names = runtime.workers.map(\.name)
        logger.notice("plugins running: \(names.isEmpty ? "none" : names.joined(separator: ","))")
        state.withLock { $0.report = report }
        return report
    }

    /// Loads, configures and starts the plugins in `directories` from their manifests
    /// (docs/manifest.md, "How the host uses it").
    ///
    /// 1. `PluginCatalog.discover` reads every `.pbm` (through the registry cache) without `dlopen`;
    ///    a `.so` without a valid manifest, with a changed hash, a duplicate name, a missing or cyclic
    ///    dependency is recorded with `recordFailure` as skipped, with the reason, and never opened.
    /// 2. Level by level of the dependency plan, each plugin is opened, its self-reported name checked
    ///    against the manifest, and it is added with its match-index filter and its `[config]`
    ///    (overridden by `overrides`); the level's workers start together (their `init`s run in
    ///    parallel on the worker threads) and the next level starts once they all returned.
    /// 3. A plugin whose dependency failed to open or initialise is skipped, naming the dependency.
    ///
    /// - Parameters:
    ///   - registryCache: the registry cache file, or nil for none.
    ///   - lruCapacity: decoded manifests kept in memory (the daemon's `plugins.cache_size`).
    ///   - overrides: per plugin name, configuration that wins over the manifest's `[config]`.
    /// - Throws: `ManifestError` when a plugin directory cannot be read.
    func startFromManifests(directories: [String], registryCache: String?, lruCapacity: Int,
                            overrides: [String: PluginConfiguration]) throws -> ManifestStartReport {
        let runtime = self.runtime
        let clock = ContinuousClock()
        let t0 = clock.now
        var registryCache = registryCache
        if let cache = registryCache, settings.trust != "off" {
            // The cache file if it exists, else the directory it would be written in.
            let existing = FileManager.default.fileExists(atPath: cache) ? cache : (cache as NSString).deletingLastPathComponent
            if FileManager.default.fileExists(atPath: existing), let problem = FileTrust.check(existing) {
                if settings.trust == "strict" {
                    logger.error("the registry cache is not trusted, so it is not used (every manifest is read): \(problem)")
                    registryCache = nil
                } else {
                    logger.warning("plugins.trust = warn: using the registry cache anyway: \(problem)")
                }
            }
        }
        let registry = ManifestRegistry(cachePath: registryCache, lruCapacity: lruCapacity,
                                        warning: { [logger] in logger.warning("\($0)") })
        let catalog = PluginCatalog.discover(dirs: directories, registry: registry, verify: signatureCheck(registry: registry))
        let discovery = clock.now - t0
        let st = registry.stats
        logger.info("manifests", metadata: ["plugins": "\(catalog.candidates.count)", "loadable": "\(catalog.loadable.count)",
                                            "read": "\(st.manifestReads)", "hashed": "\(st.libraryHashes)",
                                            "from-cache": "\(st.cacheDecodes)"])
        if let p = catalog.problems.first { throw p }
        for c in catalog.candidates {
            guard let e = c.skip else { continue }
            runtime.recordFailure(path: e.file, PluginLoadError(file: e.file, kind: .skipped(reason: e.detail)))
        }
        var failed: [String: String] = [:]  // name -> what happened, for its dependents' reason
        var running: Set<String> = []
        var loadTimes: [String: Duration] = [:]
        for level in catalog.plan.levels {
            var opened: [String] = []
            for name in level {
                guard let c = catalog.candidate(named: name), let manifest = c.manifest else { continue }
                if let problem = [c.libraryPath, c.manifestPath].compactMap({ $0 }).lazy.compactMap({ self.untrusted($0) }).first {
                    failed[name] = "was skipped"
                    runtime.recordFailure(path: c.libraryPath, PluginLoadError(file: c.libraryPath, kind: .skipped(reason: "untrusted: \(problem)")))
                    continue
                }
                if let dep = manifest.after.first(where: { failed[$0] != nil || !running.contains($0) }) {
                    let why = "dependency \"\(dep)\" \(failed[dep] ?? "is not running") (fix \"\(dep)\" first; this plugin starts once it does)"
                    failed[name] = "was skipped"
                    runtime.recordFailure(path: c.libraryPath, PluginLoadError(file: c.libraryPath, kind: .skipped(reason: why)))
                    continue
                }
                // [config] in file order; an override replaces its key in place, a new key follows.
                let config = PluginConfiguration(manifest.config.map { (key: $0.key, value: $0.value) })
                    .overridden(by: overrides[name] ?? [:])
                let deadline: Duration? = manifest.worker.deadlineMs == 0 ? nil : .milliseconds(Int(manifest.worker.deadlineMs))
                let settle = settings.settle(for: manifest.worker)
                let priority = settings.priority(for: manifest.worker, plugin: name, manifestPath: c.manifestPath, logger: logger)
                if settings.isolation.isolation(for: name, manifest: manifest.worker.isolation) == .process {
                    // Nothing of the plugin is loaded here: its worker process opens it.
                    var spec = ProcessPluginSpec(path: c.libraryPath, name: name, version: manifest.version, configuration: config,
                                                 batchSize: settings.batchCeiling(for: manifest.worker), deadline: deadline,
                                                 manifest: PBMWriter.encode(manifest))
                    spec.settle = settle
                    spec.priority = priority
                    if runtime.addProcessPlugin(spec) { opened.append(name) } else { failed[name] = "was skipped" }
                    continue
                }
                let t = clock.now
                let plugin: LoadedPlugin
                do { plugin = try PluginLoader.open(c.libraryPath) } catch {
                    failed[name] = "failed to load"
                    runtime.recordFailure(path: c.libraryPath, error)
                    continue
                }
                loadTimes[name] = clock.now - t
                guard plugin.name == manifest.name else {
                    _ = plugin.unload()
                    failed[name] = "was skipped"
                    runtime.recordFailure(path: c.libraryPath, PluginLoadError(file: c.libraryPath, kind: .skipped(reason:
                        "the plugin calls itself \"\(plugin.name)\" but its manifest \(c.manifestPath ?? "") says \"\(manifest.name)\" (fix: make plugin.name in plugin.toml match pb_plugin_api.name and pack again)")))
                    continue
                }
                if runtime.addPlugin(plugin, filter: catalog.filter(for: name), configuration: config,
                                     batchSize: settings.batchCeiling(for: manifest.worker), deadline: deadline, settle: settle,
                                     priority: priority) { opened.append(name) }
                else { failed[name] = "was skipped" }
            }
            if opened.isEmpty { continue }
            let t = clock.now
            runtime.startWorkers()
            let levelTime = clock.now - t
            for w in runtime.workers where w.isolation == .process && opened.contains(w.name) {
                loadTimes[w.name] = w.startDuration ?? levelTime
            }
            let names = Set(runtime.workers.map(\.name))
            for name in opened {
                if names.contains(name) { running.insert(name) } else { failed[name] = "failed to initialise" }
            }
        }
        var report = ManifestStartReport(running: running.count, catalog: catalog, registryStats: registry.stats,
                                         discovery: discovery, loadTimes: loadTimes)
        report.cacheEntries = registry.lruCount
        report.cacheCapacity = registry.lruCapacity
        return report
    }
}
