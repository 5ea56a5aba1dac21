import Foundation
import PlugboardCore
import PlugboardManifest
import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

/// What the control socket (`plugboard ctl`) asks of the host besides its status: production
/// reload (with a canary), quarantine release and calls of a plugin's exported functions.
/// Each refusal is a `PlugboardError` naming the plugin, the file and the fix.
extension HostAssembly {
    /// A plugin's new build as the plugin directories hold it now, checked as a start checks it.
    public struct Replacement: Sendable {
        public var path: String
        public var manifestPath: String?
        /// nil without manifests (`plugins.manifests = false`): the running build's settings stay.
        public var settings: ReloadSettings?
        /// SHA-256 of the `.so` when it was checked (a canary promotes only that file).
        public var digest: [UInt8]
    }

    /// Finds the new build of `name` the way a start would: its manifest read and validated,
    /// the `.so`'s hash checked against it, its signature verified when required, both files
    /// through the file trust check. Nothing is opened.
    public func replacement(for name: String) throws(PlugboardError) -> Replacement {
        guard let running = runtime.workers.first(where: { $0.name == name }) else {
            throw PlugboardError(code: "ctl.unknown-plugin", field: name, reason: "no plugin of that name is loaded",
                                 fix: "`plugboard ctl plugins` lists them; a new plugin needs a restart to be loaded")
        }
        var result: Replacement
        switch settings.discovery {
        case .allLibraries:
            result = Replacement(path: running.sourcePath, manifestPath: nil, settings: nil, digest: [])
        case .manifests:
            let registry = ManifestRegistry(cachePath: nil, lruCapacity: 0)
            let catalog = PluginCatalog.discover(dirs: settings.pluginDirectories, registry: registry,
                                                 verify: signatureCheck(registry: registry))
            guard let c = catalog.candidate(named: name) else {
                throw PlugboardError(code: "ctl.no-manifest", field: name,
                                     reason: "no manifest in \(settings.pluginDirectories.joined(separator: ", ")) names this plugin any more",
                                     fix: "install the new build's .so and .pbm in a plugin directory, keeping plugin.name")
            }
            if let skip = c.skip {
                throw PlugboardError(code: "ctl.refused", file: skip.file, field: name,
                                     reason: "the new build is refused: \(skip.detail)", fix: "correct it; the running build stays")
            }
            guard let manifest = c.manifest else {
                throw PlugboardError(code: "ctl.refused", file: c.libraryPath, field: name, reason: "the new build has no manifest",
                                     fix: "pack one next to it (plugboard pack)")
            }
            let config = PluginConfiguration(manifest.config.map { (key: $0.key, value: $0.value) })
                .overridden(by: settings.pluginConfiguration[name] ?? [:])
            let isolation = settings.isolation.isolation(for: name, manifest: manifest.worker.isolation)
            if isolation != running.isolation {
                throw PlugboardError(code: "ctl.isolation", file: c.manifestPath, field: "worker.isolation",
                                     reason: "the new build asks for isolation \"\(isolation.rawValue)\", the running one has \"\(running.isolation.rawValue)\"; a reload cannot change it",
                                     fix: "restart the daemon to change a plugin's isolation")
            }
            result = Replacement(path: c.libraryPath, manifestPath: c.manifestPath, settings: ReloadSettings(
                version: manifest.version, configuration: config, batchSize: settings.batchCeiling(for: manifest.worker),
                deadline: manifest.worker.deadlineMs == 0 ? nil : .milliseconds(Int(manifest.worker.deadlineMs)),
                filter: catalog.filter(for: name), manifest: PBMWriter.encode(manifest)), digest: [])
        }
        if let problem = [result.path, result.manifestPath].compactMap({ $0 }).lazy.compactMap({ self.untrusted($0) }).first {
            throw PlugboardError(code: "ctl.untrusted", file: result.path, field: name, reason: "untrusted: \(problem)",
                                 fix: "see plugins.trust in docs/security.md")
        }
        do { result.digest = try SHA256.hash(fileAt: result.path) } catch {
            throw PlugboardError(code: "ctl.unreadable", file: result.path, field: name, reason: "cannot read the new build: \(error)",
                                 fix: "check the file")
        }
        return result
    }

    /// Replaces the running plugin `name` with the build its plugin directory now holds
    /// (`plugboard ctl reload NAME`): cursor and state handed over, nothing lost or repeated.
    /// With `canary`, the new build first runs beside the running one (`Runtime.canary`).
    /// - Returns: the canary's report (nil without a canary).
    public func reloadPlugin(named name: String, canary: CanaryOptions?) throws(PlugboardError) -> CanaryReport? {
        if runtime.ring.isClosed {
            // The workers have read everything and wait for the shutdown: nothing to hand over.
            throw PlugboardError(code: "ctl.source-ended", field: name,
                                 reason: "the event source has ended (a finite replay or synthetic source), so there is nothing left to hand over",
                                 fix: "restart the daemon to run the new build")
        }
        let next = try replacement(for: name)
        func reload() throws(PluginLoadError) {
            try runtime.reload(pluginNamed: name, from: next.path, settings: next.settings)
        }
        do {
            guard let canary else {
                try reload()
                return nil
            }
            return try runtime.canary(pluginNamed: name, from: next.path, settings: next.settings, options: canary) { () throws(PluginLoadError) in
                // Promote only the very file the canary ran.
                let now = (try? SHA256.hash(fileAt: next.path)) ?? []
                guard now == next.digest else {
                    throw PluginLoadError(file: next.path, kind: .skipped(reason:
                        "the file changed during the canary, so the build tried is not the one there now (nothing changed; fix: run the canary again)"))
                }
                try reload()
            }
        } catch {
            throw PlugboardError(code: "ctl.reload", file: next.path, field: name, reason: "reload refused; the running build stays: \(error.description)")
        }
    }

    /// Ends the quarantine of `name` (`plugboard ctl quarantine release NAME`).
    public func releaseQuarantine(named name: String) throws(PlugboardError) {
        do { try runtime.releaseQuarantine(pluginNamed: name) } catch {
            throw PlugboardError(code: "ctl.release", field: name, reason: error.description)
        }
    }

    /// The manifest the running plugin `name` was loaded with, for `ctl call`.
    public func manifestPath(of name: String) throws(PlugboardError) -> String {
        guard let running = runtime.workers.first(where: { $0.name == name }) else {
            throw PlugboardError(code: "ctl.unknown-plugin", field: name, reason: "no plugin of that name is loaded",
                                 fix: "`plugboard ctl plugins` lists them")
        }
        let dir = (running.sourcePath as NSString).deletingLastPathComponent
        if case .manifests = settings.discovery {
            let registry = ManifestRegistry(cachePath: nil, lruCapacity: 0)
            let catalog = PluginCatalog.discover(dirs: [dir], registry: registry)
            if let path = catalog.candidate(named: name)?.manifestPath { return path }
        }
        throw PlugboardError(code: "ctl.no-manifest", file: running.sourcePath, field: name,
                             reason: "the plugin has no manifest, so it declares no [exports]",
                             fix: "declare the function in [exports] of its plugin.toml and pack it")
    }

    /// Calls a function the plugin `name` exports (`plugboard ctl call`): in a process of its
    /// own, as `plugins.worker_user`, with `timeout`, so neither a crash nor a hang of the
    /// function reaches the daemon. Runs `executable call --user UID:GID MANIFEST SYMBOL ARGS...`.
    /// - Returns: the exit status, stdout and stderr of the call.
    public func callExport(plugin name: String, symbol: String, arguments: [String], executable: String,
                           timeout: Duration) throws(PlugboardError) -> (status: ExitStatus, output: String, errors: String) {
        let manifest = try manifestPath(of: name)
        var args = ["call"]
        if let account = settings.isolation.policy.account { args += ["--user", "\(account.uid):\(account.gid)"] }
        args += [manifest, symbol] + arguments
        let process: ChildProcess
        let out: (read: FileDescriptor, write: FileDescriptor), err: (read: FileDescriptor, write: FileDescriptor)
        do throws(Errno) {
            out = try OutputPipe.make()
            err = try OutputPipe.make()
            process = try ChildProcess.spawn(executable, arguments: args, environment: ["SWIFT_BACKTRACE=enable=no"],
                                             descriptors: [], output: out.write, errors: err.write)
            try? out.write.close()
            try? err.write.close()
        } catch {
            throw PlugboardError(code: "ctl.call", field: name, reason: "cannot start the call: \(error)")
        }
        defer {
            try? out.read.close()
            try? err.read.close()
        }
        var collected: [[UInt8]] = [[], []]
        let limit = 1 << 20
        func drain() {
            var buffer = [UInt8](repeating: 0, count: 65536)
            for (i, fd) in [out.read, err.read].enumerated() {
                while collected[i].count < limit {
                    let n = buffer.withUnsafeMutableBytes { Glibc.read(fd.rawValue, $0.baseAddress, $0.count) }
                    if n <= 0 { break }
                    collected[i] += buffer[0..<n]
                }
            }
        }
        let clock = ContinuousClock()
        let end = clock.now + timeout
        var status: ExitStatus?
        while status == nil {
            var fds = [Poll.readable(out.read.rawValue), Poll.readable(err.read.rawValue), Poll.readable(process.pidfd.rawValue)]
            let left = end - clock.now
            if left <= .zero {
                process.signal(SIGKILL)
                _ = process.wait(timeout: .seconds(5))
                throw PlugboardError(code: "ctl.call-timeout", field: "\(name).\(symbol)",
                                     reason: "the call did not return within \(timeout.shortText) and was killed",
                                     fix: "an exported function must return promptly")
            }
            _ = try? Poll.wait(&fds, timeoutMilliseconds: Int32(max(1, min(left.milliseconds, 100))))
            drain()
            if fds[2].revents != 0 { status = process.wait(timeout: .seconds(1)) }
        }
        drain()
        return (status!, String(decoding: collected[0], as: UTF8.self), String(decoding: collected[1], as: UTF8.self))
    }
}
