#if canImport(Glibc)
import Glibc
#endif

/// An inotify instance (non-blocking, close-on-exec): file system change events for watched
/// directories, read in batches from one descriptor.
public struct Inotify: Sendable {
    public let descriptor: FileDescriptor

    /// One change: which watch, what happened (`IN_*` bits) and the name inside the directory.
    public struct Event: Sendable, Equatable {
        public var watch: CInt
        public var mask: UInt32
        public var name: String
    }

    /// The corresponding C function is `inotify_init1` (`IN_NONBLOCK | IN_CLOEXEC`).
    /// - Throws: `Errno` with call `inotify_init1` (`EMFILE`: fs.inotify.max_user_instances reached).
    public init() throws(Errno) {
        let raw = try valueOrErrno("inotify_init1") { system_inotify_init1(CInt(IN_NONBLOCK | IN_CLOEXEC)) }
        descriptor = FileDescriptor(rawValue: raw)
    }

    /// Watches `path` for the events in `mask` (`IN_CLOSE_WRITE | IN_MOVED_TO`...).
    /// The corresponding C function is `inotify_add_watch`.
    /// - Returns: the watch descriptor that events for `path` carry.
    /// - Throws: `Errno` with call `inotify_add_watch` and the path (`ENOENT`, `EACCES`, `ENOSPC`:
    ///   fs.inotify.max_user_watches reached).
    public func addWatch(_ path: String, mask: UInt32) throws(Errno) -> CInt {
        try retryOnInterrupt("inotify_add_watch", path: path) { system_inotify_add_watch(descriptor.rawValue, path, mask) }
    }

    /// Reads the events that are queued now into `buffer` (at least 4 KiB) and decodes them;
    /// empty when none are (`EAGAIN`). The corresponding C function is `read`.
    public func readEvents(into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> [Event] {
        let count: Int
        do {
            count = try descriptor.read(into: buffer)
        } catch where error.code == EAGAIN {
            return []
        }
        return Self.decode(UnsafeRawBufferPointer(rebasing: buffer[..<count]))
    }

    /// Decodes a buffer of `struct inotify_event` records.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> [Event] {
        var events: [Event] = []
        var at = 0
        let header = 16  // wd, mask, cookie, len
        while at + header <= bytes.count {
            let wd = bytes.loadUnaligned(fromByteOffset: at, as: CInt.self)
            let mask = bytes.loadUnaligned(fromByteOffset: at + 4, as: UInt32.self)
            let length = Int(bytes.loadUnaligned(fromByteOffset: at + 12, as: UInt32.self))
            let end = min(bytes.count, at + header + length)
            let nameBytes = bytes[(at + header)..<end].prefix { $0 != 0 }
            events.append(Event(watch: wd, mask: mask, name: String(decoding: nameBytes, as: UTF8.self)))
            at += header + length
        }
        return events
    }

    /// The corresponding C function is `close`.
    public func close() throws(Errno) { try descriptor.close() }
}
