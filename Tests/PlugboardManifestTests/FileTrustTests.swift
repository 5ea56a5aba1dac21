import Foundation
import PlugboardManifest
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// plugins.trust (docs/security.md): what a careless operator or another local user can do to a
/// plugin directory, and what the daemon then refuses, naming the path, the owner, the mode and the fix.
@Suite("File trust: plugins in unsafe places are refused (plugins.trust)", .serialized)
struct FileTrustTests {
    var plugboard: String { TestSupport.buildDir + "/plugboard" }

    func run(_ args: [String]) throws -> (status: Int32, output: String) { try TestSupport.runPlugboard(args) }

    /// A directory holding device-counter with its manifest.
    func bed() throws -> String {
        let dir = TestSupport.makeTempDir("trust")
        chmod(dir, 0o755)
        try TestSupport.install("device-counter", into: dir, from: "device-counter")
        return dir
    }

    func runIt(_ dir: String, _ extra: [String] = []) throws -> (status: Int32, output: String) {
        try run(["run", "--plugins", dir, "--registry-cache", "none", "--source", "synthetic:10"] + extra)
    }

    func running(_ output: String) -> Bool {
        output.range(of: #"device-counter\s+stopped\s+10\s"#, options: .regularExpression) != nil
    }

    @Test("a control run: a root-owned, 0755 directory and 0644/0755 files load")
    func trustedLoads() throws {
        let dir = try bed()
        defer { TestSupport.cleanup(dir) }
        let r = try runIt(dir)
        #expect(r.status == 0 && running(r.output), "\(r.output)")
        #expect(!r.output.contains("untrusted"))
    }

    @Test("a world-writable .so is refused with its path, owner, mode and the fix; under warn it loads with a warning; off says nothing")
    func worldWritableLibrary() throws {
        guard geteuid() == 0 else { return }
        let dir = try bed()
        defer { TestSupport.cleanup(dir) }
        chmod("\(dir)/libdevice-counter.so", 0o666)
        let strict = try runIt(dir)
        #expect(!running(strict.output), "\(strict.output)")
        #expect(strict.output.contains("\(dir)/libdevice-counter.so is writable by group or others: owner root (uid 0), mode 666 (fix: chmod go-w \(dir)/libdevice-counter.so)"),
                "\(strict.output)")
        let warn = try runIt(dir, ["--set", "plugins.trust=warn"])
        #expect(running(warn.output), "\(warn.output)")
        #expect(warn.output.contains("plugins.trust = warn: loading anyway"), "\(warn.output)")
        let off = try runIt(dir, ["--set", "plugins.trust=off"])
        #expect(running(off.output) && !off.output.contains("writable by group"), "\(off.output)")
    }

    @Test("a group-writable plugin directory is refused, naming the directory above the file")
    func groupWritableDirectory() throws {
        let dir = try bed()
        defer { TestSupport.cleanup(dir) }
        chmod(dir, 0o775)
        let r = try runIt(dir)
        #expect(!running(r.output), "\(r.output)")
        #expect(r.output.contains("\(dir) (above \(dir)/libdevice-counter.so) is writable by group or others"), "\(r.output)")
    }

    @Test("a .so or .pbm owned by another user is refused, naming the user")
    func foreignOwner() throws {
        guard geteuid() == 0 else { return }
        for file in ["libdevice-counter.so", "device-counter.pbm"] {
            let dir = try bed()
            defer { TestSupport.cleanup(dir) }
            chown("\(dir)/\(file)", 65534, 65534)
            let r = try runIt(dir)
            #expect(!running(r.output), "\(r.output)")
            #expect(r.output.contains("\(dir)/\(file) is owned by a user the daemon does not trust: owner"), "\(r.output)")
            #expect(r.output.contains("(uid 65534)"), "\(r.output)")
        }
    }

    @Test("a symlink from a trusted directory into a world-writable one is judged by where it leads")
    func symlinkResolved() throws {
        let dir = try bed()
        defer { TestSupport.cleanup(dir) }
        let open = TestSupport.makeTempDir("open")
        defer { TestSupport.cleanup(open) }
        chmod(open, 0o777)  // writable by anyone, no sticky bit
        try FileManager.default.moveItem(atPath: "\(dir)/libdevice-counter.so", toPath: "\(open)/libdevice-counter.so")
        symlink("\(open)/libdevice-counter.so", "\(dir)/libdevice-counter.so")
        let r = try runIt(dir)
        #expect(!running(r.output), "\(r.output)")
        #expect(r.output.contains("\(open) (above \(open)/libdevice-counter.so) is writable by group or others")
                || r.output.contains("\(open) (above \(dir)/libdevice-counter.so) is writable by group or others"), "\(r.output)")
    }

    @Test("without manifests the same check applies; a sticky world-writable directory above a root-owned entry is fine")
    func withoutManifests() throws {
        let dir = try bed()
        defer { TestSupport.cleanup(dir) }
        // /tmp (1777) is above every fixture: the control run passing shows the sticky rule.
        chmod("\(dir)/libdevice-counter.so", 0o646)
        let r = try run(["run", "--plugins", dir, "--ignore-manifests", "--source", "synthetic:10"])
        #expect(!running(r.output), "\(r.output)")
        #expect(r.output.contains("untrusted:") && r.output.contains("mode 646"), "\(r.output)")
    }
}
