import Foundation
import PlugboardManifest
import PlugboardSystem
import Testing

/// Signed plugins (issue 12) through the real binary: `keygen`, `sign`, `inspect` and `run` with
/// `plugins.require_signature`, against real plugins packed next to their `.so`.
@Suite("Signed plugins (the real binary)")
struct SignatureTests {
    func run(_ args: [String]) throws -> (status: Int32, output: String) { try TestSupport.runPlugboard(args) }

    /// A root with `plugins/` (usb-logger and device-counter, packed, unsigned), `trusted.d/`
    /// holding the public half of key A, and key A's and key B's private keys in `keys/`.
    struct Bed {
        var root: String
        var plugins: String { root + "/plugins" }
        var trusted: String { root + "/trusted.d" }
        var keyA: String { root + "/keys/a.key" }
        var keyB: String { root + "/keys/b.key" }
        var idA = "", idB = ""
    }

    func bed() throws -> Bed {
        var b = Bed(root: TestSupport.makeTempDir("signed"))
        for d in [b.plugins, b.trusted, b.root + "/keys"] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        // The usb-logger writes to a file, not into this test's output.
        try TestSupport.install("usb-logger", into: b.plugins, from: "usb-logger", config: "output = \"\(b.root)/logger.out\"\n")
        try TestSupport.install("device-counter", into: b.plugins, from: "device-counter")
        for (key, label) in [(b.keyA, "a"), (b.keyB, "b")] {
            let r = try run(["keygen", "-o", key, "--comment", "signer \(label)", "--json"])
            #expect(r.status == 0, "\(r.output)")
            let id = try #require(r.output.firstMatch(of: /"key_id": "([0-9a-f]{16})"/)).1
            if label == "a" { b.idA = String(id) } else { b.idB = String(id) }
        }
        try TestSupport.copy(b.keyA + ".pub", to: b.trusted + "/a.pub")
        return b
    }

    func sign(_ b: Bed, _ plugin: String, key: String) throws {
        let r = try run(["sign", "\(b.plugins)/\(plugin).pbm", "--key", key])
        #expect(r.status == 0, "\(r.output)")
    }

    /// `plugboard run` over the bed's plugins with signatures required (unless `require` is false).
    func start(_ b: Bed, require: Bool = true, extra: [String] = []) throws -> (status: Int32, output: String) {
        try run(["run", "--plugins", b.plugins, "--source", "synthetic:5", "--registry-cache", "\(b.root)/registry.pbr",
                 "--set", "plugins.require_signature=\(require)", "--set", "plugins.trusted_keys_dir=\(b.trusted)"] + extra)
    }

    func running(_ output: String) -> [String] {
        guard let m = output.firstMatch(of: /plugins running: ([a-z,-]+)/) else { return [] }
        return m.1 == "none" ? [] : m.1.split(separator: ",").map(String.init).sorted()
    }

    @Test("keygen writes a 0600 private key and a public key whose id is the start of its SHA-256, and never overwrites")
    func keygen() throws {
        let b = try bed()
        defer { TestSupport.cleanup(b.root) }
        #expect(try FileStatus.of(path: b.keyA).mode & 0o777 == 0o600)
        #expect(try FileStatus.of(path: b.keyA + ".pub").mode & 0o777 == 0o644)
        let pub = try String(contentsOfFile: b.keyA + ".pub", encoding: .utf8)
        let hex = try #require(pub.firstMatch(of: /public ([0-9a-f]{64})/)).1
        let raw = stride(from: 0, to: 64, by: 2).map { UInt8(hex.dropFirst($0).prefix(2), radix: 16)! }
        #expect(SHA256.hash(raw).hexString.prefix(16) == b.idA)
        #expect(pub.contains("key-id \(b.idA)") && pub.contains("comment signer a"))
        #expect(b.idA != b.idB)
        let again = try run(["keygen", "-o", b.keyA])
        #expect(again.status == 1 && again.output.contains("\(b.keyA): file: the file already exists"), "\(again.output)")
    }

    @Test("accept: plugins signed by a trusted key load with require_signature, and inspect shows the verified signer")
    func accept() throws {
        let b = try bed()
        defer { TestSupport.cleanup(b.root) }
        try sign(b, "usb-logger", key: b.keyA)
        try sign(b, "device-counter", key: b.keyA)
        let sig = try String(contentsOfFile: "\(b.plugins)/usb-logger.pbm.sig", encoding: .utf8)
        #expect(sig.hasPrefix("plugboard-signature 1\nkey-id \(b.idA)\nalgorithm ed25519\nsignature "), "\(sig)")
        let r = try start(b)
        #expect(r.status == 0, "\(r.output)")
        #expect(running(r.output) == ["device-counter", "usb-logger"], "\(r.output)")
        #expect(!r.output.contains("rejected"), "\(r.output)")
        let warm = try start(b)  // the registry cache is warm now: still verified, still loaded
        #expect(running(warm.output) == ["device-counter", "usb-logger"], "\(warm.output)")
        let shown = try run(["inspect", "\(b.plugins)/usb-logger.pbm", "--trusted-keys", b.trusted])
        #expect(shown.status == 0, "\(shown.output)")
        #expect(shown.output.contains("signature: signed by key \(b.idA), verified (trusted key \(b.trusted)/a.pub)"), "\(shown.output)")
        try FileManager.default.createDirectory(atPath: b.root + "/other.d", withIntermediateDirectories: true)
        let json = try run(["inspect", "\(b.plugins)/usb-logger.pbm", "--trusted-keys", b.root + "/other.d", "--json"])
        #expect(json.output.contains("\"signed_by\": \"\(b.idA)\"") && json.output.contains("\"signature\": \"unknown-key\""),
                "against a directory without key A the signer is shown but not verified: \(json.output)")
    }

    @Test("refuse: unsigned, unknown key and wrong key are each refused naming the key id and the reason; the others keep running")
    func refuse() throws {
        let b = try bed()
        defer { TestSupport.cleanup(b.root) }
        try sign(b, "device-counter", key: b.keyA)
        // Unsigned usb-logger.
        let unsigned = try start(b)
        #expect(unsigned.status == 0, "\(unsigned.output)")
        #expect(running(unsigned.output) == ["device-counter"], "\(unsigned.output)")
        #expect(unsigned.output.contains("\(b.plugins)/usb-logger.pbm: skipped: signature: missing signature: no \(b.plugins)/usb-logger.pbm.sig, and plugins.require_signature is true. Fix: sign it with a trusted key: `plugboard sign \(b.plugins)/usb-logger.pbm --key KEY`"), "\(unsigned.output)")
        // Signed by B, whose public key is not trusted.
        try sign(b, "usb-logger", key: b.keyB)
        let unknown = try start(b)
        #expect(running(unknown.output) == ["device-counter"], "\(unknown.output)")
        #expect(unknown.output.contains("signature: unknown key: signed by key \(b.idB), which is not among the trusted keys in \(b.trusted)"), "\(unknown.output)")
        #expect(unknown.output.contains("copy its .pub file (key id \(b.idB)) into \(b.trusted)"), "\(unknown.output)")
        // Signed by B but claiming to be A's signature (the wrong key for that id).
        let sigPath = "\(b.plugins)/usb-logger.pbm.sig"
        let forged = try String(contentsOfFile: sigPath, encoding: .utf8).replacingOccurrences(of: b.idB, with: b.idA)
        try forged.write(toFile: sigPath, atomically: true, encoding: .utf8)
        let wrong = try start(b)
        #expect(running(wrong.output) == ["device-counter"], "\(wrong.output)")
        #expect(wrong.output.contains("signature: bad signature: the signature in \(sigPath) by key \(b.idA) does not verify over the manifest"), "\(wrong.output)")
    }

    @Test("tamper: a .pbm re-packed after signing fails its signature; a .so patched after signing fails its SHA-256")
    func tamper() throws {
        let b = try bed()
        defer { TestSupport.cleanup(b.root) }
        try sign(b, "usb-logger", key: b.keyA)
        try sign(b, "device-counter", key: b.keyA)
        #expect(running(try start(b).output) == ["device-counter", "usb-logger"])
        // The manifest edited after signing: another [config] packed over it (the registry cache is warm).
        try TestSupport.install("usb-logger", into: b.plugins, from: "usb-logger", config: "output = \"/tmp/elsewhere\"\n")
        let edited = try start(b)
        #expect(running(edited.output) == ["device-counter"], "\(edited.output)")
        #expect(edited.output.contains("\(b.plugins)/usb-logger.pbm: skipped: signature: bad signature:") &&
                edited.output.contains("by key \(b.idA) does not verify over the manifest (it was changed after signing)"), "\(edited.output)")
        let shown = try run(["inspect", "\(b.plugins)/usb-logger.pbm", "--trusted-keys", b.trusted])
        #expect(shown.output.contains("signature: signed by key \(b.idA): BAD SIGNATURE"), "\(shown.output)")
        // The library patched in place after signing: the signed .pbm still verifies, its hash does not.
        let lib = "\(b.plugins)/libdevice-counter.so"
        let fd = open(lib, O_WRONLY)
        var byte: UInt8 = 0x5a
        #expect(pwrite(fd, &byte, 1, off_t(try FileStatus.of(path: lib).size / 2)) == 1)
        close(fd)
        let patched = try start(b)
        #expect(!running(patched.output).contains("device-counter"), "\(patched.output)")
        #expect(patched.output.contains("\(lib) is not the library that was packed"), "\(patched.output)")
    }

    @Test("require_signature = false (the default) still loads unsigned plugins")
    func notRequired() throws {
        let b = try bed()
        defer { TestSupport.cleanup(b.root) }
        let r = try start(b, require: false)
        #expect(r.status == 0, "\(r.output)")
        #expect(running(r.output) == ["device-counter", "usb-logger"], "\(r.output)")
        let byDefault = try run(["run", "--plugins", b.plugins, "--source", "synthetic:5", "--registry-cache", "none"])
        #expect(running(byDefault.output) == ["device-counter", "usb-logger"], "\(byDefault.output)")
    }

    @Test("the trusted keys directory and key files go through plugins.trust: a group-writable directory trusts no key")
    func trustedKeysUnderFileTrust() throws {
        let b = try bed()
        defer { TestSupport.cleanup(b.root) }
        try sign(b, "usb-logger", key: b.keyA)
        try sign(b, "device-counter", key: b.keyA)
        chmod(b.trusted, 0o775)
        let r = try start(b)
        #expect(running(r.output).isEmpty, "\(r.output)")
        #expect(r.output.contains("the trusted keys directory is not trusted, so no key in it is: \(b.trusted) is writable by group or others"), "\(r.output)")
        #expect(r.output.contains("signature: unknown key: signed by key \(b.idA)"), "\(r.output)")
        chmod(b.trusted, 0o755)
        chmod(b.trusted + "/a.pub", 0o666)
        let key = try start(b)
        #expect(key.output.contains("trusted key file not used: \(b.trusted)/a.pub is writable by group or others"), "\(key.output)")
        chmod(b.trusted + "/a.pub", 0o644)
        #expect(running(try start(b).output) == ["device-counter", "usb-logger"])
    }

    @Test("require_signature with plugins.manifests = false, or with --watch, is refused naming the keys and the fix")
    func requireSignatureNeedsManifests() throws {
        let b = try bed()
        defer { TestSupport.cleanup(b.root) }
        let r = try start(b, extra: ["--ignore-manifests"])
        #expect(r.status != 0, "\(r.output)")
        #expect(r.output.contains("plugins.require_signature") && r.output.contains("plugins.manifests is false"), "\(r.output)")
        let w = try start(b, extra: ["--watch"])
        #expect(w.status != 0, "\(w.output)")
        #expect(w.output.contains("--watch cannot be used with plugins.require_signature = true"), "\(w.output)")
    }
}
