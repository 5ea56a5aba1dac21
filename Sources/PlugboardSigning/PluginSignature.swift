import Crypto
import Foundation
import PlugboardManifest
import PlugboardSystem

/// A detached signature of a `.pbm`: the file `<name>.pbm.sig` next to it (docs/manifest.md,
/// "Signatures"). Ed25519 over the `.pbm`'s bytes exactly as they are on disk; the `.pbm` records
/// the `.so`'s SHA-256, which the registry checks before a plugin loads, so the signature covers
/// the code too.
///
///     plugboard-signature 1
///     key-id 3f2a9c1b7d4e5a60
///     algorithm ed25519
///     signature <128 hex digits>
public struct PluginSignature: Sendable, Equatable {
    public var keyID: String
    public var signature: [UInt8]

    public init(keyID: String, signature: [UInt8]) {
        self.keyID = keyID
        self.signature = signature
    }

    static let header = "plugboard-signature 1"

    /// Where the signature of `manifestPath` lives.
    public static func path(for manifestPath: String) -> String { manifestPath + ".sig" }

    public var fileText: String {
        "\(Self.header)\nkey-id \(keyID)\nalgorithm ed25519\nsignature \(signature.hexString)\n"
    }

    /// Signs the `.pbm` at `manifestPath` with `key` and writes `<manifestPath>.sig` (atomically,
    /// replacing an older signature).
    /// - Returns: the signature written and its file.
    /// - Throws: `ManifestError` naming the file that could not be read or written.
    @discardableResult
    public static func sign(manifestAt manifestPath: String, with key: SigningKey) throws -> (PluginSignature, String) {
        let bytes = try FileIO.readAll(manifestPath, check: .format, field: "file")
        _ = try PBMReader.decode(bytes, file: manifestPath)  // only a valid manifest is signed
        let sig = PluginSignature(keyID: key.keyID, signature: try key.sign(bytes))
        let out = path(for: manifestPath)
        try FileIO.writeAtomically(Array(sig.fileText.utf8), to: out, check: .signature, field: "file")
        return (sig, out)
    }

    /// Reads a signature file.
    /// - Throws: `ManifestError` (`signature`) naming the file and the field.
    public static func read(from path: String) throws -> PluginSignature {
        let fix = "sign the manifest again with `plugboard sign`"
        let fields = try KeyFile.fields(path, header: header, required: ["key-id", "algorithm", "signature"],
                                        what: "signature", fix: fix)
        guard fields["algorithm"] == "ed25519" else {
            throw ManifestError(.signature, file: path, field: "algorithm", problem: "\"\(fields["algorithm"]!)\" is not ed25519", fix: fix)
        }
        guard let sig = [UInt8](hex: fields["signature"]!), sig.count == 64 else {
            throw ManifestError(.signature, file: path, field: "signature", problem: "not 128 hex digits of an Ed25519 signature", fix: fix)
        }
        return PluginSignature(keyID: fields["key-id"]!, signature: sig)
    }
}

/// What checking a manifest's signature found.
public enum SignatureVerdict: Sendable, Equatable {
    /// Signed by a trusted key, and the signature verifies over the `.pbm` bytes.
    case valid(keyID: String, keyFile: String)
    /// No `<name>.pbm.sig`.
    case missing
    /// Signed by a key that is not in the trusted-keys directory.
    case unknownKey(keyID: String)
    /// Signed by a trusted key, but the signature does not verify: the `.pbm` changed after signing,
    /// or the signature was made over another file or with another key of that id.
    case badSignature(keyID: String)
    /// The signature file is not a signature (or failed the file trust check): the reason.
    case unusable(String)

    /// The key id the signature names, when it could be read.
    public var keyID: String? {
        switch self {
        case .valid(let id, _), .unknownKey(let id), .badSignature(let id): id
        case .missing, .unusable: nil
        }
    }

    /// One line for `plugboard inspect`.
    public var summary: String {
        switch self {
        case .valid(let id, let file): "signed by key \(id), verified (trusted key \(file))"
        case .missing: "not signed"
        case .unknownKey(let id): "signed by key \(id), which is not a trusted key: not verified"
        case .badSignature(let id): "signed by key \(id): BAD SIGNATURE (the manifest changed after signing)"
        case .unusable(let why): "signature unusable: \(why)"
        }
    }
}

/// The public keys the host trusts to sign plugins: every `*.pub` file in one directory
/// (`plugins.trusted_keys_dir`, default `/etc/plugboard/trusted.d`).
public struct TrustedKeys: Sendable {
    /// Key id -> key.
    public var keys: [String: PublicSigningKey]
    public let directory: String
    /// Key files that were not used, each with the reason (unreadable, malformed, untrusted file).
    public var problems: [String]

    public init(directory: String, keys: [PublicSigningKey] = [], problems: [String] = []) {
        self.directory = directory
        self.keys = Dictionary(keys.map { ($0.keyID, $0) }, uniquingKeysWith: { a, _ in a })
        self.problems = problems
    }

    /// Reads every `*.pub` in `directory`. `untrusted` is the host's file trust check (nil: use the
    /// file); a directory or key file it refuses contributes no key, and the reason is in `problems`.
    public static func load(directory: String, untrusted: (String) -> FileTrust.Problem? = { _ in nil }) -> TrustedKeys {
        guard let names = FileIO.list(directory) else {
            return TrustedKeys(directory: directory, problems: ["\(directory): the trusted keys directory cannot be read (no key is trusted; fix: create it and copy the signers' .pub files into it)"])
        }
        if let problem = untrusted(directory) {
            return TrustedKeys(directory: directory, problems: ["the trusted keys directory is not trusted, so no key in it is: \(problem)"])
        }
        var keys: [PublicSigningKey] = [], problems: [String] = []
        for name in names.sorted() where name.hasSuffix(".pub") && !name.hasPrefix(".") {
            let path = FileIO.join(directory, name)
            if let problem = untrusted(path) {
                problems.append("trusted key file not used: \(problem)")
                continue
            }
            do { keys.append(try PublicSigningKey.read(from: path)) } catch {
                problems.append("trusted key file not used: \(error)")
            }
        }
        return TrustedKeys(directory: directory, keys: keys, problems: problems)
    }

    /// Checks a resolved manifest's signature, using and updating the check `registry` remembers
    /// (`VerifiedSignature`): when the `.pbm`, the `.sig` (keys with ctime) and the trusted key of
    /// that id are all as they were when it last verified, it is not verified again. Otherwise as
    /// `verify(manifestAt:bytes:untrusted:)`, and a valid result is remembered.
    public func verify(_ resolved: ResolvedManifest, registry: ManifestRegistry,
                       untrusted: (String) -> FileTrust.Problem? = { _ in nil }) -> SignatureVerdict {
        let sigPath = PluginSignature.path(for: resolved.manifestPath)
        if let known = resolved.verifiedSignature, let key = keys[known.keyID], key.raw == known.publicKey,
           FileKey.of(path: sigPath) == known.signatureKey {
            // The .sig's owner and mode cannot change without moving its ctime (its key); its
            // directory is the .pbm's, which the host checks before loading.
            return .valid(keyID: known.keyID, keyFile: key.file)
        }
        let before = FileKey.of(path: sigPath)
        let verdict = verify(manifestAt: resolved.manifestPath, bytes: resolved.manifestBytes, untrusted: untrusted)
        if case .valid(let id, _) = verdict, let before, FileKey.of(path: sigPath) == before, let key = keys[id] {
            registry.recordSignature(VerifiedSignature(signatureKey: before, keyID: id, publicKey: key.raw),
                                     forManifestAt: resolved.manifestPath)
        } else {
            registry.recordSignature(nil, forManifestAt: resolved.manifestPath)
        }
        return verdict
    }

    /// Checks the signature of the manifest at `manifestPath` whose bytes are `manifestBytes` (the
    /// bytes the manifest was decoded from). `untrusted` is applied to the signature file.
    public func verify(manifestAt manifestPath: String, bytes manifestBytes: [UInt8],
                       untrusted: (String) -> FileTrust.Problem? = { _ in nil }) -> SignatureVerdict {
        let sigPath = PluginSignature.path(for: manifestPath)
        guard FileKey.of(path: sigPath) != nil else {
            return access(sigPath, F_OK) == 0 ? .unusable("\(sigPath) is not a regular file") : .missing
        }
        if let problem = untrusted(sigPath) { return .unusable("the signature file is not trusted: \(problem)") }
        let sig: PluginSignature
        do { sig = try PluginSignature.read(from: sigPath) } catch { return .unusable("\(error)") }
        guard let key = keys[sig.keyID] else { return .unknownKey(keyID: sig.keyID) }
        guard key.key.isValidSignature(sig.signature, for: manifestBytes) else { return .badSignature(keyID: sig.keyID) }
        return .valid(keyID: sig.keyID, keyFile: key.file)
    }

    /// The reason to refuse a plugin under `plugins.require_signature = true`, or nil when its
    /// signature is valid. Names the manifest, the signature file, the key id and the fix.
    public func refusal(_ verdict: SignatureVerdict, manifestAt manifestPath: String) -> ManifestError? {
        let sigPath = PluginSignature.path(for: manifestPath)
        let signHint = "sign it with a trusted key: `plugboard sign \(manifestPath) --key KEY`"
        switch verdict {
        case .valid:
            return nil
        case .missing:
            return ManifestError(.signature, file: manifestPath, field: "signature",
                problem: "missing signature: no \(sigPath), and plugins.require_signature is true",
                fix: "\(signHint), or set plugins.require_signature = false")
        case .unknownKey(let id):
            return ManifestError(.signature, file: manifestPath, field: "signature",
                problem: "unknown key: signed by key \(id), which is not among the trusted keys in \(directory)",
                fix: "if you trust that signer, copy its .pub file (key id \(id)) into \(directory); else \(signHint)")
        case .badSignature(let id):
            return ManifestError(.signature, file: manifestPath, field: "signature",
                problem: "bad signature: the signature in \(sigPath) by key \(id) does not verify over the manifest (it was changed after signing)",
                fix: "pack the plugin again from a trusted build and \(signHint)")
        case .unusable(let why):
            return ManifestError(.signature, file: manifestPath, field: "signature",
                problem: "unusable signature: \(why)", fix: signHint)
        }
    }
}
