import CPlugboardSupport

#if canImport(Glibc)
import Glibc
#endif

/// An open file descriptor. A value type like swift-system's: copying it does not duplicate the
/// descriptor, and nothing closes it but `close()` (or `closeAfter`). Errors are `Errno` naming
/// the call and, when the descriptor was opened by path here, the path.
public struct FileDescriptor: Sendable, Hashable {
    /// The descriptor number.
    public let rawValue: CInt
    /// The path it was opened from, for error messages (nil for memfds, eventfds, inherited fds).
    public let path: String?

    public init(rawValue: CInt, path: String? = nil) {
        self.rawValue = rawValue
        self.path = path
    }

    /// How to open a file: `O_RDONLY`, `O_WRONLY | O_CREAT | O_TRUNC`... `O_CLOEXEC` is always added.
    public struct Options: OptionSet, Sendable {
        public let rawValue: CInt
        public init(rawValue: CInt) { self.rawValue = rawValue }
        public static let readOnly = Options([])
        public static let writeOnly = Options(rawValue: O_WRONLY)
        public static let readWrite = Options(rawValue: O_RDWR)
        public static let create = Options(rawValue: O_CREAT)
        public static let truncate = Options(rawValue: O_TRUNC)
        public static let exclusive = Options(rawValue: O_EXCL)
        public static let directory = Options(rawValue: O_DIRECTORY)
        public static let nonBlocking = Options(rawValue: O_NONBLOCK)
    }

    /// Opens `path` (close-on-exec), retrying on `EINTR`.
    /// The corresponding C function is `open`.
    /// - Throws: `Errno` with call `open` and the path (`ENOENT`, `EACCES`, `EMFILE`...).
    public static func open(_ path: String, _ options: Options = .readOnly,
                            permissions: mode_t = 0o644) throws(Errno) -> FileDescriptor {
        let fd = try retryOnInterrupt("open", path: path) {
            system_open(path, options.rawValue | O_CLOEXEC, permissions)
        }
        return FileDescriptor(rawValue: fd, path: path)
    }

    /// Closes the descriptor. `EINTR` is neither retried nor reported: Linux has released the
    /// descriptor already, and a retry could close one another thread just opened.
    /// The corresponding C function is `close`.
    /// - Throws: `Errno` with call `close` (`EIO`: data written earlier may be lost; `EBADF`).
    public func close() throws(Errno) {
        do {
            _ = try valueOrErrno("close", path: path) { system_close(rawValue) }
        } catch where error.code == EINTR {
            return
        }
    }

    /// Runs `body`, then closes the descriptor (ignoring a close error: the result is what counts).
    public func closeAfter<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        defer { _ = system_close(rawValue) }
        return try body()
    }

    /// Reads up to `buffer.count` bytes, retrying on `EINTR`. Returns the count read (0 at the end
    /// of the file). The corresponding C function is `read`.
    /// - Throws: `Errno` (`EAGAIN` on a non-blocking descriptor with nothing to read).
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        try retryOnInterrupt("read", path: path) { system_read(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Reads up to `buffer.count` bytes at `offset`, retrying on `EINTR`; the file position is
    /// unchanged. The corresponding C function is `pread`.
    public func read(fromAbsoluteOffset offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        try retryOnInterrupt("pread", path: path) {
            system_pread(rawValue, buffer.baseAddress, buffer.count, off_t(offset))
        }
    }

    /// Reads exactly `count` bytes at `offset`, or fewer when the file ends first.
    /// The corresponding C function is `pread`.
    public func read(count: Int, atAbsoluteOffset offset: Int) throws(Errno) -> [UInt8] {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 1)
        defer { buffer.deallocate() }
        var done = 0
        while done < count {
            let n = try read(fromAbsoluteOffset: offset + done, into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
            if n == 0 { break }
            done += n
        }
        return Array(buffer[..<done])
    }

    /// The whole content of the file at `path` (open, fstat, read to the end, close).
    /// The corresponding C functions are `open`, `fstat` and `read`.
    /// - Throws: `Errno` naming the call that failed and the path.
    public static func readContents(of path: String) throws(Errno) -> [UInt8] {
        let fd = try open(path)
        return try fd.closeAfter { () throws(Errno) -> [UInt8] in
            var out: [UInt8] = []
            out.reserveCapacity(max(0, try fd.status().size))
            let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 1)
            defer { chunk.deallocate() }
            while true {
                let n = try fd.read(into: chunk)
                if n == 0 { return out }
                out.append(contentsOf: chunk[..<n])
            }
        }
    }

    /// Writes up to `buffer.count` bytes, retrying on `EINTR`. Returns the count written.
    /// The corresponding C function is `write`.
    public func write(_ buffer: UnsafeRawBufferPointer) throws(Errno) -> Int {
        try retryOnInterrupt("write", path: path) { system_write(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Writes all of `buffer`, continuing after short writes. The corresponding C function is `write`.
    public func writeAll(_ buffer: UnsafeRawBufferPointer) throws(Errno) {
        var offset = 0
        while offset < buffer.count {
            offset += try write(UnsafeRawBufferPointer(rebasing: buffer[offset...]))
        }
    }

    /// Writes all of `bytes`, continuing after short writes. The corresponding C function is `write`.
    public func writeAll(_ bytes: [UInt8]) throws(Errno) {
        try bytes.withUnsafeBytes { raw in Result { () throws(Errno) in try writeAll(raw) } }.get()
    }

    /// The file's type, size, identity and modification time. The corresponding C function is `fstat`.
    public func status() throws(Errno) -> FileStatus {
        var st = Glibc.stat()
        _ = try retryOnInterrupt("fstat", path: path) { system_fstat(rawValue, &st) }
        return FileStatus(st)
    }

    /// Sets the file's size. The corresponding C function is `ftruncate`.
    public func resize(to size: Int) throws(Errno) {
        _ = try retryOnInterrupt("ftruncate", path: path) { system_ftruncate(rawValue, off_t(size)) }
    }

    /// Flushes the file's data and metadata to the device. The corresponding C function is `fsync`.
    public func sync() throws(Errno) {
        _ = try retryOnInterrupt("fsync", path: path) { system_fsync(rawValue) }
    }
}

/// What `stat`/`fstat` say about a file.
public struct FileStatus: Sendable, Equatable {
    public var device: UInt64
    public var inode: UInt64
    public var mode: mode_t
    public var size: Int
    /// Last modification, nanoseconds since the epoch.
    public var modificationNanoseconds: Int64
    /// Last status change (owner, mode, link count...), nanoseconds since the epoch.
    public var changeNanoseconds: Int64
    public var owner: uid_t

    init(_ st: Glibc.stat) {
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        mode = st.st_mode
        size = Int(st.st_size)
        modificationNanoseconds = st.st_mtim.nanoseconds
        changeNanoseconds = st.st_ctim.nanoseconds
        owner = st.st_uid
    }

    /// A regular file (not a directory, device, socket...).
    public var isRegularFile: Bool { mode & S_IFMT == S_IFREG }
    /// A directory.
    public var isDirectory: Bool { mode & S_IFMT == S_IFDIR }

    /// `stat` of `path` (following symbolic links). The corresponding C function is `stat`.
    /// - Throws: `Errno` with call `stat` and the path.
    public static func of(path: String) throws(Errno) -> FileStatus {
        var st = Glibc.stat()
        _ = try retryOnInterrupt("stat", path: path) { system_stat(path, &st) }
        return FileStatus(st)
    }
}

/// Operations on paths.
public enum FileSystem {
    /// Renames `from` to `to`, replacing `to` atomically. The corresponding C function is `rename`.
    /// - Throws: `Errno` with call `rename` and the source path.
    public static func rename(_ from: String, to: String) throws(Errno) {
        _ = try retryOnInterrupt("rename", path: from) { system_rename(from, to) }
    }

    /// Removes the name `path`. The corresponding C function is `unlink`.
    public static func unlink(_ path: String) throws(Errno) {
        _ = try retryOnInterrupt("unlink", path: path) { system_unlink(path) }
    }

    /// The names in directory `path` (not `.` and `..`), sorted.
    /// The corresponding C functions are `opendir`, `readdir` and `closedir`.
    /// - Throws: `Errno` with call `opendir` and the path (`ENOENT`, `ENOTDIR`, `EACCES`, `EMFILE`).
    public static func entries(in path: String) throws(Errno) -> [String] {
        guard let dir = system_opendir(path) else { throw Errno.current("opendir", path: path) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Creates a new directory named from `prefix` plus six random characters, readable only by
    /// this user, and returns its path. The corresponding C function is `mkdtemp`.
    /// - Throws: `Errno` with call `mkdtemp` and the template.
    public static func makeTemporaryDirectory(prefix: String) throws(Errno) -> String {
        var template = Array((prefix + "XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { system_mkdtemp($0.baseAddress!) }
        guard let made else { throw Errno.current("mkdtemp", path: prefix + "XXXXXX") }
        return String(cString: made)
    }

    /// Creates the directory `path`; an existing directory is not an error.
    /// The corresponding C function is `mkdir`.
    public static func makeDirectory(_ path: String, permissions: mode_t = 0o755) throws(Errno) {
        do {
            _ = try retryOnInterrupt("mkdir", path: path) { system_mkdir(path, permissions) }
        } catch where error.code == EEXIST {
            return
        }
    }
}

extension FileDescriptor {
    /// Takes an exclusive advisory lock on the file without waiting (`flock(LOCK_EX | LOCK_NB)`),
    /// held until the descriptor is closed (or the process ends, even by SIGKILL): the way one
    /// daemon claims a state file. The corresponding C function is `flock`.
    /// - Returns: false when another open file description holds it.
    /// - Throws: `Errno` with call `flock` for anything but `EWOULDBLOCK`.
    public func tryLock() throws(Errno) -> Bool {
        while true {
            if pbs_flock_exclusive_nonblocking(rawValue) == 0 { return true }
            let e = errno
            if e == EINTR { continue }
            if e == EWOULDBLOCK { return false }
            throw Errno(code: e, call: "flock", path: path)
        }
    }
}
