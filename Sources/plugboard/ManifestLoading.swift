import Logging
import PlugboardCore
import PlugboardManifest

/// How `plugboard run` loads plugins from their manifests (docs/manifest.md, "How the host uses it"):
///
/// 1. `PluginCatalog.discover` reads every `.pbm` (through the registry cache) without `dlopen`;
///    a `.so` without a valid manifest, with a changed hash, a duplicate name, a missing or cyclic
///    dependency is recorded as skipped with the reason and never opened.
/// 2. Level by level of the dependency plan, each plugin is opened, given its `[config]` (overridden
///    by `--plugin-config`) and its match-index filter, and the level's workers are started together
///    (their `init`s run in parallel); the next level starts once they all returned.
/// 3. A plugin whose dependency failed to open or initialise is skipped, naming the dependency.
enum ManifestLoading {
    /// Loads, configures and starts the plugins in `directories`. Returns the number running.
    static func loadAndStart(_ runtime: Runtime, directories: [String], registryCache: String?,
                             overrides: [String: [String: String]], logger: Logger) throws -> Int {
        let registry = ManifestRegistry(cachePath: registryCache, warning: { logger.warning("\($0)") })
        let catalog = PluginCatalog.discover(dirs: directories, registry: registry)
        let st = registry.stats
        logger.info("manifests", metadata: ["plugins": "\(catalog.candidates.count)", "loadable": "\(catalog.loadable.count)",
                                            "read": "\(st.manifestReads)", "hashed": "\(st.libraryHashes)",
                                            "from-cache": "\(st.cacheDecodes)"])
        // As before manifests: an unreadable plugin directory stops the run.
        if let p = catalog.problems.first { throw CLI.Failure(p.description) }
        for c in catalog.candidates {
            guard let e = c.skip else { continue }
            runtime.recordFailure(path: e.file, PluginLoadError(file: e.file, kind: .skipped(reason: e.detail)))
        }
        var failed: [String: String] = [:]  // name -> why
        var running: Set<String> = []
        for level in catalog.plan.levels {
            var opened: [String] = []
            for name in level {
                guard let c = catalog.candidate(named: name), let manifest = c.manifest else { continue }
                if let dep = manifest.after.first(where: { failed[$0] != nil || !running.contains($0) }) {
                    let why = "dependency \"\(dep)\" \(failed[dep] ?? "is not running"); fix \"\(dep)\" first"
                    failed[name] = "was skipped"
                    runtime.recordFailure(path: c.libraryPath, PluginLoadError(file: c.libraryPath, kind: .skipped(reason: why)))
                    continue
                }
                let plugin: LoadedPlugin
                do { plugin = try PluginLoader.open(c.libraryPath) } catch {
                    failed[name] = "failed to load"
                    runtime.recordFailure(path: c.libraryPath, error)
                    continue
                }
                guard plugin.name == manifest.name else {
                    _ = plugin.unload()
                    failed[name] = "was skipped"
                    runtime.recordFailure(path: c.libraryPath, PluginLoadError(file: c.libraryPath, kind: .skipped(reason:
                        "the plugin calls itself \"\(plugin.name)\" but its manifest \(c.manifestPath ?? "") says \"\(manifest.name)\" (fix: make plugin.name in plugin.toml match pb_plugin_api.name and pack again)")))
                    continue
                }
                var config: [String: String] = [:]
                for entry in manifest.config { config[entry.key] = entry.value }
                for (k, v) in overrides[name] ?? [:] { config[k] = v }
                if runtime.addPlugin(plugin, filter: catalog.filter(for: name), configuration: config) { opened.append(name) }
                else { failed[name] = "was skipped" }
            }
            if opened.isEmpty { continue }
            runtime.startWorkers()
            let names = Set(runtime.workers.map(\.plugin.name))
            for name in opened {
                if names.contains(name) { running.insert(name) } else { failed[name] = "failed to initialise" }
            }
        }
        return running.count
    }
}
