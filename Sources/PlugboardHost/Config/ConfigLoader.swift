import Foundation
import TOMLKit
import PlugboardCore

/// Where an effective value came from, for `config check` and for error messages.
public enum ConfigOrigin: Sendable, Equatable, CustomStringConvertible {
    case defaultValue
    case file(path: String, line: Int?)
    case environment(name: String)
    case commandLine(flag: String)
    /// Computed from other keys (the ring size from `performance.event_buffer_size`).
    case derived(from: String)

    public var description: String {
        switch self {
        case .defaultValue: "default"
        case .file(let path, let line): line.map { "\(path):\($0)" } ?? path
        case .environment(let name): "environment \(name)"
        case .commandLine(let flag): "command line \(flag)"
        case .derived(let key): "derived from \(key)"
        }
    }
}

/// One thing wrong with the configuration: where, which key, what, and how to fix it.
public struct ConfigProblem: Sendable, Equatable, CustomStringConvertible {
    public var origin: ConfigOrigin
    /// The dotted key (or section, or variable) the problem is about.
    public var key: String
    public var problem: String
    public var fix: String

    public var description: String {
        let place: String
        switch origin {
        case .file(let path, let line): place = line.map { "\(path):\($0)" } ?? path
        case .environment(let name): place = "environment variable \(name)"
        case .commandLine(let flag): place = "command-line \(flag)"
        case .defaultValue, .derived: place = "built-in default"
        }
        return "\(place): \(key): \(problem). Fix: \(fix)."
    }
}

/// The configuration could not be used; every problem found is listed.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public var problems: [ConfigProblem]
    public init(problems: [ConfigProblem]) { self.problems = problems }
    public var description: String {
        "invalid configuration (\(problems.count) problem\(problems.count == 1 ? "" : "s")):\n"
            + problems.map { "  - \($0)" }.joined(separator: "\n")
    }
}

/// One `--set KEY=VALUE` style override from the command line.
public struct ConfigOverride: Sendable, Equatable {
    public var key: String
    public var value: String
    /// How the operator wrote it, for messages (e.g. `--set performance.batch_size=0` or `--source`).
    public var flag: String

    public init(key: String, value: String, flag: String? = nil) {
        self.key = key
        self.value = value
        // The flag is shown in messages and `config check`: a URL's password never is.
        self.flag = Text.redactingCredentials(flag ?? "--set \(key)=\(value)")
    }

    /// Parses `KEY=VALUE`.
    public static func parse(_ text: String) -> ConfigOverride? {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex else { return nil }
        return ConfigOverride(key: String(text[..<eq]), value: String(text[text.index(after: eq)...]),
                              flag: "--set \(text)")
    }
}

/// Reads the configuration: defaults, then the file, then `PLUGBOARD_*` variables, then flags.
public struct ConfigLoader: Sendable {
    /// Files tried in order when none is named; the first that exists is read.
    public var searchPaths: [String]
    public var environment: [String: String]

    public static let defaultSearchPaths = ["/etc/plugboard/plugboard.toml", "./plugboard.toml"]

    public init(searchPaths: [String] = ConfigLoader.defaultSearchPaths,
                environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.searchPaths = searchPaths
        self.environment = environment
    }

    /// Loads and validates.
    /// - Parameters:
    ///   - file: a file named by the operator (must exist); nil to use `PLUGBOARD_CONFIG` or the search paths.
    ///   - overrides: command-line overrides, applied last.
    /// - Returns: the effective configuration with the origin of every value.
    /// - Throws: `ConfigError` listing every problem found.
    public func load(file: String? = nil, overrides: [ConfigOverride] = []) throws(ConfigError) -> EffectiveConfig {
        var problems: [ConfigProblem] = []
        var values: [String: (ConfigValue, ConfigOrigin)] = [:]
        for key in ConfigSchema.keys { values[key.path] = (key.defaultValue, .defaultValue) }

        // 1. The file.
        var filePath: String?
        if let named = file ?? environment["PLUGBOARD_CONFIG"] {
            let origin: ConfigOrigin = file != nil ? .commandLine(flag: "config file \(named)") : .environment(name: "PLUGBOARD_CONFIG")
            if FileManager.default.isReadableFile(atPath: named) {
                filePath = named
            } else {
                problems.append(ConfigProblem(origin: origin, key: named, problem: "the configuration file does not exist or is not readable",
                                              fix: "check the path and permissions, or leave it out to use \(searchPaths.joined(separator: " or "))"))
            }
        } else {
            filePath = searchPaths.first { FileManager.default.fileExists(atPath: $0) }
        }
        if let filePath { readFile(filePath, into: &values, problems: &problems) }

        // 2. The environment.
        for (name, text) in environment.sorted(by: { $0.key < $1.key }) where name.hasPrefix("PLUGBOARD_") {
            if ConfigSchema.otherEnvironment[name] != nil { continue }
            guard let key = ConfigSchema.keys.first(where: { $0.environmentName == name }) else {
                // Not an error: other tools may share the prefix. Reported by `config check` as a warning.
                continue
            }
            let origin = ConfigOrigin.environment(name: name)
            switch Self.value(fromText: text, for: key) {
            case .success(let v): values[key.path] = (v, origin)
            case .failure(let d): problems.append(ConfigProblem(origin: origin, key: key.path, problem: d.problem, fix: d.fix))
            }
        }

        // 3. The command line.
        for o in overrides {
            let origin = ConfigOrigin.commandLine(flag: o.flag)
            guard let key = ConfigSchema.byPath[o.key] else {
                problems.append(Self.unknownKey(o.key, origin: origin))
                continue
            }
            switch Self.value(fromText: o.value, for: key) {
            case .success(let v): values[key.path] = (v, origin)
            case .failure(let d): problems.append(ConfigProblem(origin: origin, key: key.path, problem: d.problem, fix: d.fix))
            }
        }

        if !problems.isEmpty { throw ConfigError(problems: problems) }
        return EffectiveConfig(file: filePath, entries: values)
    }

    /// `PLUGBOARD_*` variables that name no key (with a did-you-mean), for `config check` to warn about.
    public func unknownEnvironmentVariables() -> [String] {
        let ours = environment.keys.filter { $0.hasPrefix("PLUGBOARD_") }
        // Usually none: then the names of all keys (Foundation string work, 2 % of `run`'s start)
        // are not needed.
        guard !ours.isEmpty else { return [] }
        let known = Set(ConfigSchema.keys.map(\.environmentName)).union(ConfigSchema.otherEnvironment.keys)
        return ours.filter { !known.contains($0) }.sorted().map { name in
            let guess = closestMatch(to: name, in: Array(known))
            return name + (guess.map { " (did you mean \($0)?)" } ?? "")
        }
    }

    // MARK: The file

    private func readFile(_ path: String, into values: inout [String: (ConfigValue, ConfigOrigin)], problems: inout [ConfigProblem]) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            problems.append(ConfigProblem(origin: .file(path: path, line: nil), key: path, problem: "cannot be read as UTF-8 text (\(error))",
                                          fix: "check the file's permissions and encoding"))
            return
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let e as TOMLParseError {
            problems.append(ConfigProblem(origin: .file(path: path, line: e.source.begin.line), key: "(syntax)",
                                          problem: "not valid TOML at column \(e.source.begin.column): \(e.description)",
                                          fix: "correct the TOML syntax on that line (strings need double quotes, tables are [name])"))
            return
        } catch {
            problems.append(ConfigProblem(origin: .file(path: path, line: nil), key: "(syntax)", problem: "not valid TOML: \(error)",
                                          fix: "correct the TOML syntax"))
            return
        }
        let lines = TOMLLineIndex(text)
        for (name, value) in table {
            if let key = ConfigSchema.byPath[name], key.section == nil {
                assign(value, to: key, path: path, lines: lines, values: &values, problems: &problems)
                continue
            }
            guard ConfigSchema.sections.contains(name) else {
                problems.append(Self.unknownKey(name, origin: .file(path: path, line: lines.line(ofKey: name, inTable: nil) ?? lines.line(ofTable: name))))
                continue
            }
            guard let section = value.table else {
                problems.append(ConfigProblem(origin: .file(path: path, line: lines.line(ofKey: name, inTable: nil)), key: name,
                                              problem: "is a \(value.type), expected a table",
                                              fix: "write it as a [\(name)] table with its keys below"))
                continue
            }
            for (sub, subValue) in section {
                let full = "\(name).\(sub)"
                let line = lines.line(ofKey: sub, inTable: name)
                guard let key = ConfigSchema.byPath[full] else {
                    problems.append(Self.unknownKey(full, origin: .file(path: path, line: line)))
                    continue
                }
                assign(subValue, to: key, path: path, lines: lines, values: &values, problems: &problems)
            }
        }
    }

    private func assign(_ raw: any TOMLValueConvertible, to key: ConfigKey, path: String, lines: TOMLLineIndex,
                        values: inout [String: (ConfigValue, ConfigOrigin)], problems: inout [ConfigProblem]) {
        let origin = ConfigOrigin.file(path: path, line: lines.line(ofKey: key.name, inTable: key.section))
        switch Self.value(fromTOML: raw, for: key) {
        case .success(let v): values[key.path] = (v, origin)
        case .failure(let d): problems.append(ConfigProblem(origin: origin, key: key.path, problem: d.problem, fix: d.fix))
        }
    }

    static func unknownKey(_ path: String, origin: ConfigOrigin) -> ConfigProblem {
        let candidates = ConfigSchema.keys.map(\.path) + ConfigSchema.sections
        let guess = closestMatch(to: path, in: candidates)
            ?? closestMatch(to: String(path.split(separator: ".").last ?? ""), in: ConfigSchema.keys.map(\.path))
        let fix = guess.map { "did you mean \"\($0)\"? (known keys are listed in docs/operations.md)" }
            ?? "remove it; known keys: \(ConfigSchema.keys.map(\.path).joined(separator: ", "))"
        return ConfigProblem(origin: origin, key: path, problem: "unknown key", fix: fix)
    }

    // MARK: Typing values

    static func value(fromTOML raw: any TOMLValueConvertible, for key: ConfigKey) -> Result<ConfigValue, ConfigProblemDetail> {
        let wrongType = ConfigProblemDetail("is a \(raw.type), expected \(key.kind.expected)",
                                            fix: "write \(key.path) as \(key.kind.expected), e.g. \(key.defaultValue)")
        switch key.kind {
        case .integer, .byteSize:
            if let i = raw.int { return check(.integer(i), key) }
            if case .byteSize = key.kind, let s = raw.string { return value(fromText: s, for: key) }
            return .failure(wrongType)
        case .bool:
            guard let b = raw.bool else { return .failure(wrongType) }
            return .success(.bool(b))
        case .stringList:
            guard let array = raw.array else { return .failure(wrongType) }
            var out: [String] = []
            for element in array {
                guard let s = element.string else {
                    return .failure(.init("has an element that is a \(element.type), expected strings only",
                                          fix: "quote every entry, e.g. \(key.defaultValue)"))
                }
                out.append(s)
            }
            return check(.stringList(out), key)
        case .duration:
            if let s = raw.string { return value(fromText: s, for: key) }
            if let i = raw.int { return check(.duration(.seconds(i)), key) }
            if let d = raw.double { return check(.duration(.milliseconds(Int64((d * 1000).rounded()))), key) }
            return .failure(wrongType)
        case .cpuList:
            // A single CPU may be written as a bare integer.
            if let i = raw.int { return value(fromText: String(i), for: key) }
            guard let s = raw.string else { return .failure(wrongType) }
            return value(fromText: s, for: key)
        case .retention:
            // An entry count may be written as a bare integer.
            if let i = raw.int { return value(fromText: String(i), for: key) }
            guard let s = raw.string else { return .failure(wrongType) }
            return value(fromText: s, for: key)
        case .string, .source, .listen, .redisURL, .choice:
            guard let s = raw.string else { return .failure(wrongType) }
            return value(fromText: s, for: key)
        }
    }

    /// Types a value written as text (environment, flags, or a TOML string).
    static func value(fromText text: String, for key: ConfigKey) -> Result<ConfigValue, ConfigProblemDetail> {
        switch key.kind {
        case .string:
            return .success(.string(text))
        case .integer:
            guard let i = Int(text.trimmingCharacters(in: .whitespaces)) else {
                return .failure(.init("\"\(text)\" is not an integer", fix: "write \(key.kind.expected), e.g. \(key.defaultValue)"))
            }
            return check(.integer(i), key)
        case .byteSize:
            guard let i = parseByteSize(text) else {
                return .failure(.init("\"\(text)\" is not a size", fix: "write \(key.kind.expected)"))
            }
            return check(.integer(i), key)
        case .bool:
            switch text.lowercased() {
            case "true", "1", "yes", "on": return .success(.bool(true))
            case "false", "0", "no", "off": return .success(.bool(false))
            default: return .failure(.init("\"\(text)\" is not a boolean", fix: "write true or false"))
            }
        case .stringList:
            let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            return check(.stringList(parts), key)
        case .duration:
            if let d = parseDuration(text) { return check(.duration(d), key) }
            return .failure(.init("\"\(text)\" is not a duration", fix: "write \(key.kind.expected)"))
        case .source:
            return SourceSpec.parse(text).map { .source($0) }
        case .listen:
            return ListenAddress.parse(text).map { .listen($0) }
        case .redisURL:
            return checkRedisURL(text).map { .string($0) }
        case .cpuList:
            switch CPUAffinity.parse(text) {
            case .success(let set): return .success(.string(set.description))
            case .failure(let error):
                return .failure(.init(error.description, fix: "write \(key.kind.expected), or \"\" not to pin"))
            }
        case .retention:
            return StreamRetention.parse(text).map { .string($0?.description ?? "") }
        case .choice(let words):
            guard words.contains(text) else {
                let guess = closestMatch(to: text, in: words).map { " (did you mean \"\($0)\"?)" } ?? ""
                return .failure(.init("\"\(text)\" is not allowed\(guess)", fix: "use \(key.kind.expected)"))
            }
            return .success(.string(text))
        }
    }

    private static func check(_ v: ConfigValue, _ key: ConfigKey) -> Result<ConfigValue, ConfigProblemDetail> {
        switch (key.kind, v) {
        case (.integer(let r), .integer(let i)), (.byteSize(let r), .integer(let i)):
            if !r.contains(i) {
                return .failure(.init("\(i) is out of range", fix: "use \(key.kind.expected) (default \(key.defaultValue))"))
            }
        case (.duration(let r), .duration(let d)):
            if !r.contains(d) {
                return .failure(.init("\(formatDuration(d)) is out of range", fix: "use \(key.kind.expected) (default \(key.defaultValue))"))
            }
        case (.stringList(let n), .stringList(let l)):
            if l.count < n {
                return .failure(.init("has \(l.count) entries, needs at least \(n)", fix: "list at least one directory, e.g. \(key.defaultValue)"))
            }
            if l.contains(where: \.isEmpty) {
                return .failure(.init("has an empty entry", fix: "remove the empty string"))
            }
        default: break
        }
        return .success(v)
    }

    private static func checkRedisURL(_ url: String) -> Result<String, ConfigProblemDetail> {
        let fix = "write \(ConfigKind.redisURL.expected)"
        // Messages quote the URL without its password.
        let text = Text.redactingCredentials(url)
        if url.isEmpty { return .success(url) }
        if url.hasPrefix("unix://") {
            return url.count > "unix://".count && url.dropFirst("unix://".count).hasPrefix("/")
                ? .success(url) : .failure(.init("\"\(text)\" has no absolute socket path", fix: fix))
        }
        guard let scheme = ["redis://", "rediss://"].first(where: url.hasPrefix) else {
            return .failure(.init("\"\(text)\" is not a redis://, rediss:// or unix:// URL", fix: fix))
        }
        var rest = url.dropFirst(scheme.count)
        if scheme == "rediss://", rest.contains("?") {
            return .failure(.init("has query parameters; rediss:// takes none",
                                  fix: "set the TLS files and server name with redis.tls_ca_file, redis.tls_cert_file, redis.tls_key_file and redis.tls_server_name"))
        }
        if let at = rest.lastIndex(of: "@") { rest = rest[rest.index(after: at)...] }  // credentials
        let hostPort = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        if hostPort.count == 2, !hostPort[1].isEmpty, Int(hostPort[1]) == nil {
            return .failure(.init("database \"\(hostPort[1])\" is not a number", fix: fix))
        }
        let hp = hostPort[0]
        if hp.isEmpty { return .failure(.init("\"\(text)\" has no host", fix: fix)) }
        if let colon = hp.lastIndex(of: ":"), !hp.hasSuffix("]") {
            let port = hp[hp.index(after: colon)...]
            guard let p = Int(port), (1...65535).contains(p) else {
                return .failure(.init("port \"\(port)\" is not a number from 1 to 65535", fix: fix))
            }
        }
        return .success(url)
    }
}

/// Finds the line of a key in TOML text, for error messages (TOMLKit does not report value positions).
struct TOMLLineIndex {
    private var keyLines: [String: Int] = [:]
    private var tableLines: [String: Int] = [:]

    init(_ text: String) {
        var table: String?
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("[") && !line.hasPrefix("[[") {
                let name = line.dropFirst().prefix { $0 != "]" }.trimmingCharacters(in: .whitespaces)
                table = name
                tableLines[name] = tableLines[name] ?? i + 1
                continue
            }
            guard let eq = line.firstIndex(of: "="), !line.hasPrefix("#") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "\"", with: "")
            let full = table.map { "\($0).\(key)" } ?? key
            keyLines[full] = keyLines[full] ?? i + 1
        }
    }

    func line(ofKey key: String, inTable table: String?) -> Int? {
        keyLines[table.map { "\($0).\(key)" } ?? key] ?? (table.flatMap { keyLines[$0 + "." + key] })
    }

    func line(ofTable name: String) -> Int? { tableLines[name] }
}
