import ArgumentParser
import PlugboardManifest

/// `plugboard explain`: what the host would load from plugin directories and why, or (with --device)
/// which plugins a device's events reach, by which rule, and why the others do not.
///
/// Exit codes: 0 always when the arguments are valid (skipped plugins are reported, not failures);
/// 64 bad arguments.
struct ExplainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Explain which plugins load (and in which order), or which plugins a device matches.")

    @Argument(help: "Plugin directories (default: build/plugins).")
    var dirs: [String] = []

    @Option(help: "A device as VID:PID or VID:PID:CLASS (hex); CLASS is checked as device and interface class.")
    var device: String?

    @Option(help: "With --device: the device's serial number.")
    var serial: String?

    @Option(help: "With --device: the event's action (add, remove, change, bind, unbind, resync).")
    var action: String = "add"

    @Option(help: "Registry cache file to use (default: none, every manifest is read).")
    var cache: String?

    @Flag(help: "Print JSON for machines.")
    var json = false

    func run() throws {
        let directories = dirs.isEmpty ? ["build/plugins"] : dirs
        let registry = ManifestRegistry(cachePath: cache, warning: { Output.stderr("warning: \($0)") })
        let catalog = PluginCatalog.discover(dirs: directories, registry: registry)
        if let device {
            let query: DeviceQuery
            do { query = try DeviceQuery(parsing: device, serial: serial, action: action) }
            catch { throw ValidationError(String(describing: error)) }
            explainDevice(query, catalog)
        } else {
            explainCatalog(catalog, registry.stats)
        }
    }

    func explainCatalog(_ catalog: PluginCatalog, _ stats: ManifestRegistry.Stats) {
        var level: [String: Int] = [:]
        for (i, names) in catalog.plan.levels.enumerated() { for n in names { level[n] = i + 1 } }
        if json {
            struct Plugin: Encodable {
                var name: String; var status: String; var library: String; var manifest: String?
                var init_level: Int?; var reason: ErrorJSON?; var details: ManifestJSON?
            }
            struct Report: Encodable { var plugins: [Plugin]; var init_levels: [[String]]; var problems: [ErrorJSON] }
            let plugins = catalog.candidates.map { c in
                Plugin(name: c.name, status: c.isLoadable ? "load" : "skip", library: c.libraryPath, manifest: c.manifestPath,
                       init_level: level[c.name].flatMap { c.isLoadable ? $0 : nil }, reason: c.skip.map(ErrorJSON.init),
                       details: c.manifest.map(ManifestJSON.init))
            }
            print(Output.json(Report(plugins: plugins, init_levels: catalog.plan.levels, problems: catalog.problems.map(ErrorJSON.init))))
            return
        }
        for p in catalog.problems { print("problem: \(p)") }
        if catalog.candidates.isEmpty { print("no plugins (.so or .pbm) found in \(dirs.isEmpty ? "build/plugins" : dirs.joined(separator: " "))") }
        for c in catalog.candidates {
            if c.isLoadable {
                print("load  \(c.name)  (\(c.libraryPath), init level \(level[c.name] ?? 0))")
                if let m = c.manifest { Output.describe(m, indent: "        ").dropFirst(2).forEach { print($0) } }
            } else {
                print("skip  \(c.name)  (\(c.manifestPath ?? c.libraryPath))")
                print("        reason [\(c.skip!.check.rawValue)]: \(c.skip!)")
            }
        }
        if !catalog.plan.levels.isEmpty {
            print("init order (plugins of a level start in parallel):")
            for (i, names) in catalog.plan.levels.enumerated() { print("  level \(i + 1): \(names.joined(separator: ", "))") }
        }
    }

    func explainDevice(_ q: DeviceQuery, _ catalog: PluginCatalog) {
        let matches = q.withEvent { catalog.matchIndex.matchingPlugins(event: $0) }
        let bySlot = Dictionary(matches.map { ($0.plugin, $0.rule) }, uniquingKeysWith: { a, _ in a })
        struct Row: Encodable { var plugin: String; var matches: Bool; var rule: Int?; var rule_summary: String?; var reasons: [String] }
        var rows: [Row] = []
        for c in catalog.candidates {
            guard let m = c.manifest else { continue }
            guard let slot = c.matchSlot else {
                rows.append(Row(plugin: c.name, matches: false, rule: nil, rule_summary: nil, reasons: ["not loaded: \(c.skip?.problem ?? "skipped")"]))
                continue
            }
            if let r = bySlot[slot] {
                rows.append(Row(plugin: c.name, matches: true, rule: r + 1, rule_summary: m.rules[r].summary, reasons: []))
            } else {
                let reasons = m.rules.enumerated().map { i, r in "match[\(i + 1)] \(r.summary): \(q.mismatch(r) ?? "matches")" }
                rows.append(Row(plugin: c.name, matches: false, rule: nil, rule_summary: nil, reasons: reasons))
            }
        }
        if json {
            struct Report: Encodable { var device: String; var serial: String?; var action: String; var plugins: [Row] }
            print(Output.json(Report(device: q.label, serial: q.serial, action: action, plugins: rows)))
            return
        }
        print("device \(q.label)\(q.serial.map { " serial \"\($0)\"" } ?? "") action \(action):")
        if rows.isEmpty { print("  no plugins with a manifest found") }
        for r in rows {
            if r.matches { print("  \(r.plugin): receives it (match[\(r.rule!)] \(r.rule_summary!))") }
            else {
                print("  \(r.plugin): does not receive it")
                r.reasons.forEach { print("      \($0)") }
            }
        }
    }
}
