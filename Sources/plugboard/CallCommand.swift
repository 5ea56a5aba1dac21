import ArgumentParser
import Foundation
import PlugboardFFI
import PlugboardManifest
import PlugboardManifestTools
import PlugboardCore
import PlugboardSystem

/// `plugboard call MANIFEST SYMBOL [ARGS...]`: calls a function a plugin declares in `[exports]`,
/// through libffi, with arguments given as text.
struct CallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "call",
        abstract: "Call a function a plugin exports (declared in its manifest's [exports]) with arguments as text.",
        discussion: """
            The library next to MANIFEST (a .pbm or plugin.toml) is opened without initialising the
            plugin, SYMBOL is looked up and called through libffi with its declared C signature;
            the result is printed. Numbers, bools and strings (const char *) can be passed and
            returned (docs/manifest.md, "[exports]").
            """)

    @Option(help: .hidden)
    var user: String?

    @Argument(help: "The plugin's manifest: a .pbm or a plugin.toml.")
    var manifest: String

    @Argument(help: "The exported function, as declared in [exports].")
    var symbol: String

    @Argument(parsing: .captureForPassthrough, help: "The arguments, one per parameter.")
    var arguments: [String] = []

    func run() throws {
        if let user {
            // `plugboard ctl call`: the daemon runs the call as the plugins' account, like a worker.
            let parts = user.split(separator: ":").compactMap { UInt32($0) }
            guard parts.count == 2 else { throw CLI.Failure("--user \(user): expected UID:GID") }
            do throws(Errno) {
                try LockDown.apply(account: LockDown.Account(name: "", uid: parts[0], gid: parts[1]))
            } catch {
                throw CLI.Failure("cannot run as \(user): \(error)")
            }
        }
        let m: Manifest
        do {
            m = manifest.hasSuffix(".toml") ? try ManifestTOML.parse(contentsOf: manifest) : try PBMReader.decode(contentsOf: manifest)
        } catch {
            throw CLI.Failure("\(error)")
        }
        guard let export = m.exports.first(where: { $0.symbol == symbol }) else {
            let names = m.exports.map(\.symbol)
            let guess = Text.closestMatch(to: symbol, in: names).map { " (did you mean \"\($0)\"?)" } ?? ""
            throw CLI.Failure("\(manifest): exports.\(symbol): not declared in [exports]\(guess) (fix: declare it as \(symbol) = \"return-type (parameters)\", or call one of: \(names.joined(separator: ", ")))")
        }
        let signature: CSignature
        switch CSignature.parse(export.signature) {
        case .success(let s): signature = s
        case .failure(let u): throw CLI.Failure("\(manifest): exports.\(symbol): \(u.problem) (fix: \(u.fix))")
        }
        let library = ((manifest as NSString).deletingLastPathComponent as NSString).appendingPathComponent(m.library)
        let handle: DynamicLibrary
        do throws(DynamicLinkError) {
            handle = try DynamicLibrary.open(library, [.now, .local])
        } catch {
            throw CLI.Failure("\(library): cannot open: \(error.message) (fix: build the plugin next to its manifest)")
        }
        let address: UnsafeMutableRawPointer
        do throws(DynamicLinkError) {
            address = try handle.symbol(symbol)
        } catch {
            throw CLI.Failure("\(library): exports.\(symbol): the library does not export it (\(error.message)) (fix: export it with default visibility, or correct [exports])")
        }
        do {
            print(try ForeignCall(symbol: symbol, signature: signature, address: address).call(arguments))
        } catch {
            throw CLI.Failure("\(error)")
        }
    }
}
