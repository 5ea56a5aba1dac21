import CPlugboardSupport
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Development hot reload (`plugboard run --watch`): watches the plugin directories with
/// inotify and, when the `.so` of a running plugin is rewritten (closed after writing) or
/// replaced (renamed into place), reloads it with `Runtime.reload`. Changes are gathered until
/// the directory has been quiet for `settle` (a linker writes in several steps). A failed reload
/// is logged with the reason and leaves the running version in place.
public final class PluginWatcher: Sendable {
    private let thread: NativeThread
    private let stopFD: Int32
    private let stopped = Atomic<Bool>(false)
    /// Reloads done and refused so far.
    public final class Counts: Sendable {
        public let reloads = Atomic<Int>(0)
        public let failures = Atomic<Int>(0)
    }
    public let counts = Counts()

    /// - Throws: `PlugboardError` when inotify is unavailable or a directory cannot be watched.
    public init(runtime: Runtime, directories: [String], settle: Duration = .milliseconds(200), logger: Logger) throws {
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else {
            throw PlugboardError(code: "watch.inotify", reason: "inotify_init1: \(errnoDescription(errno))",
                                 fix: "raise fs.inotify.max_user_instances, or run without --watch")
        }
        var directoryOf: [Int32: String] = [:]
        for dir in directories {
            let wd = inotify_add_watch(fd, dir, UInt32(IN_CLOSE_WRITE | IN_MOVED_TO))
            guard wd >= 0 else {
                let e = errno
                close(fd)
                throw PlugboardError(code: "watch.dir", file: dir, reason: "cannot watch the plugin directory: \(errnoDescription(e))",
                                     fix: "check the path, or raise fs.inotify.max_user_watches")
            }
            directoryOf[wd] = dir.hasSuffix("/") ? String(dir.dropLast()) : dir
        }
        let stop = pbs_eventfd()
        stopFD = stop
        let settleMs = Int32(max(1, settle.components.seconds * 1000 + settle.components.attoseconds / 1_000_000_000_000_000))
        let counts = self.counts
        let watched = directoryOf
        thread = NativeThread(name: "pb-watch") {
            defer { close(fd) }
            var changed: [String] = []
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: 64 * 1024, alignment: 8)
            defer { buffer.deallocate() }
            while true {
                var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: stop, events: Int16(POLLIN), revents: 0)]
                let n = poll(&fds, 2, changed.isEmpty ? -1 : settleMs)
                if n < 0 && errno == EINTR { continue }
                if fds[1].revents != 0 { return }
                if n == 0 {
                    // Quiet for `settle`: reload what changed, each once.
                    for path in Set(changed).sorted() {
                        Self.reload(path, runtime: runtime, logger: logger, counts: counts)
                    }
                    changed.removeAll()
                    continue
                }
                let got = read(fd, buffer, 64 * 1024)
                guard got > 0 else { continue }
                var at = 0
                while at + 16 <= got {
                    let wd = buffer.load(fromByteOffset: at, as: Int32.self)
                    let nameLength = Int(buffer.load(fromByteOffset: at + 12, as: UInt32.self))
                    let name = nameLength == 0 ? "" : String(cString: (buffer + at + 16).assumingMemoryBound(to: CChar.self))
                    if name.hasSuffix(".so"), !name.hasPrefix("."), let dir = watched[wd] { changed.append(dir + "/" + name) }
                    at += 16 + nameLength
                }
            }
        }
    }

    private static func reload(_ path: String, runtime: Runtime, logger: Logger, counts: Counts) {
        guard let running = runtime.workers.first(where: { $0.sourcePath == path && $0.state == .running }) else {
            logger.notice("a plugin file changed that is not running; restart to load it", metadata: ["path": "\(path)"])
            return
        }
        do {
            try runtime.reload(pluginNamed: running.plugin.name, from: path)
            counts.reloads.add(1, ordering: .relaxed)
        } catch {
            counts.failures.add(1, ordering: .relaxed)
            logger.error("hot reload refused; the running version stays: \(error.description)")
        }
    }

    /// Stops watching (waits for the watcher thread, so no reload is under way once it
    /// returns). Later calls do nothing.
    public func stop() {
        if stopped.exchange(true, ordering: .relaxed) { return }
        var one: UInt64 = 1
        _ = write(stopFD, &one, 8)
        thread.join()
        close(stopFD)
    }
}
