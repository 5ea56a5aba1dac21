import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import PlugboardSystem
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What a hot-reloaded plugin's new worker receives from the one it replaces.
final class Handoff: Sendable {
    /// Signalled once the old worker stopped and handed over (the new one waits for it).
    let go = DispatchSemaphore(value: 0)
    /// The old plugin's `save_state`, if both builds implement state transfer.
    let state = Mutex<[UInt8]?>(nil)
}

/// The private copies hot reload opens new builds from: one file per reload in a directory of
/// this process's own, so `dlopen` never returns the old image for the same path or inode.
/// A copy is deleted when its build is replaced, whether or not its image could be closed (a
/// mapping outlives its file); the copy of the build running at exit stays in the directory.
final class ReloadCopies: Sendable {
    /// $TMPDIR, else /tmp.
    static var temporaryDirectory: String {
        if let t = getenv("TMPDIR"), t.pointee != 0 { return String(cString: t) }
        return "/tmp"
    }

    static let shared = ReloadCopies()
    private let made = Mutex<(directory: String?, count: Int, files: Set<String>)>((nil, 0, []))

    /// Copies `path` to a new private file and returns the copy's path.
    func copy(of path: String) throws(PluginLoadError) -> String {
        let target: String
        do {
            target = try made.withLock { m throws -> String in
                if m.directory == nil {
                    do throws(Errno) {
                        m.directory = try FileSystem.makeTemporaryDirectory(prefix: "\(Self.temporaryDirectory)/plugboard-reload-")
                    } catch {
                        throw PlugboardError(code: "reload.dir", reason: "\(error.call): \(error.reason)")
                    }
                }
                m.count += 1
                let name = "\(m.count)-" + (path.split(separator: "/").last.map(String.init) ?? "plugin.so")
                let t = m.directory! + "/" + name
                m.files.insert(t)
                return t
            }
            let bytes = try FileDescriptor.readContents(of: path)
            let out = try FileDescriptor.open(target, [.writeOnly, .create, .truncate], permissions: 0o755)
            try out.closeAfter { () throws(Errno) in try out.writeAll(bytes) }
        } catch {
            throw PluginLoadError(file: path, kind: .unreadable(error))
        }
        return target
    }

    /// Deletes `path` if it is one of the copies (other paths are left alone).
    func remove(_ path: String) {
        let mine = made.withLock { $0.files.remove(path) != nil }
        if mine { try? FileSystem.unlink(path) }
    }
}
