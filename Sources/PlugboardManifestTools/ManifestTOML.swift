import PlugboardCore
import PlugboardManifest
import TOMLKit

/// Reads `plugin.toml` into a `Manifest`, checking every field. docs/manifest.md is the reference.
///
/// Each problem is a `ManifestError` with the file, the line, the field and the fix; `check` returns
/// all of them (in line order), `parse` throws the first.
public enum ManifestTOML {
    /// Parses and validates; throws the first problem (a `ManifestError`).
    public static func parse(_ text: String, file: String) throws -> Manifest {
        let (manifest, problems) = check(text, file: file)
        if let first = problems.first { throw first }
        return manifest!
    }

    /// Reads `path` and parses it.
    public static func parse(contentsOf path: String) throws -> Manifest {
        let bytes = try FileIO.readAll(path, check: .toml, field: "file")
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ManifestError(.toml, file: path, field: "file", problem: "the file is not UTF-8 text", fix: "save plugin.toml as UTF-8")
        }
        return try parse(text, file: path)
    }

    /// Every problem in the document, sorted by line; the manifest when there are none.
    public static func check(_ text: String, file: String) -> (Manifest?, [ManifestError]) {
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let e as TOMLParseError {
            let line = Int(e.source.begin.line)
            return (nil, [ManifestError(.toml, file: file, line: line > 0 ? line : nil, field: "syntax",
                                        problem: "invalid TOML: \(e.description) (line \(e.source.begin.line), column \(e.source.begin.column))",
                                        fix: "correct the TOML syntax at that position (see https://toml.io)")])
        } catch {
            return (nil, [ManifestError(.toml, file: file, field: "syntax", problem: "invalid TOML: \(error)", fix: "correct the TOML syntax")])
        }
        var p = Parser(file: file, lines: TOMLLineIndex(text))
        let m = p.manifest(root)
        let problems = p.problems.sorted { ($0.line ?? 0, $0.field) < ($1.line ?? 0, $1.field) }
        return (problems.isEmpty ? m : nil, problems)
    }
}

private struct Parser {
    let file: String
    let lines: TOMLLineIndex
    var problems: [ManifestError] = []

    mutating func report(_ field: String, _ problem: String, _ fix: String, check: ManifestError.Check = .field) {
        problems.append(ManifestError(check, file: file, line: lines.line(of: field), field: field, problem: problem, fix: fix))
    }

    mutating func unknownKeys(_ t: TOMLTable, allowed: [String], at prefix: String) {
        for key in t.keys where !allowed.contains(key) {
            let field = prefix.isEmpty ? key : "\(prefix).\(key)"
            let close = allowed.min { Text.editDistance($0, key) < Text.editDistance($1, key) }
            if let close, Text.editDistance(close, key) <= 2 {
                report(field, "unknown field \"\(key)\"", "did you mean \"\(close)\"? rename it")
            } else {
                report(field, "unknown field \"\(key)\"", "remove it; allowed here: \(allowed.joined(separator: ", "))")
            }
        }
    }

    mutating func string(_ t: TOMLTable, _ key: String, at field: String, required: Bool, example: String) -> String? {
        guard let v = t[key] else {
            if required { report(field, "required field is missing", "add \(key) = \(example)") }
            return nil
        }
        guard let s = v.string else {
            report(field, "must be a string, found \(v.type.description)", "write it in quotes, e.g. \(key) = \(example)")
            return nil
        }
        return s
    }

    mutating func integer(_ t: TOMLTable, _ key: String, at field: String, range: ClosedRange<Int>) -> Int? {
        guard let v = t[key] else { return nil }
        guard let i = v.int else {
            report(field, "must be an integer, found \(v.type.description)", "write a number in \(range.lowerBound)...\(range.upperBound) without quotes")
            return nil
        }
        guard range.contains(i) else {
            report(field, "\(i) is outside \(range.lowerBound)...\(range.upperBound)", "use a value in \(range.lowerBound)...\(range.upperBound)")
            return nil
        }
        return i
    }

    mutating func manifest(_ root: TOMLTable) -> Manifest? {
        unknownKeys(root, allowed: ["plugin", "dependencies", "worker", "match", "config", "exports"], at: "")
        guard let pv = root["plugin"] else {
            report("plugin", "the [plugin] table is missing", "start the file with [plugin] and name, version and library")
            return nil
        }
        guard let plugin = pv.table else {
            report("plugin", "must be a table, found \(pv.type.description)", "write it as a [plugin] table")
            return nil
        }
        if plugin["after"] != nil {
            report("plugin.after", "after belongs in the [dependencies] table", "move it: [dependencies] after = [\"other-plugin\"]")
        }
        unknownKeys(plugin, allowed: ["name", "version", "library", "description", "abi", "authors", "license", "after"], at: "plugin")
        let name = string(plugin, "name", at: "plugin.name", required: true, example: "\"usb-logger\"")
        if let n = name, let f = ManifestValidation.pluginName(n) { report("plugin.name", f.problem, f.fix) }
        let version = string(plugin, "version", at: "plugin.version", required: true, example: "\"1.0.0\"")
        if let v = version, let f = ManifestValidation.version(v) { report("plugin.version", f.problem, f.fix) }
        let library = string(plugin, "library", at: "plugin.library", required: true, example: "\"lib\(name ?? "name").so\"")
        if let l = library, let f = ManifestValidation.library(l) { report("plugin.library", f.problem, f.fix) }
        let summary = string(plugin, "description", at: "plugin.description", required: false, example: "\"what it does\"") ?? ""
        var abi = (HostABI.major, HostABI.minor)
        if let a = string(plugin, "abi", at: "plugin.abi", required: false, example: "\"\(HostABI.major).\(HostABI.minor)\"") {
            let parts = a.split(separator: ".", omittingEmptySubsequences: false)
            if parts.count == 2, let ma = UInt16(parts[0]), let mi = UInt16(parts[1]) {
                abi = (ma, mi)
                if let f = ManifestValidation.abi(major: ma, minor: mi) { report("plugin.abi", f.problem, f.fix, check: .abi) }
            } else {
                report("plugin.abi", "\"\(a)\" is not an ABI version", "write MAJOR.MINOR, e.g. abi = \"\(HostABI.major).\(HostABI.minor)\"")
            }
        }
        var authors: [String] = []
        if let av = plugin["authors"] {
            if let arr = av.array, arr.allSatisfy({ $0.string != nil }) {
                authors = arr.map { $0.string! }
            } else {
                report("plugin.authors", "must be an array of strings, found \(av.type.description)", "write authors = [\"Name <mail@example.org>\"]")
            }
        }
        let license = string(plugin, "license", at: "plugin.license", required: false, example: "\"MIT\"") ?? ""
        var after: [String] = []
        if let dv = root["dependencies"] {
            if let deps = dv.table {
                unknownKeys(deps, allowed: ["after"], at: "dependencies")
                if let av = deps["after"] {
                    if let arr = av.array, arr.allSatisfy({ $0.string != nil }) {
                        after = arr.map { $0.string! }
                    } else {
                        report("dependencies.after", "must be an array of plugin names, found \(av.type.description)", "write after = [\"other-plugin\"]")
                    }
                }
            } else {
                report("dependencies", "must be a table, found \(dv.type.description)", "write it as a [dependencies] table with after = [...]")
            }
        }

        let worker = workerSettings(root)
        let rules = matchRules(root)
        let config = configEntries(root)
        let exports = exportEntries(root)
        guard let name, let version, let library else { return nil }
        let m = Manifest(name: name, version: version, library: library, summary: summary, authors: authors, license: license,
                         abiMajor: abi.0, abiMinor: abi.1,
                         worker: worker, rules: rules ?? [], config: config, exports: exports, after: after)
        if rules != nil {
            for c in ManifestValidation.crossChecks(m) { report(c.field, c.problem, c.fix) }
        }
        return problems.isEmpty ? m : nil
    }

    mutating func workerSettings(_ root: TOMLTable) -> WorkerSettings {
        var w = WorkerSettings()
        guard let v = root["worker"] else { return w }
        guard let t = v.table else {
            report("worker", "must be a table, found \(v.type.description)", "write it as a [worker] table")
            return w
        }
        unknownKeys(t, allowed: ["batch", "deadline_ms", "isolation", "settle_ms", "nice", "cpu_affinity"], at: "worker")
        if let b = integer(t, "batch", at: "worker.batch", range: WorkerSettings.batchRange) { w.batch = UInt32(b) }
        if let d = integer(t, "deadline_ms", at: "worker.deadline_ms", range: WorkerSettings.deadlineRange) { w.deadlineMs = UInt32(d) }
        if let i = string(t, "isolation", at: "worker.isolation", required: false, example: "\"process\"") {
            if let iso = WorkerSettings.Isolation(name: i) { w.isolation = iso }
            else { report("worker.isolation", "\"\(i)\" is not an isolation mode", "write \"process\" (the default) or \"thread\"") }
        }
        if let v = t["settle_ms"] {
            let fix = "write settle_ms = 250 (milliseconds, 1...60000), settle_ms = \"default\" for the daemon's performance.debounce_ms, or 0 (no window)"
            if let ms = v.int {
                if WorkerSettings.settleRange.contains(ms) { w.settle = ms == 0 ? .off : .milliseconds(UInt32(ms)) }
                else { report("worker.settle_ms", "\(ms) is outside 0...60000", fix) }
            } else if v.string == "default" {
                w.settle = .daemonDefault
            } else {
                report("worker.settle_ms", v.string.map { "\"\($0)\" is not a number of milliseconds or \"default\"" }
                       ?? "must be an integer or \"default\", found \(v.type.description)", fix)
            }
        }
        if let v = t["nice"] {
            if let n = v.int {
                if let f = ManifestValidation.nice(n) { report("worker.nice", f.problem, f.fix) } else { w.nice = Int8(n) }
            } else {
                report("worker.nice", "must be an integer, found \(v.type.description)", "write nice = 10 (from -20 to 19) without quotes")
            }
        }
        if let v = t["cpu_affinity"] {
            // A bare integer is one CPU, as in the daemon's performance.cpu_affinity.
            let text = v.int.map(String.init) ?? v.string
            if let text {
                if let f = ManifestValidation.cpuList(text) { report("worker.cpu_affinity", f.problem, f.fix) } else { w.cpuAffinity = text }
            } else {
                report("worker.cpu_affinity", "must be a CPU list string, found \(v.type.description)", "write cpu_affinity = \"2\" or \"0-3\"")
            }
        }
        return w
    }

    mutating func matchRules(_ root: TOMLTable) -> [MatchRule]? {
        guard let v = root["match"] else { return [] }
        guard let arr = v.array else {
            report("match", "must be an array of tables, found \(v.type.description)", "write each rule as [[match]] (double brackets), not [match]")
            return nil
        }
        var rules: [MatchRule] = []
        var skippedRule = false
        for (i, item) in arr.enumerated() {
            let at = "match[\(i + 1)]"
            guard let t = item.table else {
                report(at, "must be a table, found \(item.type.description)", "write each rule as a [[match]] table")
                skippedRule = true
                continue
            }
            unknownKeys(t, allowed: ["subsystem", "vendor", "product", "device_class", "interface_class", "serial", "actions"], at: at)
            if t.isEmpty {
                report(at, "the rule is empty", "add subsystem = \"usb\" to match every USB device, or vendor/product/class fields")
                skippedRule = true
                continue
            }
            var r = MatchRule()
            if let s = string(t, "subsystem", at: "\(at).subsystem", required: false, example: "\"usb\"") {
                if let f = ManifestValidation.subsystem(s) { report("\(at).subsystem", f.problem, f.fix) }
            }
            r.vendor = idField(t, "vendor", at: at, what: "USB vendor id", example: "046d")
            r.product = idField(t, "product", at: at, what: "USB product id", example: "c52b")
            r.deviceClass = hexField(t, "device_class", at: at, max: 0xFF, what: "USB class code", digits: 2, example: "09").map { UInt8($0) }
            r.interfaceClass = hexField(t, "interface_class", at: at, max: 0xFF, what: "USB class code", digits: 2, example: "03").map { UInt8($0) }
            if let s = string(t, "serial", at: "\(at).serial", required: false, example: "\"A1B2*\"") {
                if let f = ManifestValidation.serialPattern(s) { report("\(at).serial", f.problem, f.fix) } else { r.serial = s }
            }
            if let av = t["actions"] {
                let valid = MatchRule.Actions.names.map(\.0)
                if let list = av.array, list.allSatisfy({ $0.string != nil }), !list.isEmpty {
                    for a in list.map({ $0.string! }) {
                        if let bit = MatchRule.Actions.names.first(where: { $0.0 == a })?.1 { r.actions.insert(bit) }
                        else { report("\(at).actions", "\"\(a)\" is not an action", "use some of: \(valid.joined(separator: ", "))") }
                    }
                } else {
                    report("\(at).actions", "must be a non-empty array of action names, found \(av.type.description)",
                           "write e.g. actions = [\"add\", \"remove\"], or remove the field for every action")
                }
            }
            rules.append(r)
        }
        return skippedRule ? nil : rules
    }

    /// A vendor/product id: one id (as `hexField`), or a range "FIRST-LAST" in hex ("c520-c52f").
    mutating func idField(_ t: TOMLTable, _ key: String, at rule: String, what: String, example: String) -> ClosedRange<UInt16>? {
        let field = "\(rule).\(key)"
        if let s = t[key]?.string, s.contains("-") {
            let parts = s.split(separator: "-", omittingEmptySubsequences: false)
            func parse(_ x: Substring) -> UInt16? {
                var h = x.drop { $0 == " " }
                while h.last == " " { h = h.dropLast() }
                if h.hasPrefix("0x") || h.hasPrefix("0X") { h = h.dropFirst(2) }
                return h.isEmpty || h.count > 4 ? nil : UInt16(h, radix: 16)
            }
            guard parts.count == 2, let lo = parse(parts[0]), let hi = parse(parts[1]) else {
                report(field, "\"\(s)\" is not a range of \(what)s", "write FIRST-LAST in hex, e.g. \"\(example)-\(example.dropLast())f\"")
                return nil
            }
            guard lo <= hi else {
                report(field, "the range \"\(s)\" is empty (\(hex(lo)) > \(hex(hi)))", "write the smaller id first")
                return nil
            }
            return lo...hi
        }
        return hexField(t, key, at: rule, max: 0xFFFF, what: what, digits: 4, example: example).map { UInt16($0)...UInt16($0) }
    }

    func hex(_ v: UInt16) -> String { String(v, radix: 16) }

    /// A hex code given as a string ("046d", "0x046d"), as a TOML integer (0x046d), or "*" for any.
    mutating func hexField(_ t: TOMLTable, _ key: String, at rule: String, max: Int, what: String, digits: Int, example: String) -> Int? {
        let field = "\(rule).\(key)"
        guard let v = t[key] else { return nil }
        let fix = "write \(digits) hex digits such as \"\(example)\" (or 0x\(example) without quotes)\(digits == 4 ? ", a range \"FIRST-LAST\"" : ""), or \"*\" for any"
        if let i = v.int {
            guard i >= 0 && i <= max else { report(field, "\(i) is not a \(what) (0...0x\(String(max, radix: 16)))", fix); return nil }
            return i
        }
        guard let s = v.string else { report(field, "must be a string or an integer, found \(v.type.description)", fix); return nil }
        if s == "*" { return nil }
        var hex = Substring(s)
        if hex.hasPrefix("0x") || hex.hasPrefix("0X") { hex = hex.dropFirst(2) }
        guard !hex.isEmpty, hex.count <= digits, let value = Int(hex, radix: 16) else {
            if s.contains("*") || s.contains("?") {
                report(field, "\"\(s)\" is a partial wildcard; only \"*\" (any) is supported for \(key)", "write the full \(what) or \"*\"")
            } else {
                report(field, "\"\(s)\" is not a \(what)", fix)
            }
            return nil
        }
        return value
    }

    mutating func configEntries(_ root: TOMLTable) -> [ConfigEntry] {
        guard let v = root["config"] else { return [] }
        guard let t = v.table else {
            report("config", "must be a table, found \(v.type.description)", "write it as a [config] table of key = value")
            return []
        }
        var out: [(Int, ConfigEntry)] = []
        for (key, value) in t {
            let field = "config.\(key)"
            if let f = ManifestValidation.configKey(key) { report(field, f.problem, f.fix); continue }
            let text: String
            if let s = value.string { text = s }
            else if let i = value.int { text = String(i) }
            else if let b = value.bool { text = b ? "true" : "false" }
            else if let d = value.double { text = String(d) }
            else {
                report(field, "\(article(value.type.description)) cannot be passed to the plugin (config values are strings)",
                       "use a string, number or boolean; encode lists as a string such as \"a,b,c\"")
                continue
            }
            out.append((lines.line(of: field) ?? Int.max, ConfigEntry(key: key, value: text)))
        }
        // TOMLKit sorts keys; keep the author's order, which is the order init sees.
        return out.sorted { ($0.0, $0.1.key) < ($1.0, $1.1.key) }.map(\.1)
    }

    /// `[exports]`: symbol = "C signature", in file order.
    mutating func exportEntries(_ root: TOMLTable) -> [Export] {
        guard let v = root["exports"] else { return [] }
        guard let t = v.table else {
            report("exports", "must be a table, found \(v.type.description)",
                   "write [exports] with lines such as pb_plugin_entry = \"pb_status (const pb_negotiate_in *, pb_negotiate_out *)\"")
            return []
        }
        var out: [(Int, Export)] = []
        for (symbol, value) in t {
            let field = "exports.\(symbol)"
            if let f = ManifestValidation.cIdentifier(symbol) { report(field, f.problem, f.fix); continue }
            guard let sig = value.string else {
                report(field, "must be a string (the C signature), found \(value.type.description)",
                       "write \(symbol) = \"pb_status (const pb_negotiate_in *, pb_negotiate_out *)\"")
                continue
            }
            if let f = ManifestValidation.signature(sig) { report(field, f.problem, f.fix); continue }
            out.append((lines.line(of: field) ?? Int.max, Export(symbol: symbol, signature: sig)))
        }
        return out.sorted { ($0.0, $0.1.symbol) < ($1.0, $1.1.symbol) }.map(\.1)
    }

    func article(_ noun: String) -> String {
        (["a", "e", "i", "o", "u"].contains(noun.prefix(1)) ? "an " : "a ") + noun
    }
}
