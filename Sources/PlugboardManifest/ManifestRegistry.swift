import PlugboardSystem
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A manifest resolved against its library: what the catalog needs to decide about one plugin.
public struct ResolvedManifest: Sendable, Equatable {
    public var manifest: Manifest
    public var manifestPath: String
    public var libraryPath: String
    /// SHA-256 of the `.so` on disk now (equal to `manifest.librarySHA256` when resolution succeeded).
    public var librarySHA256: [UInt8]
    /// The `.pbm` bytes the manifest was decoded from (what a signature covers).
    public var manifestBytes: [UInt8]
    /// The signature verification the registry cache remembers for this very `.pbm` (its key,
    /// ctime included, unchanged since), if any; see `VerifiedSignature`.
    public var verifiedSignature: VerifiedSignature?
}

/// A signature check that succeeded, remembered in the registry cache so that a warm start need not
/// verify again: valid only while the `.pbm` (the entry's key), the `.sig` file (`signatureKey`,
/// ctime included) and the trusted public key of that id (`publicKey`, compared byte for byte with
/// the key in the trusted directory now) are all unchanged. As safe as the cached hash: the same
/// keys, in the same file, under the same file trust check.
public struct VerifiedSignature: Sendable, Equatable {
    public var signatureKey: FileKey
    /// The signer's key id (16 hex digits).
    public var keyID: String
    /// The 32-byte public key the signature verified against.
    public var publicKey: [UInt8]

    public init(signatureKey: FileKey, keyID: String, publicKey: [UInt8]) {
        self.signatureKey = signatureKey
        self.keyID = keyID
        self.publicKey = publicKey
    }
}

/// The manifest registry: every manifest the host has seen, cached in ONE file so that a warm start
/// reads that file (memory-mapped) and `stat`s each plugin's `.pbm` and `.so` instead of reading and
/// validating every manifest and hashing every library.
///
/// An entry is keyed by the `.pbm`'s path + device + inode + size + mtime (ns) + ctime (ns) and the
/// `.so`'s device + inode + size + mtime (ns) + ctime (ns); it holds the `.so`'s SHA-256 and the `.pbm`
/// bytes. Any change to either file (touch, rewrite, replacement, a write in place) makes the entry
/// stale: the manifest is re-read and/or the library re-hashed. The ctime is what makes this safe:
/// a write in place with the size kept and the mtime set back by `utimes` still moves the ctime,
/// which no unprivileged call can set. A cache file that is corrupt, truncated, of another format version or not a
/// registry at all is ignored with a warning and rewritten. Writes are atomic (temp file, fsync, rename).
///
/// Decoded manifests are also kept in an in-memory LRU (default 200 entries) so that a rescan in the
/// same process (reload) does not even decode the cached bytes again.
///
/// Thread-safe: state behind a `Mutex`; used at startup and reload, never per event.
public final class ManifestRegistry: Sendable {
    /// Counters that tests and `explain` use to show what a start cost.
    public struct Stats: Sendable, Equatable {
        /// `.pbm` files read from disk and decoded (the "parse" a warm start avoids).
        public var manifestReads = 0
        /// `.so` files hashed.
        public var libraryHashes = 0
        /// Manifests decoded from the cache file's bytes (no file read).
        public var cacheDecodes = 0
        /// Manifests served from the in-memory LRU.
        public var lruHits = 0
        /// Manifests dropped from the LRU to stay within its capacity (`plugins.cache_size`).
        public var lruEvictions = 0
        /// Times the cache file was found corrupt or foreign and dropped.
        public var cacheRebuilds = 0
        /// Times the cache file was written.
        public var cacheWrites = 0
        public init() {}
    }

    struct Entry {
        var path: String
        var manifestKey: FileKey
        var libraryKey: FileKey
        var librarySHA256: [UInt8]
        var pbm: [UInt8]
        var signature: VerifiedSignature?
    }

    struct CachedEntry {
        var manifestKey: FileKey
        var libraryKey: FileKey
        var librarySHA256: [UInt8]
        var pbmRange: Range<Int>
        var signature: VerifiedSignature?
    }

    struct State {
        var loaded = false
        var map: MappedFile?
        var cached: [String: CachedEntry] = [:]
        var fresh: [String: Entry] = [:]
        var dirty = false
        var lru: [String: (key: FileKey, manifest: Manifest, bytes: [UInt8], tick: UInt64)] = [:]
        var tick: UInt64 = 0
        var stats = Stats()
    }

    /// The cache file, or nil for no persistent cache (tools that inspect a single directory).
    public let cachePath: String?
    public let lruCapacity: Int
    /// The capacity asked for (0: none wanted; the LRU then holds one, and its evictions are expected).
    let requestedCapacity: Int
    private let warning: @Sendable (String) -> Void
    private let state = Mutex(State())

    /// - Parameters:
    ///   - cachePath: the registry file; created on `save()`.
    ///   - lruCapacity: decoded manifests kept in memory.
    ///   - warning: receives one line per problem that does not stop the host (corrupt cache...).
    public init(cachePath: String?, lruCapacity: Int = 200, warning: @escaping @Sendable (String) -> Void = { _ in }) {
        self.cachePath = cachePath
        self.lruCapacity = max(1, lruCapacity)
        self.requestedCapacity = lruCapacity
        self.warning = warning
    }

    public var stats: Stats { state.withLock { $0.stats } }

    /// Passes a problem that does not stop the host (e.g. the cache could not be written) to the
    /// warning handler.
    public func warn(_ message: String) { warning(message) }

    /// Where the cache lives when the caller does not say: `$XDG_CACHE_HOME/plugboard/registry.pbr`,
    /// else `$HOME/.cache/plugboard/registry.pbr` (the directory is created); nil when neither is set.
    public static func defaultCachePath() -> String? {
        let base: String
        if let xdg = getenv("XDG_CACHE_HOME").map({ String(cString: $0) }), xdg.hasPrefix("/") { base = xdg }
        else if let home = getenv("HOME").map({ String(cString: $0) }), !home.isEmpty { base = home + "/.cache" }
        else { return nil }
        let dir = base + "/plugboard"
        try? FileSystem.makeDirectory(base)
        try? FileSystem.makeDirectory(dir)
        return dir + "/registry.pbr"
    }

    /// Resolves the manifest at `pbmPath` and checks its library: exists, and has the SHA-256 recorded
    /// at pack time.
    public func resolve(manifestAt pbmPath: String) -> Result<ResolvedManifest, ManifestError> {
        let (result, firstEviction) = state.withLock { s in
            let before = s.stats.lruEvictions
            return (resolveLocked(&s, pbmPath), before == 0 && s.stats.lruEvictions > 0)
        }
        if firstEviction && requestedCapacity > 0 {
            // Once per registry: the count on /metrics says how often since.
            warning("manifest cache full: more manifests than plugins.cache_size = \(lruCapacity); the least recently used are dropped and read again from disk when next needed (fix: raise plugins.cache_size above the number of installed plugins)")
        }
        return result
    }

    /// Manifests in the in-memory LRU now.
    public var lruCount: Int { state.withLock { $0.lru.count } }

    private func resolveLocked(_ s: inout State, _ pbmPath: String) -> Result<ResolvedManifest, ManifestError> {
        if !s.loaded { loadLocked(&s) }
        guard let mkey = FileKey.of(path: pbmPath) else {
            return .failure(ManifestError(.format, file: pbmPath, field: "file", problem: "the manifest file is missing or not a regular file",
                                          fix: "pack the plugin again with `plugboard pack`"))
        }
        let cached = s.cached[pbmPath]
        var pbmBytes: [UInt8]?
        let manifest: Manifest
        if let hit = s.lru[pbmPath], hit.key == mkey {
            s.tick += 1
            s.lru[pbmPath]!.tick = s.tick
            s.stats.lruHits += 1
            manifest = hit.manifest
            pbmBytes = hit.bytes
        } else if let c = cached, c.manifestKey == mkey, let map = s.map {
            let raw = UnsafeRawBufferPointer(rebasing: map.bytes[c.pbmRange])
            do {
                manifest = try PBMReader.decode(raw, file: pbmPath)
                s.stats.cacheDecodes += 1
                pbmBytes = Array(raw)
            } catch {
                return .failure(.from(error, file: pbmPath))
            }
        } else {
            do {
                let map = try MappedFile(path: pbmPath, check: .format, field: "file")
                guard map.key == mkey else { return resolveLocked(&s, pbmPath) } // replaced between stat and open
                s.stats.manifestReads += 1
                manifest = try PBMReader.decode(map.bytes, file: pbmPath)
                pbmBytes = Array(map.bytes)
            } catch {
                return .failure(.from(error, file: pbmPath))
            }
        }
        if s.lru[pbmPath]?.key != mkey, let pbmBytes {
            s.tick += 1
            s.lru[pbmPath] = (mkey, manifest, pbmBytes, s.tick)
            if s.lru.count > lruCapacity, let oldest = s.lru.min(by: { $0.value.tick < $1.value.tick }) {
                s.lru.removeValue(forKey: oldest.key)
                s.stats.lruEvictions += 1
            }
        }

        let libPath = FileIO.join(FileIO.directory(of: pbmPath), manifest.library)
        guard let lkey = FileKey.of(path: libPath) else {
            return .failure(ManifestError(.library, file: pbmPath, field: "plugin.library",
                problem: "the library \(libPath) does not exist",
                fix: "build the plugin and copy \(manifest.library) next to the manifest (`make plugins`), or fix library in plugin.toml and pack again"))
        }
        let sha: [UInt8]
        if let c = cached, c.libraryKey == lkey {
            sha = c.librarySHA256
        } else if let f = s.fresh[pbmPath], f.libraryKey == lkey {
            sha = f.librarySHA256
        } else {
            do { sha = try SHA256.hash(fileAt: libPath) } catch { return .failure(.from(error, file: pbmPath)) }
            s.stats.libraryHashes += 1
        }
        guard let recorded = manifest.librarySHA256 else {
            return .failure(ManifestError(.library, file: pbmPath, field: "library-hash",
                problem: "the manifest does not record the SHA-256 of \(manifest.library)",
                fix: "pack it with `plugboard pack plugin.toml --library \(libPath)`"))
        }
        guard recorded == sha else {
            return .failure(ManifestError(.library, file: pbmPath, field: "library-hash",
                problem: "stale manifest: \(libPath) is not the library that was packed (SHA-256 \(sha.hexString.prefix(16))..., manifest records \(recorded.hexString.prefix(16))...)",
                fix: "run plugboard pack against the new build: `plugboard pack plugin.toml --library \(libPath) -o \(pbmPath)`"))
        }
        guard let bytes = pbmBytes else { preconditionFailure("every path above sets the manifest's bytes") }
        // A remembered signature check holds only for the very .pbm it was made over.
        let signature = cached?.manifestKey == mkey ? cached?.signature
            : (s.fresh[pbmPath]?.manifestKey == mkey ? s.fresh[pbmPath]?.signature : nil)
        let entry = Entry(path: pbmPath, manifestKey: mkey, libraryKey: lkey, librarySHA256: sha, pbm: bytes, signature: signature)
        if cached?.manifestKey != mkey || cached?.libraryKey != lkey { s.dirty = true }
        s.fresh[pbmPath] = entry
        return .success(ResolvedManifest(manifest: manifest, manifestPath: pbmPath, libraryPath: libPath, librarySHA256: sha,
                                         manifestBytes: bytes, verifiedSignature: signature))
    }

    /// Remembers (or forgets, with nil) a signature check of the manifest at `pbmPath`, resolved in
    /// this run, in the cache file written by `save()`.
    public func recordSignature(_ signature: VerifiedSignature?, forManifestAt pbmPath: String) {
        state.withLock { s in
            guard s.fresh[pbmPath] != nil, s.fresh[pbmPath]!.signature != signature else { return }
            s.fresh[pbmPath]!.signature = signature
            s.dirty = true
        }
    }

    /// Writes the cache file (atomically) if anything changed since it was read: new, stale or removed
    /// entries. Entries not resolved during this run are dropped, so the file tracks the installed set.
    public func save() throws {
        try state.withLock { s in
            guard let cachePath else { return }
            if !s.loaded { loadLocked(&s) }
            let removed = s.cached.keys.contains { s.fresh[$0] == nil }
            guard s.dirty || removed || s.map == nil else { return }
            let bytes = RegistryFormat.encode(s.fresh.values.sorted { $0.path < $1.path })
            try FileIO.writeAtomically(bytes, to: cachePath, check: .registry, field: "registry")
            s.stats.cacheWrites += 1
            s.dirty = false
        }
    }

    private func loadLocked(_ s: inout State) {
        s.loaded = true
        guard let cachePath, FileKey.of(path: cachePath) != nil else { return }
        do {
            let map = try MappedFile(path: cachePath, check: .registry, field: "registry")
            s.cached = try RegistryFormat.decode(map.bytes, file: cachePath)
            s.map = map
        } catch {
            s.stats.cacheRebuilds += 1
            s.dirty = true
            warning("\(error) The registry will be rebuilt from the manifests.")
        }
    }
}

/// The registry cache file, format version 2 (docs/manifest.md, "Registry cache"). Little-endian.
/// Version 2 added each file's ctime to its key (version 1 keys had none, and a version 1 file is
/// rebuilt, never read with the new layout) and the remembered signature check.
enum RegistryFormat {
    static let magic: [UInt8] = [0x50, 0x42, 0x52, 0x47] // "PBRG"
    static let version: UInt16 = 2
    static let headerSize = 32
    /// Entry length, path length, two 40-byte file keys, the SHA-256, the .pbm length, flags, and
    /// the signature record (the .sig's 40-byte key, the 8-byte key id, the 32-byte public key).
    static let fixedEntrySize = 208
    /// device, inode, size, mtime, ctime: 8 bytes each.
    static let keySize = 40

    static func encode(_ entries: [ManifestRegistry.Entry]) -> [UInt8] {
        var w = ByteWriter()
        w.bytes += magic
        w.u16(version); w.u16(0)
        w.u32(0) // length, patched
        w.u32(0) // crc, patched
        w.u32(UInt32(entries.count))
        w.u32(UInt32(HostABI.major) << 16 | UInt32(HostABI.minor))
        w.u64(0)
        for e in entries {
            let path = Array(e.path.utf8)
            var body = fixedEntrySize + path.count + e.pbm.count
            body += (8 - body % 8) % 8
            w.u32(UInt32(body)); w.u32(UInt32(path.count))
            for k in [e.manifestKey, e.libraryKey] {
                w.u64(k.device); w.u64(k.inode); w.u64(k.size); w.u64(UInt64(bitPattern: k.mtimeNs)); w.u64(UInt64(bitPattern: k.ctimeNs))
            }
            w.bytes += e.librarySHA256
            w.u32(UInt32(e.pbm.count)); w.u32(e.signature == nil ? 0 : 1)
            let sig = e.signature
            let k = sig?.signatureKey ?? FileKey(device: 0, inode: 0, size: 0, mtimeNs: 0, ctimeNs: 0)
            w.u64(k.device); w.u64(k.inode); w.u64(k.size); w.u64(UInt64(bitPattern: k.mtimeNs)); w.u64(UInt64(bitPattern: k.ctimeNs))
            w.bytes += sig.flatMap { [UInt8](signatureKeyID: $0.keyID) } ?? [UInt8](repeating: 0, count: 8)
            w.bytes += sig?.publicKey.count == 32 ? sig!.publicKey : [UInt8](repeating: 0, count: 32)
            w.bytes += path
            w.bytes += e.pbm
            while w.bytes.count % 8 != 0 { w.u8(0) }
        }
        var out = w.bytes
        let n = UInt32(out.count)
        out.withUnsafeMutableBytes { $0.storeBytes(of: n.littleEndian, toByteOffset: 8, as: UInt32.self) }
        let crc = out.withUnsafeBytes { CRC32C.checksum($0, skippingFieldAt: 12) }
        out.withUnsafeMutableBytes { $0.storeBytes(of: crc.littleEndian, toByteOffset: 12, as: UInt32.self) }
        return out
    }

    static func decode(_ b: UnsafeRawBufferPointer, file: String) throws -> [String: ManifestRegistry.CachedEntry] {
        func bad(_ field: String, _ problem: String) -> ManifestError {
            ManifestError(.registry, file: file, field: field, problem: problem,
                          fix: "nothing: the registry is rebuilt automatically (delete the file to silence this)")
        }
        func u32(_ o: Int) -> UInt32 { UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24 }
        func u64(_ o: Int) -> UInt64 { UInt64(u32(o)) | UInt64(u32(o + 4)) << 32 }
        guard b.count >= headerSize, Array(b[0..<4]) == magic else {
            throw bad("header.magic", "the registry cache is not a plugboard registry (foreign or truncated file)")
        }
        guard UInt16(b[4]) | UInt16(b[5]) << 8 == version else { throw bad("header.version", "the registry cache has another format version") }
        guard Int(u32(8)) == b.count else { throw bad("header.length", "the registry cache is truncated or was appended to") }
        guard u32(12) == CRC32C.checksum(b, skippingFieldAt: 12) else { throw bad("header.checksum", "the registry cache is corrupt (CRC-32C mismatch)") }
        guard u32(20) == UInt32(HostABI.major) << 16 | UInt32(HostABI.minor) else {
            throw bad("header.abi", "the registry cache was written by a plugboard with another plugin ABI")
        }
        var out: [String: ManifestRegistry.CachedEntry] = [:]
        var o = headerSize
        for i in 0..<Int(u32(16)) {
            guard o + fixedEntrySize <= b.count else { throw bad("entry[\(i + 1)]", "the entry lies outside the file") }
            let shaAt = o + 8 + 2 * keySize, pbmLenAt = shaAt + 32
            let len = Int(u32(o)), pathLen = Int(u32(o + 4)), pbmLen = Int(u32(pbmLenAt))
            guard len >= fixedEntrySize + pathLen + pbmLen, o + len <= b.count, len % 8 == 0 else {
                throw bad("entry[\(i + 1)].length", "inconsistent entry length")
            }
            func key(_ at: Int) -> FileKey {
                FileKey(device: u64(at), inode: u64(at + 8), size: u64(at + 16), mtimeNs: Int64(bitPattern: u64(at + 24)),
                        ctimeNs: Int64(bitPattern: u64(at + 32)))
            }
            let pathStart = o + fixedEntrySize
            guard let path = String(validating: UnsafeRawBufferPointer(rebasing: b[pathStart..<(pathStart + pathLen)]), as: UTF8.self) else {
                throw bad("entry[\(i + 1)].path", "the path is not UTF-8")
            }
            var signature: VerifiedSignature?
            if u32(pbmLenAt + 4) & 1 != 0 {
                let at = pbmLenAt + 8
                signature = VerifiedSignature(signatureKey: key(at), keyID: Array(b[(at + keySize)..<(at + keySize + 8)]).hexString,
                                              publicKey: Array(b[(at + keySize + 8)..<(at + keySize + 40)]))
            }
            out[path] = .init(manifestKey: key(o + 8), libraryKey: key(o + 8 + keySize), librarySHA256: Array(b[shaAt..<(shaAt + 32)]),
                              pbmRange: (pathStart + pathLen)..<(pathStart + pathLen + pbmLen), signature: signature)
            o += len
        }
        guard o == b.count else { throw bad("entries", "bytes after the last entry") }
        return out
    }
}

extension Array where Element == UInt8 {
    /// The 8 bytes of a 16-hex-digit key id, or nil.
    init?(signatureKeyID id: String) {
        let digits = Array(id.utf8)
        guard digits.count == 16 else { return nil }
        var out: [UInt8] = []
        for i in stride(from: 0, to: 16, by: 2) {
            guard let v = UInt8(String(decoding: digits[i..<(i + 2)], as: UTF8.self), radix: 16) else { return nil }
            out.append(v)
        }
        self = out
    }
}
