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

    public init(device: UInt64, inode: UInt64, size: UInt64, mtimeNs: Int64) {
        self.device = device
        self.inode = inode
        self.size = size
        self.mtimeNs = mtimeNs
    }

    /// `stat(2)` of `path`, or nil when it does not exist or is not a regular file.
    /// The corresponding C function is `stat`.
    public static func of(path: String) -> FileKey? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return FileKey(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: UInt64(st.st_size),
                       mtimeNs: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
    }
}

/// A read-only memory map of a whole file; unmapped on deinit. Empty files map to an empty buffer.
public final class MappedFile: Sendable {
    // The mapping is read-only (PROT_READ, MAP_PRIVATE) and never changes after init, so sharing
    // the address across threads is safe; the pointer is stored as an integer to stay Sendable.
    private let address: UInt
    public let count: Int
    public let key: FileKey

    /// The corresponding C functions are `open`, `fstat` and `mmap`.
    public init(path: String, check: ManifestError.Check, field: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            throw ManifestError(check, file: path, field: field, problem: "cannot open the file: \(String(cString: strerror(e)))",
                                fix: e == ENOENT ? "check the path (or build and pack the plugin first)" : "check the file's permissions")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw ManifestError(check, file: path, field: field, problem: "not a regular file", fix: "point at the file itself")
        }
        key = FileKey(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: UInt64(st.st_size),
                      mtimeNs: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
        count = Int(st.st_size)
        if count == 0 {
            address = 0
            return
        }
        let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            let e = errno
            throw ManifestError(check, file: path, field: field, problem: "cannot map the file: \(String(cString: strerror(e)))",
                                fix: "check free memory and the file system")
        }
        address = UInt(bitPattern: p)
    }

    /// The file's bytes; valid while this object lives.
    public var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: address), count: count)
    }

    deinit {
        if let p = UnsafeMutableRawPointer(bitPattern: address) { munmap(p, count) }
    }
}

/// Small POSIX file helpers shared by the packer and the registry.
public enum FileIO {
    /// Writes `bytes` to `path` atomically: a temporary file in the same directory, `fsync`, `rename`,
    /// then `fsync` of the directory, so a crash leaves either the old file or the new one.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, check: ManifestError.Check, field: String) throws {
        let tmp = "\(path).tmp.\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw ManifestError(check, file: path, field: field, problem: "cannot create \(tmp): \(String(cString: strerror(errno)))",
                                fix: "check that the directory exists and is writable")
        }
        var ok = bytes.withUnsafeBytes { buf -> Bool in
            var off = 0
            while off < buf.count {
                let n = write(fd, buf.baseAddress! + off, buf.count - off)
                if n < 0 { if errno == EINTR { continue }; return false }
                off += n
            }
            return true
        }
        ok = ok && fsync(fd) == 0
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            let e = errno
            unlink(tmp)
            throw ManifestError(check, file: path, field: field, problem: "cannot write the file: \(String(cString: strerror(e)))",
                                fix: "check free space and permissions")
        }
        let dir = directory(of: path)
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
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
        guard let d = opendir(dir) else { return nil }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public static func readAll(_ path: String, check: ManifestError.Check, field: String) throws -> [UInt8] {
        let m = try MappedFile(path: path, check: check, field: field)
        return Array(m.bytes)
    }
}
