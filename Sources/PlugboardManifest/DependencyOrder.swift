/// Initialisation order from `after = [...]`: a DAG cut into levels. Every plugin of a level depends
/// only on plugins of earlier levels, so a level's plugins can initialise in parallel.
public struct InitPlan: Sendable, Equatable {
    /// Plugin names by level, each level sorted by name.
    public var levels: [[String]]
    /// Plugins that cannot start, with the reason: a missing dependency, a cycle, or a dependency that
    /// was itself skipped. Never silently dropped.
    public var skipped: [String: ManifestError]

    public init(levels: [[String]], skipped: [String: ManifestError]) {
        self.levels = levels
        self.skipped = skipped
    }
}

/// What happened to one plugin when the host ran its `init`.
public enum InitOutcome: Sendable, Equatable {
    case initialised
    /// Its `init` threw or returned an error (the message is the error's description).
    case failed(String)
    /// Not attempted; the reason names the dependency that failed or was skipped.
    case skipped(ManifestError)
}

public enum DependencyOrder {
    /// Builds the plan for `plugins` (name and its `after` list).
    /// - Parameters:
    ///   - files: each plugin's manifest path, used as the `file` of its reason.
    ///   - unavailable: plugins known to exist but rejected (name -> reason), so a dependent's reason can
    ///     say why its dependency is missing.
    public static func plan(_ plugins: [(name: String, after: [String])], files: [String: String] = [:],
                            unavailable: [String: String] = [:]) -> InitPlan {
        let byName = Dictionary(plugins.map { ($0.name, $0.after) }, uniquingKeysWith: { a, _ in a })
        var skipped: [String: ManifestError] = [:]
        func file(_ n: String) -> String { files[n] ?? n }

        // 1. Missing dependencies.
        for (name, after) in byName.sorted(by: { $0.key < $1.key }) {
            if let missing = after.first(where: { byName[$0] == nil }) {
                if let why = unavailable[missing] {
                    skipped[name] = ManifestError(.dependency, file: file(name), field: "plugin.after",
                        problem: "plugin \"\(name)\" needs \"\(missing)\", which was rejected (\(why))",
                        fix: "fix \"\(missing)\" first; this plugin starts once it does")
                } else {
                    skipped[name] = ManifestError(.dependency, file: file(name), field: "plugin.after",
                        problem: "plugin \"\(name)\" needs \"\(missing)\", which is not installed",
                        fix: "install and pack \"\(missing)\" in a plugin directory, or remove it from after")
                }
            }
        }
        // 2. Cycles: Tarjan's strongly connected components; every member of a cycle is skipped, naming it.
        var index = 0
        var indices: [String: Int] = [:], low: [String: Int] = [:], onStack: Set<String> = []
        var stack: [String] = []
        var cycles: [[String]] = []
        func strongConnect(_ v: String) {
            indices[v] = index; low[v] = index; index += 1
            stack.append(v); onStack.insert(v)
            for w in byName[v] ?? [] where byName[w] != nil {
                if indices[w] == nil { strongConnect(w); low[v] = min(low[v]!, low[w]!) }
                else if onStack.contains(w) { low[v] = min(low[v]!, indices[w]!) }
            }
            if low[v] == indices[v] {
                var component: [String] = []
                while let w = stack.popLast() {
                    onStack.remove(w)
                    component.append(w)
                    if w == v { break }
                }
                if component.count > 1 || (byName[v] ?? []).contains(v) { cycles.append(component) }
            }
        }
        for name in byName.keys.sorted() where indices[name] == nil { strongConnect(name) }
        for component in cycles {
            let path = cyclePath(component, byName)
            for n in component {
                skipped[n] = ManifestError(.dependency, file: file(n), field: "plugin.after",
                    problem: "dependency cycle: \(path.joined(separator: " -> "))",
                    fix: "remove one of these after entries so the plugins form no cycle")
            }
        }
        // 3. Levels (Kahn), propagating skips to dependents.
        var level: [String: Int] = [:]
        var remaining = Set(byName.keys)
        var levels: [[String]] = []
        while !remaining.isEmpty {
            var progressed = false
            for n in remaining.sorted() {
                let deps = byName[n] ?? []
                if skipped[n] != nil { remaining.remove(n); progressed = true; continue }
                if let bad = deps.first(where: { skipped[$0] != nil }) {
                    skipped[n] = ManifestError(.dependency, file: file(n), field: "plugin.after",
                        problem: "dependency \"\(bad)\" cannot start (\(skipped[bad]!.problem))",
                        fix: "fix \"\(bad)\" first; this plugin starts once it does")
                    remaining.remove(n); progressed = true; continue
                }
                if deps.allSatisfy({ level[$0] != nil }) {
                    let l = deps.map { level[$0]! + 1 }.max() ?? 0
                    level[n] = l
                    while levels.count <= l { levels.append([]) }
                    levels[l].append(n)
                    remaining.remove(n); progressed = true
                }
            }
            if !progressed { break } // cannot happen: cycles were removed above
        }
        return InitPlan(levels: levels.map { $0.sorted() }, skipped: skipped)
    }

    /// A readable cycle "a -> b -> c -> a" through the members of one strongly connected component.
    static func cyclePath(_ component: [String], _ graph: [String: [String]]) -> [String] {
        let members = Set(component)
        let start = component.min()!
        var path = [start]
        var seen: Set<String> = [start]
        var current = start
        while let next = (graph[current] ?? []).filter({ members.contains($0) }).sorted().first(where: { $0 == start || !seen.contains($0) }) {
            path.append(next)
            if next == start { break }
            seen.insert(next)
            current = next
        }
        if path.last != start { path.append(start) }
        return path
    }

    /// Runs `initialize` for every plugin in `plan`, level by level, the plugins of one level
    /// concurrently (at most `maxConcurrent` at once). A plugin whose dependency failed or was skipped is
    /// not initialised; its outcome says why. Plugins skipped by the plan keep their reason.
    ///
    /// - Parameters:
    ///   - dependencies: each plugin's `after` list (to find whose dependency failed).
    ///   - initialize: the host's "init this plugin" closure; throwing marks the plugin failed.
    /// - Returns: one outcome per plugin in the plan.
    public static func run(_ plan: InitPlan, dependencies: [String: [String]], maxConcurrent: Int = 8,
                           initialize: @escaping @Sendable (String) async throws -> Void) async -> [String: InitOutcome] {
        var outcomes: [String: InitOutcome] = plan.skipped.mapValues { .skipped($0) }
        for level in plan.levels {
            var ready: [String] = []
            for name in level {
                if let bad = (dependencies[name] ?? []).first(where: { outcomes[$0] != .initialised }) {
                    let why: String
                    switch outcomes[bad] {
                    case .failed(let m): why = "failed to initialise: \(m)"
                    case .skipped(let e): why = "was skipped: \(e.problem)"
                    default: why = "did not initialise"
                    }
                    outcomes[name] = .skipped(ManifestError(.dependency, file: name, field: "plugin.after",
                        problem: "dependency \"\(bad)\" \(why)", fix: "fix \"\(bad)\"; this plugin starts once it does"))
                } else {
                    ready.append(name)
                }
            }
            let results = await withTaskGroup(of: (String, InitOutcome).self, returning: [(String, InitOutcome)].self) { group in
                var out: [(String, InitOutcome)] = []
                var next = 0
                func launch() {
                    let name = ready[next]
                    next += 1
                    group.addTask {
                        do { try await initialize(name); return (name, .initialised) }
                        catch { return (name, .failed(String(describing: error))) }
                    }
                }
                while next < ready.count && next < max(1, maxConcurrent) { launch() }
                while let r = await group.next() {
                    out.append(r)
                    if next < ready.count { launch() }
                }
                return out
            }
            for (name, outcome) in results { outcomes[name] = outcome }
        }
        return outcomes
    }
}
