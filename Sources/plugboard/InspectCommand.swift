import ArgumentParser
import PlugboardManifest
import PlugboardManifestTools

/// `plugboard inspect`: shows what a .pbm (or plugin.toml) declares, and whether it is valid.
///
/// Exit codes: 0 valid; 1 rejected (the reason is printed).
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a .pbm manifest or plugin.toml: fields, rules, config, and whether the library matches.")

    @Argument(help: "A .pbm file or a plugin.toml.")
    var file: String

    @Flag(help: "Print JSON for machines.")
    var json = false

    func run() throws {
        do {
            let m = file.hasSuffix(".toml") ? try ManifestTOML.parse(contentsOf: file) : try PBMReader.decode(contentsOf: file)
            // For a .pbm, check the library next to it, as the host would.
            var library: (path: String, status: String)?
            if !file.hasSuffix(".toml") {
                let path = FileIO.join(FileIO.directory(of: file), m.library)
                if FileKey.of(path: path) == nil { library = (path, "missing") }
                else if let h = try? SHA256.hash(fileAt: path) { library = (path, h == m.librarySHA256 ? "matches" : "differs from the packed library (re-run plugboard pack)") }
            }
            if json {
                struct Inspected: Encodable { var file: String; var valid: Bool; var manifest: ManifestJSON; var library_path: String?; var library_status: String? }
                print(Output.json(Inspected(file: file, valid: true, manifest: ManifestJSON(m), library_path: library?.path, library_status: library?.status)))
            } else {
                print("\(file): valid manifest")
                Output.describe(m, indent: "  ").forEach { print($0) }
                if let library { print("  library file: \(library.path): \(library.status)") }
            }
        } catch {
            let e = ManifestError.from(error, file: file)
            if json {
                struct Rejected: Encodable { var file: String; var valid: Bool; var error: ErrorJSON }
                print(Output.json(Rejected(file: file, valid: false, error: ErrorJSON(e))))
            } else {
                Output.stderr("error: \(e)")
            }
            throw ExitCode(1)
        }
    }
}
