import Foundation
import PlugboardManifest
import PlugboardSigning
import PlugboardSystem
import Testing

/// The registry cache remembers a signature check that succeeded, so that a warm start does not
/// verify again; the memory must never outlive the `.pbm`, the `.sig` or the trusted key it was for.
@Suite("Signature checks remembered in the registry cache")
struct SignatureCacheTests {
    struct Bed {
        var dir: String
        var cache: String { dir + "/cache.pbr" }
        var pbm: String { dir + "/usb-logger.pbm" }
        var key: SigningKey
        var other: SigningKey
    }

    func bed() throws -> Bed {
        let dir = TestSupport.makeTempDir("sigcache")
        try TestSupport.install("usb-logger", into: dir, from: "usb-logger")
        let b = Bed(dir: dir, key: SigningKey.generate(), other: SigningKey.generate())
        try PluginSignature.sign(manifestAt: b.pbm, with: b.key)
        return b
    }

    /// One start: the catalog with the host's check against `keys`; the verdict and the resolved manifest.
    func start(_ b: Bed, keys: TrustedKeys) -> (verdict: SignatureVerdict?, resolved: ResolvedManifest?) {
        let registry = ManifestRegistry(cachePath: b.cache)
        var verdict: SignatureVerdict?, resolved: ResolvedManifest?
        _ = PluginCatalog.discover(dirs: [b.dir], registry: registry) { r in
            resolved = r
            verdict = keys.verify(r, registry: registry)
            return keys.refusal(verdict!, manifestAt: r.manifestPath)
        }
        return (verdict, resolved)
    }

    @Test("a warm start finds the check remembered, bound to the .sig's key and the trusted public key")
    func remembered() throws {
        let b = try bed()
        defer { TestSupport.cleanup(b.dir) }
        let keys = TrustedKeys(directory: b.dir, keys: [b.key.publicKey])
        let cold = start(b, keys: keys)
        #expect(cold.resolved?.verifiedSignature == nil && cold.verdict?.keyID == b.key.keyID)
        let warm = start(b, keys: keys)
        let known = try #require(warm.resolved?.verifiedSignature)
        #expect(known.keyID == b.key.keyID && known.publicKey == b.key.publicKey.raw)
        #expect(known.signatureKey == FileKey.of(path: PluginSignature.path(for: b.pbm)))
        #expect(warm.verdict == .valid(keyID: b.key.keyID, keyFile: ""))
    }

    @Test("the remembered check is not used once the key is no longer trusted")
    func keyRemoved() throws {
        let b = try bed()
        defer { TestSupport.cleanup(b.dir) }
        _ = start(b, keys: TrustedKeys(directory: b.dir, keys: [b.key.publicKey]))
        _ = start(b, keys: TrustedKeys(directory: b.dir, keys: [b.key.publicKey]))
        #expect(start(b, keys: TrustedKeys(directory: b.dir, keys: [b.other.publicKey])).verdict == .unknownKey(keyID: b.key.keyID))
    }

    @Test("the remembered check is not used once the .sig was rewritten in place (ctime moved)")
    func signatureRewritten() throws {
        let b = try bed()
        defer { TestSupport.cleanup(b.dir) }
        let keys = TrustedKeys(directory: b.dir, keys: [b.key.publicKey])
        _ = start(b, keys: keys)
        let sigPath = PluginSignature.path(for: b.pbm)
        let before = try FileStatus.of(path: sigPath)
        // Another signature over other bytes, under the same key id, written into the same inode
        // with the same size, and the mtime set back.
        let forged = PluginSignature(keyID: b.key.keyID, signature: try b.key.sign(Array("other bytes".utf8))).fileText
        let fd = open(sigPath, O_WRONLY)
        #expect(Array(forged.utf8).withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } == forged.utf8.count)
        close(fd)
        let m = timespec(tv_sec: Int(before.modificationNanoseconds / 1_000_000_000), tv_nsec: Int(before.modificationNanoseconds % 1_000_000_000))
        var times = [m, m]
        #expect(utimensat(AT_FDCWD, sigPath, &times, 0) == 0)
        #expect(start(b, keys: keys).verdict == .badSignature(keyID: b.key.keyID))
    }

    @Test("the remembered check is not used for a re-packed .pbm")
    func manifestRepacked() throws {
        let b = try bed()
        defer { TestSupport.cleanup(b.dir) }
        let keys = TrustedKeys(directory: b.dir, keys: [b.key.publicKey])
        _ = start(b, keys: keys)
        try TestSupport.install("usb-logger", into: b.dir, from: "usb-logger", config: "output = \"/tmp/x\"\n")
        let r = start(b, keys: keys)
        #expect(r.resolved?.verifiedSignature == nil)
        #expect(r.verdict == .badSignature(keyID: b.key.keyID))
    }
}
