import CPlugboard

/// One plugin the host found: a `.so` and its manifest, or the reason it will not be loaded.
public struct PluginCandidate: Sendable, Equatable {
    /// The manifest's plugin name, or the `.pbm`/`.so` file's name when there is no valid manifest.
    public var name: String
    /// The shared object to `dlopen` (may not exist when the skip reason says so).
    public var libraryPath: String
    public var manifestPath: String?
    /// The validated manifest; nil when the manifest itself was rejected or missing.
    public var manifest: Manifest?
    /// Why the host must not load it (check, file, field, fix); nil when it may.
    public var skip: ManifestError?
    /// Position in the catalog's match index (`PluginCatalog.matchIndex`), for loadable plugins.
    public var matchSlot: Int?

    public var isLoadable: Bool { skip == nil }
    /// `[config]` as key/value pairs, in file order, for `pb_config`.
    public var config: [ConfigEntry] { manifest?.config ?? [] }
    public var worker: WorkerSettings { manifest?.worker ?? WorkerSettings() }
}

/// What the host loads: every candidate found in the plugin directories, the initialisation plan and
/// the match index, from manifests alone (no `dlopen`).
///
/// The host's loader uses it like this:
///
///     let catalog = PluginCatalog.discover(dirs: ["/usr/lib/plugboard/plugins"], registry: registry)
///     for c in catalog.candidates where !c.isLoadable { log.warning("\(c.name) skipped: \(c.skip!)") }
///     let outcomes = await catalog.initialize { name in           // dependency order, levels in parallel
///         let c = catalog.candidate(named: name)!
///         try loader.load(c.libraryPath, config: c.config, filter: catalog.filter(for: name))
///     }
public struct PluginCatalog: Sendable {
    /// Everything found, in directory order then file name order.
    public var candidates: [PluginCandidate]
    /// Problems not tied to a plugin (a plugin directory that cannot be read).
    public var problems: [ManifestError]
    public var plan: InitPlan
    /// Built from the loadable candidates' rules; `candidate.matchSlot` is the plugin index in it.
    public var matchIndex: MatchIndex

    public var loadable: [PluginCandidate] { candidates.filter(\.isLoadable) }

    public func candidate(named name: String) -> PluginCandidate? {
        candidates.first { $0.name == name && $0.isLoadable } ?? candidates.first { $0.name == name }
    }

    /// The event filter for a loadable plugin's worker (nil for unknown or skipped plugins).
    public func filter(for name: String) -> (@Sendable (UnsafePointer<pb_event>) -> Bool)? {
        guard let slot = candidate(named: name)?.matchSlot else { return nil }
        return matchIndex.filter(forPlugin: slot)
    }

    /// Runs `initialize` for each loadable plugin in dependency order (see `DependencyOrder.run`).
    public func initialize(maxConcurrent: Int = 8, _ initialize: @escaping @Sendable (String) async throws -> Void) async -> [String: InitOutcome] {
        let deps = Dictionary(loadable.compactMap { c in c.manifest.map { (c.name, $0.after) } }, uniquingKeysWith: { a, _ in a })
        return await DependencyOrder.run(plan, dependencies: deps, maxConcurrent: maxConcurrent, initialize: initialize)
    }

    /// Finds every `.so` and `.pbm` in `dirs` (not recursive), resolves the manifests through
    /// `registry` (which is saved afterwards), and decides for each plugin: load, or skip with the reason.
    ///
    /// Rules: a `.so` is loaded only with a valid manifest in the same directory whose `library` names it
    /// and whose recorded SHA-256 matches; ABI major must match; the first manifest of a name wins (later
    /// duplicates are skipped); plugins whose `after` names a missing, skipped or cyclic plugin are skipped.
    ///
    /// `verify`, when given, is asked about every manifest that resolved (its library's hash already
    /// checked) before anything is opened: an error it returns skips the plugin with that reason, and
    /// its dependents after it (the host's signature check, `plugins.require_signature`).
    public static func discover(dirs: [String], registry: ManifestRegistry,
                                verify: ((ResolvedManifest) -> ManifestError?)? = nil) -> PluginCatalog {
        var candidates: [PluginCandidate] = []
        var problems: [ManifestError] = []
        var seenNames: [String: String] = [:]
        for dir in dirs {
            guard let names = FileIO.list(dir) else {
                problems.append(ManifestError(.library, file: dir, field: "plugins directory", problem: "cannot read the directory",
                                              fix: "create it, or correct the plugin directory's path"))
                continue
            }
            var claimed: Set<String> = []
            for file in names where file.hasSuffix(".pbm") {
                let path = FileIO.join(dir, file)
                let stem = String(file.dropLast(4))
                switch registry.resolve(manifestAt: path) {
                case .success(let r):
                    claimed.insert(r.manifest.library)
                    var c = PluginCandidate(name: r.manifest.name, libraryPath: r.libraryPath, manifestPath: path, manifest: r.manifest)
                    if let first = seenNames[r.manifest.name] {
                        c.skip = ManifestError(.duplicate, file: path, field: "plugin.name",
                            problem: "plugin \"\(r.manifest.name)\" is already provided by \(first)",
                            fix: "remove one of the two, or rename one plugin and pack it again")
                    } else if let refused = verify?(r) {
                        c.skip = refused
                    } else {
                        seenNames[r.manifest.name] = path
                    }
                    candidates.append(c)
                case .failure(let e):
                    // The manifest is unreadable, so assume the conventional library name to avoid a second,
                    // misleading "no manifest" report for the same plugin.
                    claimed.insert("lib\(stem).so")
                    candidates.append(PluginCandidate(name: stem, libraryPath: FileIO.join(dir, "lib\(stem).so"),
                                                      manifestPath: path, manifest: nil, skip: e))
                }
            }
            for file in names where file.hasSuffix(".so") && !claimed.contains(file) {
                let path = FileIO.join(dir, file)
                var stem = String(file.dropLast(3))
                if stem.hasPrefix("lib") { stem.removeFirst(3) }
                candidates.append(PluginCandidate(name: stem, libraryPath: path, manifestPath: nil, manifest: nil,
                    skip: ManifestError(.missingManifest, file: path, field: "manifest",
                        problem: "no manifest in \(dir) names \(file), so the host does not know what the plugin matches or needs",
                        fix: "write a plugin.toml for it and run `plugboard pack plugin.toml --library \(path) -o \(FileIO.join(dir, stem + ".pbm"))`")))
            }
        }
        // A cache that cannot be written costs the next start time, not this one: warn, go on.
        do { try registry.save() } catch { registry.warn("\(ManifestError.from(error, file: registry.cachePath ?? "registry"))") }

        var files: [String: String] = [:]
        var nodes: [(name: String, after: [String])] = []
        for c in candidates where c.isLoadable {
            nodes.append((c.name, c.manifest!.after))
            files[c.name] = c.manifestPath
        }
        var rejected: [String: String] = [:]
        for c in candidates where !c.isLoadable && rejected[c.name] == nil {
            rejected[c.name] = c.skip!.detail
        }
        let plan = DependencyOrder.plan(nodes, files: files, unavailable: rejected)
        var rules: [[MatchRule]] = []
        for i in candidates.indices where candidates[i].isLoadable {
            if let reason = plan.skipped[candidates[i].name] {
                candidates[i].skip = reason
                continue
            }
            candidates[i].matchSlot = rules.count
            rules.append(candidates[i].manifest!.rules)
        }
        return PluginCatalog(candidates: candidates, problems: problems, plan: plan, matchIndex: MatchIndex(plugins: rules))
    }
}
