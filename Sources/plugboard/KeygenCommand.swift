import ArgumentParser
import PlugboardManifest
import PlugboardSigning

/// `plugboard keygen`: makes an Ed25519 key pair for signing plugin manifests.
///
/// Exit codes: 0 written; 1 a file exists already or cannot be written (nothing is overwritten).
struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Make an Ed25519 key pair for `plugboard sign`: a private key file (mode 0600) and a public key file (.pub).",
        discussion: "The key id is the first 16 hex digits of the SHA-256 of the public key. Copy the .pub file into the hosts' plugins.trusted_keys_dir (default /etc/plugboard/trusted.d); keep the private key off them. See docs/security.md.")

    @Option(name: [.short, .long], help: "The private key file to write; the public key goes to the same path plus .pub.")
    var output: String = "plugboard-signing.key"

    @Option(help: "A note stored in the public key file (who the signer is).")
    var comment: String = ""

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let key = SigningKey.generate()
        let publicPath = output + ".pub"
        do {
            try key.write(privateTo: output, publicTo: publicPath, comment: comment)
        } catch {
            Output.stderr("error: \(error)")
            throw ExitCode(1)
        }
        if json {
            struct Made: Encodable { var key_id: String; var private_key: String; var public_key: String }
            print(Output.json(Made(key_id: key.keyID, private_key: output, public_key: publicPath)))
        } else {
            print("key \(key.keyID): private key \(output) (mode 0600, keep it secret), public key \(publicPath) (copy it into the hosts' trusted keys directory)")
        }
    }
}
