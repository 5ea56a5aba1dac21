import Foundation
import PlugboardTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The Debian package (`make deb`, which `make test` builds first), as an operator meets it on a
/// machine without the Swift toolchain: its file list and control data, then the binaries run from
/// the unpacked package with /opt/swift hidden (a tmpfs over it in a mount namespace of their own),
/// and an outside author's plugin made with the installed header and templates.
@Suite("Debian package: contents, and the daemon and SDK without the toolchain", .serialized)
struct PackageTests {
    var deb: String {
        get throws {
            let dir = packageRoot + "/build"
            let debs = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix("plugboard_") && $0.hasSuffix(".deb") }
            let name = try #require(debs.sorted().last, "no build/plugboard_*.deb (fix: make deb; make test builds it)")
            return dir + "/" + name
        }
    }

    func sh(_ script: String, _ args: [String] = [], env: [String: String] = [:]) throws -> ProcessResult {
        var environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": NSTemporaryDirectory()]
        environment.merge(env) { $1 }
        if let user = ProcessInfo.processInfo.environment["PLUGBOARD_PLUGINS_WORKER_USER"] { environment["PLUGBOARD_PLUGINS_WORKER_USER"] = user }
        return try runProcess("/bin/sh", ["-c", script, "sh"] + args, env: environment)
    }

    /// Runs `script` with /opt/swift hidden: a new mount namespace with an empty tmpfs over it.
    func withoutToolchain(_ script: String, _ args: [String] = []) throws -> ProcessResult {
        try sh("exec unshare -m /bin/sh -c 'mount -t tmpfs none /opt/swift && test ! -e /opt/swift/usr && exec /bin/sh -c \"$0\" sh \"$@\"' "
               + "'\(script.replacingOccurrences(of: "'", with: "'\\''"))' \"$@\"", args)
    }

    @Test("the package holds the binaries, the SDK, the unit, the conffile, completions, man pages, docs and monitoring")
    func contents() throws {
        let deb = try self.deb
        let list = try sh("dpkg-deb -c \"$1\"", [deb])
        #expect(list.status == 0, "\(list.stderr)")
        for path in ["./usr/bin/plugboard", "./usr/lib/plugboard/plugboard-worker", "./usr/include/plugboard/plugboard.h",
                     "./usr/share/pkgconfig/plugboard.pc", "./usr/share/plugboard/templates/c/plugin.c",
                     "./usr/share/plugboard/templates/swift/Package.swift", "./usr/share/plugboard/sdk/swift/Package.swift",
                     "./lib/systemd/system/plugboard.service", "./etc/plugboard/plugboard.toml", "./etc/plugboard/trusted.d/",
                     "./usr/share/bash-completion/completions/plugboard", "./usr/share/zsh/vendor-completions/_plugboard",
                     "./usr/share/fish/vendor_completions.d/plugboard.fish", "./usr/share/man/man1/plugboard.1.gz",
                     "./usr/share/man/man1/plugboard.serve.1.gz", "./usr/share/man/man1/plugboard.ctl.1.gz", "./usr/share/doc/plugboard/security.md",
                     "./usr/share/doc/plugboard/copyright", "./usr/share/plugboard/monitoring/alert-rules.yml",
                     "./usr/share/plugboard/monitoring/grafana-dashboard.json", "./usr/lib/plugboard/examples/plugins/libusb-logger.so",
                     "./usr/lib/plugboard/examples/plugins/usb-logger.pbm", "./usr/share/doc/plugboard/changelog.gz"] {
            #expect(list.stdout.contains(" \(path)\n"), "\(path) is not in the package")
        }
        #expect(!list.stdout.contains("./usr/lib/plugboard/plugins/lib"), "nothing is loaded unless the operator installs it")
        #expect(!list.stdout.contains(".build"), "no build tree in the package")
        let owners = try sh("dpkg-deb -c \"$1\" | awk '{print $2}' | sort -u", [deb])
        #expect(owners.stdout == "root/root\n", "files owned by root: \(owners.stdout)")
        let control = try sh("dpkg-deb -f \"$1\" Package Version Architecture Depends", [deb])
        #expect(control.stdout.contains("Package: plugboard"))
        #expect(control.stdout.contains("Depends: libc6, libstdc++6, libgcc-s1, libudev1, libhiredis0.14, libffi8, libssl3, adduser"))
        let meta = try sh("d=$(mktemp -d) && dpkg-deb -e \"$1\" $d && cat $d/conffiles && cat $d/postinst", [deb])
        #expect(meta.stdout.contains("/etc/plugboard/plugboard.toml\n"))
        #expect(meta.stdout.contains("adduser --system --group"), "postinst makes the plugboard user")
        // The unit in the package points at the packaged binary and passes systemd-analyze verify.
        let unit = try sh("d=$(mktemp -d) && dpkg-deb -x \"$1\" $d && grep ExecStart $d/lib/systemd/system/plugboard.service", [deb])
        #expect(unit.stdout.contains("ExecStart=/usr/bin/plugboard serve --config /etc/plugboard/plugboard.toml"))
        // Debian's own package checker: no errors (warnings are listed in docs/operations.md).
        let lint = try sh("lintian --tag-display-limit 0 \"$1\" 2>&1", [deb])
        let errors = lint.stdout.split(separator: "\n").filter { $0.hasPrefix("E: ") }
        #expect(errors.isEmpty, "lintian: \(errors.joined(separator: "\n"))")
    }

    @Test("unpacked, with /opt/swift hidden: --version, run with the packaged worker on a replay, serve until SIGTERM")
    func runsWithoutToolchain() throws {
        let deb = try self.deb
        let root = TempDir()
        #expect(try sh("dpkg-deb -x \"$1\" \"$2\"", [deb, root.path]).status == 0)
        // The toolchain really is needed by a dynamically linked Swift binary: the debug build fails there.
        let control = try withoutToolchain("\"$1\" --version", [try #require(productBinary("plugboard"))])
        #expect(control.status != 0, "the test's toolchain hiding works: \(control.stdout)")
        let version = try withoutToolchain("\"$1\"/usr/bin/plugboard --version", [root.path])
        #expect(version.status == 0, "\(version.stderr)")
        #expect(version.stdout.hasPrefix("plugboard "), "\(version.stdout)")
        let session = packageRoot + "/demo/session.jsonl"
        let run = try withoutToolchain("""
            "$1"/usr/bin/plugboard run --plugins "$1"/usr/lib/plugboard/examples/plugins --registry-cache none \
              --source replay:"$2" --pace fast --set plugins.worker_executable="$1"/usr/lib/plugboard/plugboard-worker \
              --plugin-config usb-logger.output=/dev/null
            """, [root.path, session])
        #expect(run.status == 0, "\(run.stderr)")
        // Both sample plugins ran in worker processes of the packaged worker and saw the 9 events.
        let rows = run.stdout.split(separator: "\n").filter { $0.hasPrefix("usb-logger ") || $0.hasPrefix("device-counter ") }
        #expect(rows.count == 2 && rows.allSatisfy { $0.contains(" 9 ") && $0.hasSuffix("process") }, "\(run.stdout) \(run.stderr)")
        #expect(!run.stdout.contains("rejected plugins"), "\(run.stdout)")
        let serve = try withoutToolchain("""
            "$1"/usr/bin/plugboard serve --plugins "$1"/usr/lib/plugboard/examples/plugins --set plugins.registry_cache=none \
              --source replay:"$2" --set plugins.worker_executable="$1"/usr/lib/plugboard/plugboard-worker \
              --plugin-config usb-logger.output=/dev/null --listen 127.0.0.1:0 --set control.socket="$1"/ctl.sock > "$3" 2>&1 &
            pid=$!
            i=0; while [ $i -lt 300 ] && ! grep -q 'listening on' "$3"; do sleep 0.1; i=$((i+1)); done
            sleep 0.5
            "$1"/usr/bin/plugboard ctl status --socket "$1"/ctl.sock; echo "ctl=$?"
            kill -TERM $pid; wait $pid; echo "exit=$?"; cat "$3"
            """, [root.path, session, root.path + "/serve.log"])
        #expect(serve.stdout.contains("exit=0"), "\(serve.stdout) \(serve.stderr)")
        #expect(serve.stdout.contains("listening on http://127.0.0.1:"))
        // The packaged control client asks the packaged daemon, both without the toolchain.
        #expect(serve.stdout.contains("ctl=0") && serve.stdout.contains("plugins: 2 running"), "\(serve.stdout)")
    }

    @Test("a Swift plugin built with the toolchain loads in the packaged (statically linked) daemon's worker process")
    func swiftPluginInPackagedWorker() throws {
        let deb = try self.deb
        let root = TempDir()
        #expect(try sh("dpkg-deb -x \"$1\" \"$2\"", [deb, root.path]).status == 0)
        let dir = root.path + "/swift-plugins"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let library = try #require(productBinary("libswift-counter.so"))
        let r = try sh("""
            cp "$3" "$2"/libswift-counter.so && "$1"/usr/bin/plugboard pack "$4"/SamplePlugins/swift-counter/plugin.toml \
              --library "$2"/libswift-counter.so -o "$2"/swift-counter.pbm >/dev/null &&
            "$1"/usr/bin/plugboard run --plugins "$2" --registry-cache none --source synthetic:500
            """, [root.path, dir, library, packageRoot])
        #expect(r.status == 0, "\(r.stderr)")
        let row = r.stdout.split(separator: "\n").first { $0.hasPrefix("swift-counter ") }
        #expect(row?.contains(" 500 ") == true && row?.hasSuffix("process") == true, "\(r.stdout) \(r.stderr)")
        #expect(r.stdout.contains("swift-counter/summary: {\"events\":500"))
    }

    @Test("an outside author on the installed SDK, without the toolchain: plugboard new, make, make test")
    func newPluginFromInstalledSDK() throws {
        let deb = try self.deb
        let root = TempDir()
        #expect(try sh("dpkg-deb -x \"$1\" \"$2\"", [deb, root.path]).status == 0)
        let r = try withoutToolchain("""
            cd "$2" && "$1"/usr/bin/plugboard new outside --language c && make -C outside && make -C outside test
            """, [root.path, root.path])
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        let made = try String(contentsOfFile: root.path + "/outside/Makefile", encoding: .utf8)
        #expect(made.contains(root.path + "/usr/include/plugboard"), "the installed header, not a build tree")
        #expect(!made.contains(packageRoot), "no path into the source tree")
        #expect(FileManager.default.fileExists(atPath: root.path + "/outside/outside.pbm"))
    }
}
