import CPlugboard
import CPlugboardSupport
import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

/// The ring file a previous daemon left in `state.ring_dir` (it crashed, was killed, or stopped),
/// mapped read-only: what it published, for the next daemon to continue its sequences and to
/// publish to Redis what the old one received but its publisher had not taken yet
/// (docs/redis.md, "Crash safety").
///
/// Nothing in it is trusted: the header must describe a version-1 ring of exactly the file's
/// size, and an event is handed out only when its slot holds that very sequence with a sound size.
/// A file that fails the header check is set aside (renamed `<file>.corrupt-<time>`) with a
/// warning; it is never fatal.
public final class PreviousRing: @unchecked Sendable {
    // @unchecked: read-only after init (a private read-only mapping of a file no one writes any more).
    public let path: String
    /// The newest sequence the previous daemon published (0: none).
    public let published: UInt64
    let capacity: Int
    let slotSize: Int
    let region: MappedRegion
    let descriptor: FileDescriptor

    /// What opening the previous ring found.
    public enum Outcome {
        /// No file there: a first start, or /run was emptied by a reboot.
        case none
        case found(PreviousRing)
        /// The file was not a sound ring; it was set aside (`warning` says where and why).
        case setAside(warning: String)
    }

    /// Opens the ring file at `path`.
    /// - Throws: `PlugboardError` only when another live daemon holds the file (two daemons must
    ///   not share `state.ring_dir`), or it cannot be read at all.
    public static func open(_ path: String) throws -> Outcome {
        let fd: FileDescriptor
        do throws(Errno) { fd = try FileDescriptor.open(path, .readOnly) } catch {
            if error.code == ENOENT { return .none }
            throw PlugboardError(code: "ring.file", file: path, field: "state.ring_dir",
                                 reason: "cannot open the previous run's event ring: \(error)",
                                 fix: "make it readable by the daemon's user, or remove it (its events are then not recovered)")
        }
        let locked: Bool
        do throws(Errno) { locked = try fd.tryLock() } catch {
            try? fd.close()
            throw PlugboardError(code: "ring.file", file: path, field: "state.ring_dir",
                                 reason: "cannot lock the previous run's event ring: \(error)", fix: "remove the file")
        }
        guard locked else {
            try? fd.close()
            throw PlugboardError(code: "ring.busy", file: path, field: "state.ring_dir",
                                 reason: "another running plugboard daemon uses this event ring file",
                                 fix: "give each daemon its own state.ring_dir and state.dir")
        }
        if let why = check(fd) {
            try? fd.close()
            return .setAside(warning: setAside(path, why: why, what: "event ring"))
        }
        let size = (try? fd.status().size) ?? 0
        guard let region = try? MappedRegion(fd: fd, count: size, protection: .read, shared: false) else {
            try? fd.close()
            return .setAside(warning: setAside(path, why: "it cannot be mapped", what: "event ring"))
        }
        return .found(PreviousRing(path: path, fd: fd, region: region))
    }

    private init(path: String, fd: FileDescriptor, region: MappedRegion) {
        self.path = path
        self.descriptor = fd
        self.region = region
        let h = region.baseAddress
        slotSize = Int(h.load(fromByteOffset: 12, as: UInt32.self))
        capacity = Int(h.load(fromByteOffset: 16, as: UInt32.self))
        published = h.load(fromByteOffset: EventRing.publishedOffset, as: UInt64.self)
    }

    deinit { try? descriptor.close() }

    /// Why the file is not a ring this version can read, or nil.
    static func check(_ fd: FileDescriptor) -> String? {
        guard let size = try? fd.status().size else { return "its size cannot be read" }
        guard size > EventRing.headerSize else { return "it is \(size) bytes, too short for a ring header" }
        guard let head = try? fd.read(count: 24, atAbsoluteOffset: 0), head.count == 24 else { return "its header cannot be read" }
        let word = { (o: Int) -> UInt64 in head[o..<o + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        let magic = word(0)
        let version = word(8) & 0xffff_ffff, slot = Int(word(8) >> 32), count = Int(word(16) & 0xffff_ffff)
        guard magic == EventRing.magic else { return "it does not start with the ring's magic PBRING01" }
        guard version == 1 else { return "it is a version-\(version) ring; this daemon reads version 1" }
        guard slot >= EventLayout.headerSize, slot % 64 == 0, slot <= 1 << 20, count > 0, count & (count - 1) == 0,
              count <= 1 << 24, EventRing.headerSize + count * slot == size else {
            return "its header (\(count) slots of \(slot) bytes) does not match its size of \(size) bytes"
        }
        return nil
    }

    /// The oldest sequence whose slot may still hold it: the producer may have been writing the
    /// slot after `published` when the daemon died, which overwrote `published + 1 - capacity`.
    public var oldestAvailable: UInt64 {
        published >= UInt64(capacity) ? published - UInt64(capacity) + 2 : 1
    }

    /// Event `seq` as the previous daemon published it, or nil when its slot no longer holds it
    /// (overwritten) or does not hold a sound event.
    public func event(_ seq: UInt64) -> UnsafePointer<pb_event>? {
        guard seq >= oldestAvailable, seq <= published, seq >= 1 else { return nil }
        let p = region.baseAddress + EventRing.headerSize + Int((seq - 1) & UInt64(capacity - 1)) * slotSize
        let e = UnsafeRawPointer(p).assumingMemoryBound(to: pb_event.self)
        let total = Int(e.pointee.total_size)
        guard e.pointee.sequence == seq, total >= EventLayout.headerSize, total <= slotSize else { return nil }
        return e
    }
}

/// Renames a state file that cannot be trusted to `<path>.corrupt-<UTC time>` and says so: the
/// text of the warning the caller logs. Never throws: if even the rename fails, the warning says
/// that the file is ignored.
public func setAside(_ path: String, why: String, what: String) -> String {
    // gmtime_r, not Foundation: PlugboardCore is linked into plugboard-worker, which stays free
    // of Foundation (its load was most of a worker process's start).
    var now = time(nil)
    var tm = tm()
    gmtime_r(&now, &tm)
    func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
    let stamp = "\(tm.tm_year + 1900)\(two(tm.tm_mon + 1))\(two(tm.tm_mday))T\(two(tm.tm_hour))\(two(tm.tm_min))\(two(tm.tm_sec))Z"
    let aside = "\(path).corrupt-\(stamp)"
    do throws(Errno) {
        try FileSystem.rename(path, to: aside)
        return "\(path): the \(what) file left by the previous run is not usable: \(why). It was set aside as \(aside) and a new one started; events only it held are not recovered (fix: nothing to do; keep the set-aside file to inspect it, or delete it)"
    } catch {
        return "\(path): the \(what) file left by the previous run is not usable: \(why), and it could not be set aside (\(error)); it is ignored and replaced (fix: remove it)"
    }
}
