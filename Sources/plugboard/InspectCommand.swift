import ArgumentParser
import PlugboardManifest
import PlugboardManifestTools

/// `plugboard inspect`: shows what a .pbm (or plugin.toml, or every .pbm of a directory) declares,
/// and whether it is valid.
///
/// Exit codes: 0 every manifest valid; 1 at least one rejected (each reason is printed).
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a .pbm manifest, a plugin.toml, or every .pbm in a directory: fields, rules, config, library check.")

    @Argument(help: "A .pbm file, a plugin.toml, or a plugin directory.")
    var path: String

    @Flag(help: "Print JSON for machines.")
    var json = false

    struct Inspected: Encodable {
        var file: String
        var valid: Bool
        var manifest: ManifestJSON?
        var library_path: String?
        var library_status: String?
        var error: ErrorJSON?
    }

    func run() throws {
        let files: [String]
        if FileKey.of(path: path) == nil, let names = FileIO.list(path) {
            files = names.filter { $0.hasSuffix(".pbm") }.map { FileIO.join(path, $0) }
            if files.isEmpty { throw ValidationError("no .pbm files in \(path) (pack them with `plugboard pack`)") }
        } else {
            files = [path]
        }
        let results = files.map(inspect)
        if json {
            if results.count == 1 && files == [path] { print(Output.json(results[0])) } else { print(Output.json(results)) }
        } else {
            for (i, r) in results.enumerated() {
                if i > 0 { print("") }
                if let m = r.manifest, r.valid {
                    print("\(r.file): valid manifest")
                    Output.describe(m.source, indent: "  ").forEach { print($0) }
                    if let lp = r.library_path, let st = r.library_status { print("  library file: \(lp): \(st)") }
                } else if let e = r.error {
                    Output.stderr("error: \(e.message)")
                }
            }
        }
        if results.contains(where: { !$0.valid }) { throw ExitCode(1) }
    }

    func inspect(_ file: String) -> Inspected {
        do {
            let m = file.hasSuffix(".toml") ? try ManifestTOML.parse(contentsOf: file) : try PBMReader.decode(contentsOf: file)
            var lp: String?, status: String?
            if !file.hasSuffix(".toml") {
                let p = FileIO.join(FileIO.directory(of: file), m.library)
                lp = p
                if FileKey.of(path: p) == nil { status = "missing" }
                else if let h = try? SHA256.hash(fileAt: p) { status = h == m.librarySHA256 ? "matches" : "stale manifest: differs from the packed library (run plugboard pack)" }
            }
            return Inspected(file: file, valid: true, manifest: ManifestJSON(m), library_path: lp, library_status: status, error: nil)
        } catch {
            return Inspected(file: file, valid: false, manifest: nil, library_path: nil, library_status: nil,
                             error: ErrorJSON(ManifestError.from(error, file: file)))
        }
    }
}
