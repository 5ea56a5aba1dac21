import Crypto
import Foundation
import PlugboardManifest
import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

/// An Ed25519 key pair for signing plugin manifests (`plugboard keygen`, `plugboard sign`).
///
/// Key files are text, one `name value` field a line after a first line naming the format
/// (docs/manifest.md, "Signatures"):
///
///     plugboard-ed25519-private-key 1          plugboard-ed25519-public-key 1
///     key-id 3f2a9c1b7d4e5a60                  key-id 3f2a9c1b7d4e5a60
///     private <64 hex digits: the seed>        public <64 hex digits>
///                                              comment release key, Ada
///
/// The key id is the first 16 hex digits of the SHA-256 of the 32-byte public key: short enough to
/// read in a log line, and checked against the key itself whenever a key file is read.
public struct SigningKey: Sendable {
    /// The 32-byte seed (swift-crypto's key types are not `Sendable`; the bytes are).
    let seed: [UInt8]
    var privateKey: Curve25519.Signing.PrivateKey { try! Curve25519.Signing.PrivateKey(rawRepresentation: seed) }
    public var publicKey: PublicSigningKey { PublicSigningKey(key: privateKey.publicKey, comment: "") }
    public var keyID: String { publicKey.keyID }

    public init(_ privateKey: Curve25519.Signing.PrivateKey) { seed = Array(privateKey.rawRepresentation) }

    /// A new random key pair.
    public static func generate() -> SigningKey { SigningKey(Curve25519.Signing.PrivateKey()) }

    static let privateHeader = "plugboard-ed25519-private-key 1"
    static let publicHeader = "plugboard-ed25519-public-key 1"

    /// The private key file's text.
    public var fileText: String {
        "\(Self.privateHeader)\nkey-id \(keyID)\nprivate \(Array(privateKey.rawRepresentation).hexString)\n"
    }

    /// Reads a private key file written by `fileText`.
    /// - Throws: `ManifestError` (`signature`) naming the file, the field and the fix.
    public static func read(from path: String) throws -> SigningKey {
        let fields = try KeyFile.fields(path, header: privateHeader, required: ["key-id", "private"],
                                        what: "private key", fix: "pass the private key file `plugboard keygen` wrote (not the .pub)")
        guard let raw = [UInt8](hex: fields["private"]!), raw.count == 32,
              let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw) else {
            throw ManifestError(.signature, file: path, field: "private", problem: "not 64 hex digits of an Ed25519 private key",
                                fix: "generate a new key with `plugboard keygen`")
        }
        let signing = SigningKey(key)
        guard signing.keyID == fields["key-id"] else {
            throw ManifestError(.signature, file: path, field: "key-id",
                                problem: "the file says key id \(fields["key-id"]!) but the key's id is \(signing.keyID)",
                                fix: "the file was edited: generate a new key with `plugboard keygen`")
        }
        return signing
    }

    /// Writes the private key to `path` (mode 0600, never over an existing file) and the public key
    /// to `publicPath` (mode 0644).
    /// - Throws: `ManifestError` naming the file that could not be written.
    public func write(privateTo path: String, publicTo publicPath: String, comment: String) throws {
        for p in [path, publicPath] where FileKey.of(path: p) != nil || access(p, F_OK) == 0 {
            throw ManifestError(.signature, file: p, field: "file", problem: "the file already exists",
                                fix: "choose another name with --output, or remove the old key first (a key is never overwritten)")
        }
        try KeyFile.create(path, text: fileText, mode: 0o600)
        var pub = publicKey
        pub.comment = comment
        do { try KeyFile.create(publicPath, text: pub.fileText, mode: 0o644) } catch {
            unlink(path)
            throw error
        }
    }

    /// The Ed25519 signature of `bytes`.
    public func sign(_ bytes: [UInt8]) throws -> [UInt8] { Array(try privateKey.signature(for: bytes)) }
}

/// A public key: a trusted one in the trusted-keys directory, or the `.pub` half `keygen` writes.
public struct PublicSigningKey: Sendable {
    /// The 32-byte public key.
    public let raw: [UInt8]
    public var key: Curve25519.Signing.PublicKey { try! Curve25519.Signing.PublicKey(rawRepresentation: raw) }
    public var comment: String
    /// The file it was read from (empty for a key made in memory).
    public var file = ""

    public init(key: Curve25519.Signing.PublicKey, comment: String) {
        self.raw = Array(key.rawRepresentation)
        self.comment = comment
    }

    /// 16 hex digits: the start of the SHA-256 of the 32-byte public key.
    public var keyID: String { Self.keyID(of: raw) }

    public static func keyID(of raw: [UInt8]) -> String {
        String(Array(Crypto.SHA256.hash(data: raw)).hexString.prefix(16))
    }

    public var fileText: String {
        var text = "\(SigningKey.publicHeader)\nkey-id \(keyID)\npublic \(raw.hexString)\n"
        if !comment.isEmpty { text += "comment \(comment)\n" }
        return text
    }

    /// Reads a public key file written by `fileText`.
    /// - Throws: `ManifestError` (`signature`) naming the file, the field and the fix.
    public static func read(from path: String) throws -> PublicSigningKey {
        let fields = try KeyFile.fields(path, header: SigningKey.publicHeader, required: ["key-id", "public"],
                                        what: "public key", fix: "copy the .pub file `plugboard keygen` wrote")
        guard let raw = [UInt8](hex: fields["public"]!), raw.count == 32,
              let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else {
            throw ManifestError(.signature, file: path, field: "public", problem: "not 64 hex digits of an Ed25519 public key",
                                fix: "copy the .pub file `plugboard keygen` wrote")
        }
        var pub = PublicSigningKey(key: key, comment: fields["comment"] ?? "")
        pub.file = path
        guard pub.keyID == fields["key-id"] else {
            throw ManifestError(.signature, file: path, field: "key-id",
                                problem: "the file says key id \(fields["key-id"]!) but the key's id is \(pub.keyID)",
                                fix: "the file was edited: copy the .pub file `plugboard keygen` wrote")
        }
        return pub
    }
}

/// The `name value` line format shared by key and signature files.
enum KeyFile {
    /// The largest key or signature file read (they are a few hundred bytes).
    static let maximumSize = 4096

    static func fields(_ path: String, header: String, required: [String], what: String, fix: String) throws -> [String: String] {
        guard let size = FileKey.of(path: path)?.size else {
            throw ManifestError(.signature, file: path, field: "file", problem: "the \(what) file does not exist or is not a regular file",
                                fix: "check the path")
        }
        guard size <= UInt64(maximumSize) else {
            throw ManifestError(.signature, file: path, field: "file", problem: "\(size) bytes is too large for a \(what) file", fix: fix)
        }
        let bytes = try FileIO.readAll(path, check: .signature, field: "file")
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ManifestError(.signature, file: path, field: "file", problem: "not UTF-8 text", fix: fix)
        }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        guard lines.first == header else {
            throw ManifestError(.signature, file: path, field: "header", problem: "the first line is not \"\(header)\": not a plugboard \(what) file",
                                fix: fix)
        }
        lines.removeFirst()
        var out: [String: String] = [:]
        for line in lines {
            let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
            guard parts.count == 2 else {
                throw ManifestError(.signature, file: path, field: parts.first ?? "line", problem: "a line without a value", fix: fix)
            }
            guard out[parts[0]] == nil else {
                throw ManifestError(.signature, file: path, field: parts[0], problem: "given twice", fix: fix)
            }
            out[parts[0]] = parts[1]
        }
        for name in required where out[name] == nil {
            throw ManifestError(.signature, file: path, field: name, problem: "missing", fix: fix)
        }
        return out
    }

    /// Creates `path` with `mode` (exclusively: never over an existing file), writes `text`, fsyncs.
    static func create(_ path: String, text: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else {
            throw ManifestError(.signature, file: path, field: "file", problem: "cannot create the file: \(Errno.text(errno))",
                                fix: "check the directory exists and is writable")
        }
        defer { close(fd) }
        // The umask may have narrowed the mode; it never widens it. Set exactly what was asked.
        fchmod(fd, mode)
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count, fsync(fd) == 0 else {
            let reason = Errno.text(errno)
            unlink(path)
            throw ManifestError(.signature, file: path, field: "file", problem: "cannot write the file: \(reason)", fix: "check the disk")
        }
    }
}

extension Array where Element == UInt8 {
    /// Bytes from an even number of hex digits, or nil.
    init?(hex: String) {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: c - 0x30
            case 0x61...0x66: c - 0x61 + 10
            case 0x41...0x46: c - 0x41 + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        var i = 0
        while i < digits.count {
            guard let hi = value(digits[i]), let lo = value(digits[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        self = out
    }
}
