import ArgumentParser
import Foundation
import PlugboardCore
import PlugboardHost

/// `plugboard config`: configuration tooling.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Inspect the daemon's configuration.",
        subcommands: [Check.self]
    )

    /// `plugboard config check [FILE]`: validates and prints the effective configuration.
    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Validate the configuration and print the effective values with where each came from.",
            discussion: """
                Reads FILE, else $PLUGBOARD_CONFIG, else /etc/plugboard/plugboard.toml, else ./plugboard.toml;
                then PLUGBOARD_* environment variables; then --set flags. Exits 0 when valid, 1 with every
                problem listed otherwise (docs/operations.md lists every key).
                """
        )

        @Argument(help: "Configuration file to check (default: the daemon's search order).")
        var file: String?

        @Option(name: .customLong("set"), help: ArgumentHelp("Override a key, as the daemon's --set does.", valueName: "KEY=VALUE"))
        var overrides: [String] = []

        @Flag(help: "Print JSON instead of text.")
        var json = false

        func run() throws {
            var parsed: [ConfigOverride] = []
            for text in overrides {
                guard let o = ConfigOverride.parse(text) else {
                    throw ValidationError("--set \(text): expected KEY=VALUE, e.g. --set performance.batch_size=20")
                }
                parsed.append(o)
            }
            let loader = ConfigLoader()
            for warning in loader.unknownEnvironmentVariables() {
                FileHandle.standardError.write(Data("warning: environment variable \(warning) is not a configuration key; ignored\n".utf8))
            }
            var problems: [ConfigProblem] = []
            do {
                let effective = try loader.load(file: file, overrides: parsed)
                // What `run`, `serve` and `monitor` start with: the same mapping they use, which
                // also checks the values against this machine (CPUs), as they would at start.
                let settings = try HostSettings(config: effective)
                let places = HostSettings.checkPlaces(effective)
                problems = places.problems
                let warnings = settings.warnings + places.warnings + (settings.monitoring.exposureWarning.map { ["serve: " + $0] } ?? [])
                if json {
                    let pairs = settings.summary.map { "\(Text.jsonQuoted($0.key)):\(Text.jsonQuoted($0.value))" }
                    // renderJSON is one object: add the verdict, "host_settings" and "warnings" as its last members.
                    print(String(effective.renderJSON().dropLast()) + ",\"host_settings\":{" + pairs.joined(separator: ",") + "}"
                          + ",\"warnings\":[" + warnings.map(Text.jsonQuoted).joined(separator: ",") + "]"
                          + ",\"valid\":\(problems.isEmpty),\"problems\":" + Self.problemsJSON(problems.map(Self.problem)) + "}")
                } else {
                    print(effective.render())
                    print("# host settings (what run, serve and monitor start with)")
                    print("host settings: \(settings.summaryLine)")
                    // stdout is block-buffered into a pipe: flushed first, the warnings below
                    // cannot land in the middle of a line of it (`2>&1`, a test reading both).
                    fflush(nil)  // every output stream; `stdout` itself is not concurrency-safe to name
                    for warning in warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
                    if !problems.isEmpty {
                        FileHandle.standardError.write(Data((ConfigError(problems: problems).description + "\n").utf8))
                    }
                }
            } catch {
                // Problems as JSON on stdout too, for tools; as text on stderr otherwise.
                if json {
                    let list: [[String: String]] = (error as? ConfigError)?.problems.map(Self.problem) ?? [["message": "\(error)"]]
                    print("{\"valid\":false,\"problems\":" + Self.problemsJSON(list) + "}")
                } else {
                    FileHandle.standardError.write(Data("\(error)\n".utf8))
                }
                throw ExitCode(1)
            }
            if !problems.isEmpty { throw ExitCode(1) }
        }

        /// One problem as JSON members: where, which key, what and the fix, and the whole message.
        static func problem(_ p: ConfigProblem) -> [String: String] {
            ["origin": p.origin.description, "key": p.key, "problem": p.problem, "fix": p.fix, "message": p.description]
        }

        static func problemsJSON(_ list: [[String: String]]) -> String {
            "[" + list.map { p in
                "{" + p.sorted { $0.key < $1.key }.map { "\(Text.jsonQuoted($0.key)):\(Text.jsonQuoted($0.value))" }.joined(separator: ",") + "}"
            }.joined(separator: ",") + "]"
        }
    }
}

