import ArgumentParser
import CPlugboard
import PlugboardCore
import PlugboardHost
import PlugboardManifest
import PlugboardManifestTools
import PlugboardSigning

/// `plugboard inspect`: shows what a .pbm (or plugin.toml, or every .pbm of a directory) declares,
/// and whether it is valid: its library's hash and ELF headers (the checks the host makes before
/// `dlopen`), and who signed it. A `.so` is checked on its own (ELF headers only).
///
/// Exit codes: 0 every manifest valid; 1 at least one rejected (each reason is printed). A missing or
/// unverified signature is shown, not an error (the host decides with plugins.require_signature).
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a .pbm manifest, a plugin.toml, or every .pbm in a directory: fields, rules, config, library check.")

    @Argument(help: "A .pbm file, a plugin.toml, a plugin directory, or a plugin .so (ELF checks only).")
    var path: String

    @Option(name: .customLong("trusted-keys"), help: "The trusted public keys' directory the signature is verified against.")
    var trustedKeys: String = "/etc/plugboard/trusted.d"

    @Flag(help: "Print JSON for machines.")
    var json = false

    struct Inspected: Encodable {
        var file: String
        var valid: Bool
        var manifest: ManifestJSON? = nil
        var library_path: String? = nil
        var library_status: String? = nil
        /// The key id the `.pbm.sig` names (nil: not signed or unreadable).
        var signed_by: String? = nil
        /// valid, missing, unknown-key, bad-signature or unusable.
        var signature: String? = nil
        var signature_detail: String? = nil
        /// Largest record the plugin's `publish` may send on this host (plugins.max_record_bytes).
        var publish_max_record_bytes: Int? = nil
        var error: ErrorJSON? = nil
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
            if r.valid && r.manifest != nil { r.publish_max_record_bytes = limit.bytes }
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
                    if let d = r.signature_detail { print("  signature: \(d)") }
                    print("  publish:     records up to \(limit.bytes) bytes, topics up to \(OutputQueue.maxTopicBytes) bytes; larger get PB_ERR_INVALID (plugins.max_record_bytes, from \(limit.origin))")
                } else if r.manifest == nil, r.valid, let lp = r.library_path, let st = r.library_status {
                    print("\(lp): \(st)")
                } else if let e = r.error {
                    Output.stderr("error: \(e.message)")
                }
            }
        }
        if results.contains(where: { !$0.valid }) { throw ExitCode(1) }
    }

    func inspect(_ file: String) -> Inspected {
        if file.hasSuffix(".so") {
            if let refused = elfRefusal(file) {
                return Inspected(file: file, valid: false, library_path: file, library_status: "refused", error: ErrorJSON(refused))
            }
            return Inspected(file: file, valid: true, library_path: file,
                             library_status: "ELF headers valid, exports \(PB_ENTRY_SYMBOL) (the checks the host makes before dlopen)")
        }
        do {
            let m = file.hasSuffix(".toml") ? try ManifestTOML.parse(contentsOf: file) : try PBMReader.decode(contentsOf: file)
            var r = Inspected(file: file, valid: true, manifest: ManifestJSON(m))
            if !file.hasSuffix(".toml") {
                let p = FileIO.join(FileIO.directory(of: file), m.library)
                r.library_path = p
                if FileKey.of(path: p) == nil { r.library_status = "missing" }
                else if let refused = elfRefusal(p) {
                    r.valid = false
                    r.library_status = "refused: \(refused.problem)"
                    r.error = ErrorJSON(refused)
                } else if let h = try? SHA256.hash(fileAt: p) {
                    r.library_status = h == m.librarySHA256 ? "matches" : "stale manifest: differs from the packed library (run plugboard pack)"
                }
                let bytes = try FileIO.readAll(file, check: .format, field: "file")
                let verdict = TrustedKeys.load(directory: trustedKeys).verify(manifestAt: file, bytes: bytes)
                r.signed_by = verdict.keyID
                r.signature = switch verdict {
                case .valid: "valid"
                case .missing: "missing"
                case .unknownKey: "unknown-key"
                case .badSignature: "bad-signature"
                case .unusable: "unusable"
                }
                r.signature_detail = verdict.summary + (verdict == .missing ? "" : " (trusted keys: \(trustedKeys))")
            }
            return r
        } catch {
            return Inspected(file: file, valid: false, error: ErrorJSON(ManifestError.from(error, file: file)))
        }
    }

    /// The host's ELF checks of `library` (`ELFImage.inspect`), as a manifest error, or nil.
    func elfRefusal(_ library: String) -> ManifestError? {
        do {
            _ = try ELFImage.inspect(path: library)
            return nil
        } catch {
            let check = error.headerCheck ?? (reason: "\(error)", fix: "check the path and its permissions")
            return ManifestError(.library, file: library, field: "plugin.library", problem: check.reason, fix: check.fix)
        }
    }
}
