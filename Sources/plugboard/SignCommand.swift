import ArgumentParser
import PlugboardManifest
import PlugboardSigning

/// `plugboard sign`: signs a packed `.pbm` with a private key, writing `<name>.pbm.sig` next to it.
///
/// Exit codes: 0 signed; 1 the manifest or key was rejected, or the signature could not be written.
struct SignCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign",
        abstract: "Sign a .pbm manifest (Ed25519) with a key from `plugboard keygen`: writes <name>.pbm.sig next to it.",
        discussion: "The signature covers the .pbm's bytes, which record the SHA-256 of the .so: sign after `plugboard pack`, and again after every pack. Hosts with plugins.require_signature = true load only plugins signed by a key in plugins.trusted_keys_dir. See docs/manifest.md, \"Signatures\".")

    @Argument(help: "The .pbm manifest to sign.")
    var manifest: String

    @Option(help: "The private key file `plugboard keygen` wrote.")
    var key: String

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        do {
            let signing = try SigningKey.read(from: key)
            let (signature, file) = try PluginSignature.sign(manifestAt: manifest, with: signing)
            if json {
                struct Signed: Encodable { var manifest: String; var signature_file: String; var key_id: String }
                print(Output.json(Signed(manifest: manifest, signature_file: file, key_id: signature.keyID)))
            } else {
                print("signed \(manifest) with key \(signature.keyID) -> \(file)")
            }
        } catch {
            let e = ManifestError.from(error, file: manifest)
            if json { print(Output.json(ErrorJSON(e))) } else { Output.stderr("error: \(e)") }
            throw ExitCode(1)
        }
    }
}
