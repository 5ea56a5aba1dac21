import ArgumentParser
import PlugboardManifest
import PlugboardManifestTools

/// `plugboard pack`: compiles plugin.toml (and the built .so's SHA-256) into a binary .pbm manifest.
///
/// Exit codes: 0 packed; 1 the manifest or library was rejected (every problem printed with file,
/// line, field and fix).
struct PackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pack",
        abstract: "Compile plugin.toml into a binary .pbm manifest next to the plugin's .so.",
        discussion: "The .pbm records the SHA-256 of the library; the host refuses the .so if it changes without a re-pack. See docs/manifest.md.")

    @Argument(help: "plugin.toml, or a directory containing it.")
    var path: String = "."

    @Option(help: "The built .so (default: plugin.library next to plugin.toml).")
    var library: String?

    @Option(name: [.short, .long], help: "Where to write the .pbm (default: <name>.pbm next to the library).")
    var output: String?

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let toml = path.hasSuffix(".toml") ? path : FileIO.join(path, "plugin.toml")
        do {
            let r = try Packer.pack(tomlPath: toml, libraryPath: library, output: output)
            if json {
                struct Packed: Encodable { var output: String; var bytes: Int; var manifest: ManifestJSON }
                print(Output.json(Packed(output: r.output, bytes: r.bytes, manifest: ManifestJSON(r.manifest))))
            } else {
                print("packed \(r.manifest.name) \(r.manifest.version) -> \(r.output) (\(r.bytes) bytes, \(r.manifest.rules.count) rule(s), library sha256 \(r.manifest.librarySHA256!.hexString.prefix(16))...)")
            }
        } catch let e as ManifestError {
            // Show every problem in the TOML, not just the first.
            var problems = [e]
            if e.check == .toml || e.check == .field || e.check == .abi,
               let bytes = try? FileIO.readAll(toml, check: .toml, field: "file"), let text = String(validating: bytes, as: UTF8.self) {
                let all = ManifestTOML.check(text, file: toml).1
                if !all.isEmpty { problems = all }
            }
            if json { print(Output.json(problems.map(ErrorJSON.init))) } else { problems.forEach { Output.stderr("error: \($0)") } }
            throw ExitCode(1)
        }
    }
}
