import ArgumentParser
import PlugboardCore
import PlugboardHost
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
        /// Largest record the plugin's `publish` may send on this host (plugins.max_record_bytes).
        var publish_max_record_bytes: Int?
        var error: ErrorJSON?
    }

    /// This host's publish limit and where it comes from (the daemon's configuration, as `run`
    /// would read it; the default when that configuration cannot be read).
    static func publishLimit() -> (bytes: Int, origin: String) {
        guard let effective = try? ConfigLoader().load() else {
            return (DaemonConfig.defaults.plugins.maxRecordBytes, "default; the configuration could not be read")
        }
        return (effective.daemon.plugins.maxRecordBytes, effective.origin("plugins.max_record_bytes").description)
    }

    func run() throws {
        let files: [String]
        if FileKey.of(path: path) == nil, let names = FileIO.list(path) {
            files = names.filter { $0.hasSuffix(".pbm") }.map { FileIO.join(path, $0) }
            if files.isEmpty { throw ValidationError("no .pbm files in \(path) (pack them with `plugboard pack`)") }
        } else {
            files = [path]
        }
        let limit = Self.publishLimit()
        let results = files.map(inspect).map { r in
            var r = r
            if r.valid { r.publish_max_record_bytes = limit.bytes }
            return r
        }
        if json {
            if results.count == 1 && files == [path] { print(Output.json(results[0])) } else { print(Output.json(results)) }
        } else {
            for (i, r) in results.enumerated() {
                if i > 0 { print("") }
                if let m = r.manifest, r.valid {
                    print("\(r.file): valid manifest")
                    Output.describe(m.source, indent: "  ").forEach { print($0) }
                    if let lp = r.library_path, let st = r.library_status { print("  library file: \(lp): \(st)") }
                    print("  publish:     records up to \(limit.bytes) bytes, topics up to \(OutputQueue.maxTopicBytes) bytes; larger get PB_ERR_INVALID (plugins.max_record_bytes, from \(limit.origin))")
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
            return Inspected(file: file, valid: true, manifest: ManifestJSON(m), library_path: lp, library_status: status,
                             publish_max_record_bytes: nil, error: nil)
        } catch {
            return Inspected(file: file, valid: false, manifest: nil, library_path: nil, library_status: nil,
                             publish_max_record_bytes: nil, error: ErrorJSON(ManifestError.from(error, file: file)))
        }
    }
}
