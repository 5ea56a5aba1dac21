import PlugboardCore
import PlugboardManifest

/// `plugin.toml` + the built `.so` -> `.pbm`: what `plugboard pack` and `make plugins` run.
public enum Packer {
    public struct Result: Sendable {
        public var manifest: Manifest
        public var output: String
        public var bytes: Int
    }

    /// Parses `tomlPath`, hashes the library (default: `library` next to the TOML file), and writes the
    /// `.pbm` atomically to `output` (default: `<name>.pbm` next to the library, where the host looks).
    /// The written file is read back and checked before returning.
    public static func pack(tomlPath: String, libraryPath: String? = nil, output: String? = nil) throws -> Result {
        var manifest = try ManifestTOML.parse(contentsOf: tomlPath)
        let lib = libraryPath ?? FileIO.join(FileIO.directory(of: tomlPath), manifest.library)
        let libName = lib.split(separator: "/").last.map(String.init) ?? lib
        guard libName == manifest.library else {
            throw ManifestError(.library, file: tomlPath, field: "plugin.library",
                problem: "the manifest names \(manifest.library) but --library points at \(libName)",
                fix: "make them agree: the host looks for plugin.library next to the .pbm")
        }
        guard FileKey.of(path: lib) != nil else {
            throw ManifestError(.library, file: tomlPath, field: "plugin.library", problem: "the library \(lib) does not exist",
                                fix: "build the plugin first (`swift build` / `make plugins`) or pass --library PATH")
        }
        // The same ELF checks the host makes before dlopen: a truncated or malformed .so, or one without
        // the entry point, is refused here rather than packed and found out on the daemon.
        do { _ = try ELFImage.inspect(path: lib) } catch {
            let check = error.headerCheck ?? (reason: "\(error)", fix: "check the path and its permissions")
            throw ManifestError(.library, file: lib, field: "plugin.library", problem: check.reason, fix: check.fix)
        }
        manifest.librarySHA256 = try SHA256.hash(fileAt: lib)
        let out = output ?? FileIO.join(FileIO.directory(of: lib), manifest.name + ".pbm")
        let bytes = PBMWriter.encode(manifest)
        let back = try PBMReader.decode(bytes, file: out)
        precondition(back == manifest, "PBMWriter/PBMReader disagree: a bug in plugboard")
        try FileIO.writeAtomically(bytes, to: out, check: .library, field: "output")
        return Result(manifest: manifest, output: out, bytes: bytes.count)
    }
}
