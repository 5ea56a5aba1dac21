import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

/// What identifies a file's version for the registry: device, inode, size and mtime in nanoseconds.
/// A `touch`, a rewrite or a replacement (new inode after `mv`/`cp`) all change it.
public struct FileKey: Sendable, Equatable, Hashable {
    public var device: UInt64
    public var inode: UInt64
    public var size: UInt64
    public var mtimeNs: Int64
    /// Last status change (ns). Any write moves it, and `utimes`/`touch -d` cannot set it back, so
    /// a file patched in place with its size and mtime restored still gets a new key (issue 12).
    public var ctimeNs: Int64

    public init(device: UInt64, inode: UInt64, size: UInt64, mtimeNs: Int64, ctimeNs: Int64) {
        self.device = device
        self.inode = inode
        self.size = size
        self.mtimeNs = mtimeNs
        self.ctimeNs = ctimeNs
    }

    /// `stat(2)` of `path`, or nil when it does not exist or is not a regular file.
    /// The corresponding C function is `stat`.
    public static func of(path: String) -> FileKey? {
        guard let st = try? FileStatus.of(path: path), st.isRegularFile else { return nil }
        return FileKey(st)
    }

    init(_ st: FileStatus) {
        self.init(device: st.device, inode: st.inode, size: UInt64(st.size), mtimeNs: st.modificationNanoseconds,
                  ctimeNs: st.changeNanoseconds)
    }
}

/// A read-only memory map of a whole file; unmapped on deinit. Empty files map to an empty buffer.
public final class MappedFile: Sendable {
    // The mapping is read-only (PROT_READ, MAP_PRIVATE) and never changes after init, so sharing
    // it across threads is safe. nil for an empty file (mmap cannot map zero bytes).
    private let region: MappedRegion?
    public let count: Int
    public let key: FileKey

    /// The corresponding C functions are `open`, `fstat` and `mmap`.
    public init(path: String, check: ManifestError.Check, field: String) throws {
        let fd: FileDescriptor
        do throws(Errno) {
            fd = try FileDescriptor.open(path)
        } catch {
            throw ManifestError(check, file: path, field: field, problem: "cannot open the file: \(error.reason)",
                                fix: error.code == ENOENT ? "check the path (or build and pack the plugin first)" : "check the file's permissions")
        }
        defer { try? fd.close() }
        let st: FileStatus
        do throws(Errno) {
            st = try fd.status()
        } catch {
            throw ManifestError(check, file: path, field: field, problem: "cannot stat the file: \(error.reason)",
                                fix: "check the file system")
        }
        guard st.isRegularFile else {
            throw ManifestError(check, file: path, field: field, problem: "not a regular file", fix: "point at the file itself")
        }
        key = FileKey(st)
        count = st.size
        if count == 0 {
            region = nil
            return
        }
        do throws(Errno) {
            region = try MappedRegion(fd: fd, count: count)
        } catch {
            throw ManifestError(check, file: path, field: field, problem: "cannot map the file: \(error.reason)",
                                fix: "check free memory and the file system")
        }
    }

    /// The file's bytes; valid while this object lives.
    public var bytes: UnsafeRawBufferPointer {
        region?.bytes ?? UnsafeRawBufferPointer(start: nil, count: 0)
    }
}

/// Small POSIX file helpers shared by the packer and the registry.
public enum FileIO {
    /// Writes `bytes` to `path` atomically: a temporary file in the same directory, `fsync`, `rename`,
    /// then `fsync` of the directory, so a crash leaves either the old file or the new one.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, check: ManifestError.Check, field: String) throws {
        let tmp = "\(path).tmp.\(getpid())"
        let fd: FileDescriptor
        do throws(Errno) {
            fd = try FileDescriptor.open(tmp, [.writeOnly, .create, .truncate], permissions: 0o644)
        } catch {
            throw ManifestError(check, file: path, field: field, problem: "cannot create \(tmp): \(error.reason)",
                                fix: "check that the directory exists and is writable")
        }
        do throws(Errno) {
            try fd.closeAfter { () throws(Errno) in
                try fd.writeAll(bytes)
                try fd.sync()
            }
            try FileSystem.rename(tmp, to: path)
        } catch {
            try? FileSystem.unlink(tmp)
            throw ManifestError(check, file: path, field: field, problem: "cannot write the file: \(error.call): \(error.reason)",
                                fix: "check free space and permissions")
        }
        // The rename is durable once the directory is synced; failing that is not worth failing the write.
        if let dfd = try? FileDescriptor.open(directory(of: path), .directory) {
            try? dfd.sync()
            try? dfd.close()
        }
    }

    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    public static func join(_ dir: String, _ name: String) -> String {
        dir.hasSuffix("/") ? dir + name : dir + "/" + name
    }

    /// Names in `dir` (not `.`/`..`), sorted; nil when it cannot be read. The C function is `readdir`.
    public static func list(_ dir: String) -> [String]? {
        try? FileSystem.entries(in: dir)
    }

    public static func readAll(_ path: String, check: ManifestError.Check, field: String) throws -> [UInt8] {
        let m = try MappedFile(path: path, check: check, field: field)
        return Array(m.bytes)
    }
}
