// `plugboard-bench-manifests --signatures`: start-up with signature checks on against the same
// start without them, 100 plugins, warm registry cache, measured in the same run (alternating, so
// both see the same machine load). Figures for docs/benchmarks.md, "Start-up with signatures".
//
// 1. Discovery (in process): PluginCatalog.discover over the warm cache, without and with the host's
//    signature check (trusted keys read, one .sig stat + read + Ed25519 verification per plugin).
// 2. The whole `plugboard run` (a real process: config, discovery, trust checks, signatures, dlopen
//    or worker spawn, init of 100 plugins, one synthetic event, shutdown), thread and process mode.
import CPlugboard
import Foundation
import PlugboardManifest
import PlugboardManifestTools
import PlugboardSigning

func signatureBenchmark(plugins count: Int, iterations: Int) throws {
    let (plugboard, root) = builtDaemon(target: "bench-signatures")
    umask(0o022)
    let work = "/tmp/plugboard-bench-signatures-\(getpid())"
    let dir = work + "/plugins", trusted = work + "/trusted.d"
    for d in [dir, trusted, work + "/src"] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
    defer { try? FileManager.default.removeItem(atPath: work) }

    let key = SigningKey.generate()
    try key.write(privateTo: work + "/bench.key", publicTo: trusted + "/bench.pub", comment: "bench")
    try makeBenchPlugins(count: count, into: dir, work: work, root: root, prefix: "sig", signedWith: key)
    let cache = work + "/registry.pbr"
    _ = PluginCatalog.discover(dirs: [dir], registry: ManifestRegistry(cachePath: cache))  // warm it

    // 1. Discovery, in process.
    var plain: [Double] = [], signed: [Double] = [], uncached: [Double] = []
    for _ in 0..<(iterations * 10) {
        var t = now()
        let a = PluginCatalog.discover(dirs: [dir], registry: ManifestRegistry(cachePath: cache))
        plain.append(Double(now() - t) / 1e6)
        precondition(a.loadable.count == count)
        t = now()
        let keys = TrustedKeys.load(directory: trusted)
        let registry = ManifestRegistry(cachePath: cache)
        let b = PluginCatalog.discover(dirs: [dir], registry: registry) { r in
            keys.refusal(keys.verify(r, registry: registry), manifestAt: r.manifestPath)
        }
        signed.append(Double(now() - t) / 1e6)
        precondition(b.loadable.count == count, "\(b.candidates.compactMap(\.skip).first.map { "\($0)" } ?? "")")
        // The same without the remembered checks: every signature verified (what the cache saves).
        t = now()
        let keys2 = TrustedKeys.load(directory: trusted)
        let c = PluginCatalog.discover(dirs: [dir], registry: ManifestRegistry(cachePath: cache)) { r in
            keys2.refusal(keys2.verify(manifestAt: r.manifestPath, bytes: r.manifestBytes), manifestAt: r.manifestPath)
        }
        uncached.append(Double(now() - t) / 1e6)
        precondition(c.loadable.count == count)
    }
    print("## start-up with signature checks, \(count) plugins, warm registry cache (same run, alternating)\n")
    print("| start-up | without signatures, median ms | with signatures, median ms | with / without |")
    print("|---|---:|---:|---:|")
    func row(_ label: String, _ a: [Double], _ b: [Double]) {
        let ma = percentile(a, 0.5), mb = percentile(b, 0.5)
        print("| \(label) | \(fmt(ma, 2)) | \(fmt(mb, 2)) | \(fmt(mb / ma, 2))x |")
    }
    row("discovery only (in process: \(iterations * 10) starts each)", plain, signed)
    row("discovery only, every signature verified again (checks not remembered)", plain, uncached)

    // 2. The whole `plugboard run`.
    func run(_ isolation: String, require: Bool) -> Double {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: plugboard)
        p.arguments = ["run", "--plugins", dir, "--source", "synthetic:1", "--registry-cache", cache, "--log-level", "error",
                       "--set", "plugins.isolation=\(isolation)", "--set", "plugins.worker_user=\(String(cString: getpwuid(geteuid())!.pointee.pw_name))",
                       "--set", "plugins.require_signature=\(require)", "--set", "plugins.trusted_keys_dir=\(trusted)"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        let t = now()
        try! p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let ms = Double(now() - t) / 1e6
        precondition(p.terminationStatus == 0 && !text.contains("rejected"), "plugboard run failed: \(text)")
        return ms
    }
    for isolation in ["thread", "process"] {
        var a: [Double] = [], b: [Double] = []
        _ = run(isolation, require: true)
        for _ in 0..<iterations {
            a.append(run(isolation, require: false))
            b.append(run(isolation, require: true))
        }
        row("whole `plugboard run`, \(isolation) isolation (\(iterations) runs each)", a, b)
    }
    // The cost of one verification on its own.
    let bytes = try FileIO.readAll("\(dir)/sig0.pbm", check: .format, field: "bench")
    let keys = TrustedKeys.load(directory: trusted)
    let t = now()
    for _ in 0..<1000 { precondition(keys.verify(manifestAt: "\(dir)/sig0.pbm", bytes: bytes) != .missing) }
    print("\none signature check (stat + read the .sig + Ed25519 verify): \(fmt(Double(now() - t) / 1e6, 1)) µs")
}

/// The release `plugboard` beside this tool (with its `plugboard-worker`), and the package root;
/// exits naming the make target that builds them when they are missing.
func builtDaemon(target: String) -> (plugboard: String, root: String) {
    let binDir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    guard access(binDir + "/plugboard", X_OK) == 0, access(binDir + "/plugboard-worker", X_OK) == 0 else {
        print("build plugboard and plugboard-worker next to this tool first (`make \(target)`)")
        exit(1)
    }
    return (binDir + "/plugboard", root)
}

/// `count` small C plugins (`PREFIXi`, each compiled under its own name: the host checks the name
/// against the manifest) packed into `dir`, each signed with `key` when one is given.
func makeBenchPlugins(count: Int, into dir: String, work: String, root: String, prefix: String,
                      signedWith key: SigningKey?) throws {
    try FileManager.default.createDirectory(atPath: work + "/src", withIntermediateDirectories: true)
    let source = """
        #include <plugboard.h>
        static pb_status events(void *s, const pb_event *const *ev, uint32_t n) { (void)s; (void)ev; (void)n; return PB_OK; }
        static const pb_plugin_api table = { sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR), NAME, "1.0.0",
                                             NULL, events, NULL, NULL, NULL, NULL };
        PB_PLUGIN_ENTRY(in, out) { return pb_negotiate_default(in, out, &table); }
        """
    try source.write(toFile: work + "/src/p.c", atomically: true, encoding: .utf8)
    for i in 0..<count {
        let name = "\(prefix)\(i)"
        let lib = "\(dir)/lib\(name).so"
        let cc = Process()
        cc.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
        cc.arguments = ["-std=gnu11", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-I", root + "/SDK/include",
                        "-DNAME=\"\(name)\"", work + "/src/p.c", "-o", lib]
        try cc.run()
        cc.waitUntilExit()
        precondition(cc.terminationStatus == 0, "cc failed")
        let toml = "\(work)/src/\(name).toml"
        try "[plugin]\nname = \"\(name)\"\nversion = \"1.0.0\"\nlibrary = \"lib\(name).so\"\n\n[[match]]\nsubsystem = \"usb\"\n"
            .write(toFile: toml, atomically: true, encoding: .utf8)
        _ = try Packer.pack(tomlPath: toml, libraryPath: lib, output: "\(dir)/\(name).pbm")
        if let key { try PluginSignature.sign(manifestAt: "\(dir)/\(name).pbm", with: key) }
    }
}
