#if canImport(Glibc)
import Glibc
#endif

/// A memory mapping that owns its lifetime: `munmap` on deinit.
///
/// The address is stored as an integer so the type is `Sendable`; what may be done with the
/// memory across threads is the owner's protocol (the ring's, or read-only for a file).
public final class MappedRegion: Sendable {
    private let address: UInt
    /// Bytes mapped.
    public let count: Int

    /// Access to the mapped pages.
    public struct Protection: OptionSet, Sendable {
        public let rawValue: CInt
        public init(rawValue: CInt) { self.rawValue = rawValue }
        public static let read = Protection(rawValue: PROT_READ)
        public static let write = Protection(rawValue: PROT_WRITE)
    }

    /// Maps `count` bytes of `fd` from offset 0: shared (`MAP_SHARED`: writes reach the file and
    /// every other mapping of it) or private (`MAP_PRIVATE`, copy-on-write).
    ///
    /// Checks the file's size first (`fstat`), as PipeWire does for shared memfds: a mapping
    /// past the end of a file succeeds, and the first access there kills the process with SIGBUS.
    /// The corresponding C function is `mmap`.
    /// - Throws: `Errno` with call `mmap` (`ENOMEM`, `EACCES`...; `EINVAL` with a detail when the
    ///   file is shorter than `count`), or with call `fstat`.
    /// `offset` must be a multiple of the page size; the file must reach `offset + count`.
    public init(fd: FileDescriptor, count: Int, offset: Int = 0, protection: Protection = .read,
                shared: Bool = false) throws(Errno) {
        precondition(count > 0, "an empty mapping: callers handle empty files without mmap")
        let size = try fd.status().size
        guard size >= offset + count else {
            throw Errno(code: EINVAL, call: "mmap", path: fd.path,
                        detail: "the file is \(size) bytes, shorter than the \(offset + count) bytes to map")
        }
        let p = system_mmap(nil, count, protection.rawValue, shared ? MAP_SHARED : MAP_PRIVATE, fd.rawValue, off_t(offset))
        guard let p, p != MAP_FAILED else { throw Errno.current("mmap", path: fd.path) }
        address = UInt(bitPattern: p)
        self.count = count
    }

    /// The first byte of the mapping; valid while this object lives.
    public var baseAddress: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: address)! }

    /// The mapped bytes; valid while this object lives.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: baseAddress, count: count) }

    /// The corresponding C function is `munmap`.
    deinit {
        _ = system_munmap(UnsafeMutableRawPointer(bitPattern: address), count)
    }
}

/// An anonymous memory file (memfd) of a fixed size, sealed so that nobody can shrink or grow
/// it: a process that maps it later cannot be made to fault by a truncation.
public enum MemoryFile {
    /// Seals the memory file can carry (`F_SEAL_*`).
    public struct Seals: OptionSet, Sendable {
        public let rawValue: CInt
        public init(rawValue: CInt) { self.rawValue = rawValue }
        public static let seal = Seals(rawValue: 0x0001)  // F_SEAL_SEAL: no more seals
        public static let shrink = Seals(rawValue: 0x0002)  // F_SEAL_SHRINK
        public static let grow = Seals(rawValue: 0x0004)  // F_SEAL_GROW
        public static let write = Seals(rawValue: 0x0008)  // F_SEAL_WRITE
        /// F_SEAL_FUTURE_WRITE (Linux 5.1+): no new writable mapping and no write(2); mappings made
        /// before the seal keep writing. How the ring's producer keeps writing while every other
        /// mapping of it (worker processes, plugin threads) can only read.
        public static let futureWrite = Seals(rawValue: 0x0010)
    }

    /// Adds `seals` to a memory file created with sealing allowed. The corresponding C function
    /// is `fcntl(F_ADD_SEALS)`.
    /// - Throws: `Errno` with call `fcntl(F_ADD_SEALS)` (`EPERM`: sealed against more seals).
    public static func addSeals(_ seals: Seals, to fd: FileDescriptor) throws(Errno) {
        _ = try retryOnInterrupt("fcntl(F_ADD_SEALS)", path: fd.path) { system_add_seals(fd.rawValue, seals.rawValue) }
    }

    /// Creates a memfd of `size` bytes (close-on-exec), sizes it, then adds `seals`. The
    /// descriptor is closed again when a step fails.
    /// The corresponding C functions are `memfd_create`, `ftruncate` and `fcntl(F_ADD_SEALS)`.
    /// - Throws: `Errno` with call `memfd_create` (`EMFILE`, `ENOMEM`), `ftruncate` (`ENOMEM`,
    ///   `EFBIG`) or `fcntl(F_ADD_SEALS)`; the path is `memfd:<name>`.
    public static func create(name: String, size: Int,
                              seals: Seals = [.shrink, .grow, .seal]) throws(Errno) -> FileDescriptor {
        let label = "memfd:\(name)"
        let raw = try valueOrErrno("memfd_create", path: label) { system_memfd_create(name) }
        let fd = FileDescriptor(rawValue: raw, path: label)
        do {
            try fd.resize(to: size)
            _ = try retryOnInterrupt("fcntl(F_ADD_SEALS)", path: label) { system_add_seals(raw, seals.rawValue) }
        } catch {
            _ = system_close(raw)
            throw error
        }
        return fd
    }
}
