import Logging
import PlugboardCore
import PlugboardManifest

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
}

extension Runtime {
    /// Loads, configures and starts the plugins in `directories` from their manifests
    /// (docs/manifest.md, "How the host uses it"). Use instead of `loadPlugins()` + `startWorkers()`.
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
    /// - Throws: `ManifestError` when a plugin directory cannot be read (as `loadPlugins` does).
    public func loadAndStartFromManifests(directories: [String], registryCache: String?, lruCapacity: Int = 200,
                                          overrides: [String: [String: String]]) throws -> ManifestStartReport {
        let clock = ContinuousClock()
        let t0 = clock.now
        let registry = ManifestRegistry(cachePath: registryCache, lruCapacity: lruCapacity,
                                        warning: { [logger] in logger.warning("\($0)") })
        let catalog = PluginCatalog.discover(dirs: directories, registry: registry)
        let discovery = clock.now - t0
        let st = registry.stats
        logger.info("manifests", metadata: ["plugins": "\(catalog.candidates.count)", "loadable": "\(catalog.loadable.count)",
                                            "read": "\(st.manifestReads)", "hashed": "\(st.libraryHashes)",
                                            "from-cache": "\(st.cacheDecodes)"])
        if let p = catalog.problems.first { throw p }
        for c in catalog.candidates {
            guard let e = c.skip else { continue }
            recordFailure(path: e.file, PluginLoadError(file: e.file, kind: .skipped(reason: e.detail)))
        }
        var failed: [String: String] = [:]  // name -> what happened, for its dependents' reason
        var running: Set<String> = []
        var loadTimes: [String: Duration] = [:]
        for level in catalog.plan.levels {
            var opened: [String] = []
            for name in level {
                guard let c = catalog.candidate(named: name), let manifest = c.manifest else { continue }
                if let dep = manifest.after.first(where: { failed[$0] != nil || !running.contains($0) }) {
                    let why = "dependency \"\(dep)\" \(failed[dep] ?? "is not running") (fix \"\(dep)\" first; this plugin starts once it does)"
                    failed[name] = "was skipped"
                    recordFailure(path: c.libraryPath, PluginLoadError(file: c.libraryPath, kind: .skipped(reason: why)))
                    continue
                }
                let t = clock.now
                let plugin: LoadedPlugin
                do { plugin = try PluginLoader.open(c.libraryPath) } catch {
                    failed[name] = "failed to load"
                    recordFailure(path: c.libraryPath, error)
                    continue
                }
                loadTimes[name] = clock.now - t
                guard plugin.name == manifest.name else {
                    _ = plugin.unload()
                    failed[name] = "was skipped"
                    recordFailure(path: c.libraryPath, PluginLoadError(file: c.libraryPath, kind: .skipped(reason:
                        "the plugin calls itself \"\(plugin.name)\" but its manifest \(c.manifestPath ?? "") says \"\(manifest.name)\" (fix: make plugin.name in plugin.toml match pb_plugin_api.name and pack again)")))
                    continue
                }
                var config: [String: String] = [:]
                for entry in manifest.config { config[entry.key] = entry.value }
                for (k, v) in overrides[name] ?? [:] { config[k] = v }
                if addPlugin(plugin, filter: catalog.filter(for: name), configuration: config,
                             batchSize: Int(manifest.worker.batch),
                             deadline: manifest.worker.deadlineMs == 0 ? nil : .milliseconds(Int(manifest.worker.deadlineMs))) { opened.append(name) }
                else { failed[name] = "was skipped" }
            }
            if opened.isEmpty { continue }
            startWorkers()
            let names = Set(workers.map(\.plugin.name))
            for name in opened {
                if names.contains(name) { running.insert(name) } else { failed[name] = "failed to initialise" }
            }
        }
        return ManifestStartReport(running: running.count, catalog: catalog, registryStats: st, discovery: discovery,
                                   loadTimes: loadTimes)
    }
}
