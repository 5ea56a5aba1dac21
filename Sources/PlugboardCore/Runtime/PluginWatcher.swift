import CPlugboardSupport
import Logging
import PlugboardSystem
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Development hot reload (`plugboard run --watch`): watches the plugin directories with
/// inotify and, when the `.so` of a running plugin is rewritten (closed after writing) or
/// replaced (renamed into place), reloads it with `Runtime.reload`. A rename is atomic (the file
/// is whole when it appears), so it is reloaded at once; a file rewritten in place is reloaded
/// once the directory has been quiet for `settle` (a linker writes in several steps). A failed
/// reload is logged with the reason and leaves the running version in place.
public final class PluginWatcher: Sendable {
    private let thread: NativeThread
    private let stopEvent: EventFD
    private let stopped = Atomic<Bool>(false)
    /// Reloads done and refused so far.
    public final class Counts: Sendable {
        public let reloads = Atomic<Int>(0)
        public let failures = Atomic<Int>(0)
    }
    public let counts = Counts()

    /// - Throws: `PlugboardError` when inotify is unavailable or a directory cannot be watched.
    public init(runtime: Runtime, directories: [String], settle: Duration = .milliseconds(200), logger: Logger) throws {
        let inotify: Inotify
        do throws(Errno) {
            inotify = try Inotify()
        } catch {
            throw PlugboardError(code: "watch.inotify", reason: "\(error.call): \(error.reason)",
                                 fix: "raise fs.inotify.max_user_instances, or do not watch the plugin directories")
        }
        var directoryOf: [Int32: String] = [:]
        for dir in directories {
            do throws(Errno) {
                let wd = try inotify.addWatch(dir, mask: UInt32(IN_CLOSE_WRITE | IN_MOVED_TO))
                directoryOf[wd] = dir.hasSuffix("/") ? String(dir.dropLast()) : dir
            } catch {
                try? inotify.close()
                throw PlugboardError(code: "watch.dir", file: dir, reason: "cannot watch the plugin directory: \(error.reason)",
                                     fix: "check the path, or raise fs.inotify.max_user_watches")
            }
        }
        let stop: EventFD
        do throws(Errno) {
            stop = try EventFD()
        } catch {
            try? inotify.close()
            throw PlugboardError(code: "watch.eventfd", reason: "\(error.call): \(error.reason)",
                                 fix: "raise the open file limit (ulimit -n), or do not watch the plugin directories")
        }
        stopEvent = stop
        let settleMs = Int32(clamping: max(1, settle.milliseconds))
        let counts = self.counts
        let watched = directoryOf
        thread = NativeThread(name: "pb-watch") {
            defer { try? inotify.close() }
            var changed: [String] = []
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 8)
            defer { buffer.deallocate() }
            while true {
                var fds = [Poll.readable(inotify.descriptor.rawValue), Poll.readable(stop.rawValue)]
                let n: Int
                do {
                    n = try Poll.wait(&fds, timeoutMilliseconds: changed.isEmpty ? -1 : settleMs)
                } catch {
                    logger.error("hot reload stops watching: \(error)")
                    return
                }
                if fds[1].revents != 0 { return }
                if n == 0 {
                    // Quiet for `settle`: reload what changed, each once.
                    for path in Set(changed).sorted() {
                        Self.reload(path, runtime: runtime, logger: logger, counts: counts)
                    }
                    changed.removeAll()
                    continue
                }
                guard let events = try? inotify.readEvents(into: buffer) else { continue }
                var replaced: [String] = []
                for event in events where event.name.hasSuffix(".so") && !event.name.hasPrefix(".") {
                    guard let dir = watched[event.watch] else { continue }
                    let path = dir + "/" + event.name
                    if event.mask & UInt32(IN_MOVED_TO) != 0 { replaced.append(path) } else { changed.append(path) }
                }
                // Renamed into place: whole already, no reason to wait (a write in place still settles).
                for path in Set(replaced).sorted() {
                    changed.removeAll { $0 == path }
                    Self.reload(path, runtime: runtime, logger: logger, counts: counts)
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
            try runtime.reload(pluginNamed: running.name, from: path)
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
        try? stopEvent.signal()
        thread.join()
        try? stopEvent.close()
    }
}
