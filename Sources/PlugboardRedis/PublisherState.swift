import CPlugboard
import Foundation
import PlugboardCore
import PlugboardSystem

/// The publisher's window and spill in files under `state.dir` (docs/redis.md, "Crash safety"):
/// `redis-<HOST>.events` and `redis-<HOST>.plugins`, memory-mapped, so a daemon killed at any
/// instant leaves every event it had taken from the ring, with what Redis acknowledged, for the
/// next one. That one replays them first with the same IDs (Redis answers those it already holds
/// as duplicates: exactly once), then goes on.
///
/// Opened once by the host before the ring is created: `lastEventSequence` says where the
/// previous run stopped, and `absorb(_:)` takes the events the previous run's ring published
/// after that (its publisher had not read them yet). Each file is locked (`flock`) while open,
/// so two daemons cannot share a `state.dir` by mistake. A file that is not sound (wrong magic or
/// version, another host's, inconsistent positions, a record that does not parse) is set aside
/// with a warning, never trusted and never fatal.
public final class PublisherState: @unchecked Sendable {
    // @unchecked: the host opens it and absorbs the previous ring on its own thread before the
    // publisher starts; from `RedisPublisher.start` on only the publisher thread touches the files.
    public let directory: String
    let events: StateFile
    let plugins: StateFile
    /// Warnings for the log: files set aside, a size kept.
    public private(set) var warnings: [String] = []
    /// Events the previous run's ring had published that `absorb` could no longer take (their
    /// slots overwritten, or no room): counted by the publisher as lapped, so `/metrics` and
    /// `run`'s exit status report them as not delivered.
    public private(set) var lostAtRecovery: UInt64 = 0

    /// Opens (or creates) the two files of `host` in `directory`.
    /// - Throws: `PlugboardError` naming `state.dir` when the directory is unusable or another
    ///   running daemon holds the files.
    public init(directory: String, host: String, eventBytes: Int, pluginBytes: Int) throws {
        self.directory = directory
        let safe = host.map { $0.isLetter || $0.isNumber || "-_.".contains($0) ? $0 : "_" }
        let stem = (directory.hasSuffix("/") ? directory : directory + "/") + "redis-" + String(safe)
        var warnings: [String] = []
        events = try StateFile(path: stem + ".events", kind: .events, host: host,
                               capacity: RecordStore.roundedCapacity(eventBytes), warnings: &warnings)
        plugins = try StateFile(path: stem + ".plugins", kind: .plugins, host: host,
                                capacity: RecordStore.roundedCapacity(pluginBytes), warnings: &warnings)
        self.warnings = warnings
    }

    /// The events file was left by a previous run (not made now, nor set aside): only then does it
    /// say which of the previous ring's events the previous publisher had taken.
    public var continuesPreviousRun: Bool { events.existed }

    /// The highest event sequence the previous run took into its window (0: none).
    public var lastEventSequence: UInt64 { events.lastSequence }
    /// Records the previous run left unacknowledged: replayed first.
    public var pendingEvents: UInt64 { events.stored.count - events.acked.count }
    public var pendingPluginRecords: UInt64 { plugins.stored.count - plugins.acked.count }

    /// Takes the events the previous daemon's ring published after `lastEventSequence` into the
    /// window, in order. Events its ring no longer holds (overwritten) or that do not fit are lost:
    /// counted in the result and logged by the caller.
    /// - Returns: how many were taken, and how many were lost.
    public func absorb(_ ring: PreviousRing) -> (taken: UInt64, lost: UInt64) {
        let from = events.lastSequence + 1
        guard ring.published >= from else { return (0, 0) }
        var taken: UInt64 = 0, lost: UInt64 = 0
        var window = WindowPositions(acked: events.acked, stored: events.stored)
        for seq in from...ring.published {
            guard let e = ring.event(seq),
                  let next = events.store.storeEvent(e, stored: window.stored.byte, acked: window.acked.byte) else {
                lost += 1
                continue
            }
            window.didStore(next: next)
            taken += 1
        }
        events.persist(window, lastSequence: ring.published)
        lostAtRecovery += lost
        return (taken, lost)
    }
}

/// One state file: a 4 KiB header, then a `RecordStore`'s bytes.
///
///     0    magic "PBSTATE1", version (1), kind (1 events, 2 plugin records)
///     16   capacity of the store, bytes
///     24   host name length, 32: host name (up to 256 bytes)
///     288  FNV-1a 64 of bytes 0..<288 (the fixed part)
///     320  acked byte, acked count, stored byte, stored count, last sequence (UInt64 each)
///     4096 the store
///
/// The positions are written by the publisher thread after it stores records (and after
/// commits and acknowledgements); a SIGKILL leaves every completed store in the page cache, so
/// the file is consistent at any instant. A power loss is another matter (no fsync per batch):
/// docs/redis.md says what survives it.
final class StateFile {
    enum Kind: UInt32 { case events = 1, plugins = 2 }
    static let magic: UInt64 = 0x3145_5441_5453_4250  // "PBSTATE1" little-endian
    static let headerSize = 4096
    static let fixedPart = 288

    let path: String
    let kind: Kind
    let descriptor: FileDescriptor
    let region: MappedRegion
    let store: RecordStore
    /// Left by a previous run (not created now).
    let existed: Bool

    init(path: String, kind: Kind, host: String, capacity: Int, warnings: inout [String]) throws {
        self.path = path
        self.kind = kind
        let hostBytes = Array(host.utf8.prefix(256))
        var opened = try StateFile.openExisting(path, kind: kind, host: hostBytes, warnings: &warnings)
        existed = opened != nil
        if let (fd, region, fileCapacity) = opened, fileCapacity != capacity {
            let h = region.baseAddress
            let empty = h.load(fromByteOffset: 320, as: UInt64.self) == h.load(fromByteOffset: 336, as: UInt64.self)
            if empty {
                // Nothing waits in it: start a file of the configured size, keeping the sequence.
                let last = h.load(fromByteOffset: 352, as: UInt64.self)
                try? fd.close()
                opened = nil
                let (nfd, nregion) = try StateFile.create(path, kind: kind, host: hostBytes, capacity: capacity)
                nregion.baseAddress.storeBytes(of: last, toByteOffset: 352, as: UInt64.self)
                opened = (nfd, nregion, capacity)
            } else {
                warnings.append("\(path): keeps its size of \(fileCapacity) bytes until the events it holds are delivered; the configured \(capacity) bytes take effect at a start that finds it empty")
            }
        }
        let (fd, region, size): (FileDescriptor, MappedRegion, Int)
        if let opened { (fd, region, size) = opened } else {
            (fd, region) = try StateFile.create(path, kind: kind, host: hostBytes, capacity: capacity)
            size = capacity
        }
        descriptor = fd
        self.region = region
        store = RecordStore(mapped: region.baseAddress + StateFile.headerSize, capacity: size)
    }

    deinit { try? descriptor.close() }

    private var header: UnsafeMutableRawPointer { region.baseAddress }

    var acked: WindowPositions.Position {
        .init(byte: header.load(fromByteOffset: 320, as: UInt64.self), count: header.load(fromByteOffset: 328, as: UInt64.self))
    }
    var stored: WindowPositions.Position {
        .init(byte: header.load(fromByteOffset: 336, as: UInt64.self), count: header.load(fromByteOffset: 344, as: UInt64.self))
    }
    var lastSequence: UInt64 { header.load(fromByteOffset: 352, as: UInt64.self) }

    /// Records where the window stands (the publisher thread, after each change).
    @inline(__always)
    func persist(_ w: WindowPositions, lastSequence: UInt64) {
        let h = header
        h.storeBytes(of: w.acked.byte, toByteOffset: 320, as: UInt64.self)
        h.storeBytes(of: w.acked.count, toByteOffset: 328, as: UInt64.self)
        h.storeBytes(of: w.stored.byte, toByteOffset: 336, as: UInt64.self)
        h.storeBytes(of: w.stored.count, toByteOffset: 344, as: UInt64.self)
        h.storeBytes(of: lastSequence, toByteOffset: 352, as: UInt64.self)
    }

    static func checksum(_ p: UnsafeRawPointer) -> UInt64 {
        FNV1a.hash(UnsafeRawBufferPointer(start: p, count: fixedPart))
    }

    static func stateError(_ path: String, _ what: String, _ error: Errno) -> PlugboardError {
        PlugboardError(code: "state.dir", file: path, field: "state.dir", reason: "\(what): \(error)",
                       fix: "make state.dir a directory the daemon's user can write (the unit's StateDirectory, /var/lib/plugboard), or set state.dir = \"\" to keep the window in memory")
    }

    /// Opens and checks the file a previous run left; nil when there is none or it was set aside.
    static func openExisting(_ path: String, kind: Kind, host: [UInt8],
                             warnings: inout [String]) throws -> (FileDescriptor, MappedRegion, Int)? {
        let fd: FileDescriptor
        do throws(Errno) { fd = try FileDescriptor.open(path, .readWrite) } catch {
            if error.code == ENOENT { return nil }
            throw stateError(path, "cannot open the previous run's publisher state", error)
        }
        let locked: Bool
        do throws(Errno) { locked = try fd.tryLock() } catch {
            try? fd.close()
            throw stateError(path, "cannot lock the publisher state", error)
        }
        guard locked else {
            try? fd.close()
            throw PlugboardError(code: "state.busy", file: path, field: "state.dir",
                                 reason: "another running plugboard daemon publishes from this state file",
                                 fix: "give each daemon its own state.dir (and state.ring_dir)")
        }
        func aside(_ why: String) -> (FileDescriptor, MappedRegion, Int)? {
            try? fd.close()
            warnings.append(setAside(path, why: why, what: "Redis publisher state"))
            return nil
        }
        guard let size = try? fd.status().size, size > headerSize else { return aside("it is shorter than its header") }
        guard let region = try? MappedRegion(fd: fd, count: size, protection: [.read, .write], shared: true) else {
            return aside("it cannot be mapped")
        }
        let h = region.baseAddress
        guard h.load(as: UInt64.self) == magic else { return aside("it does not start with the magic PBSTATE1") }
        let version = h.load(fromByteOffset: 8, as: UInt32.self)
        guard version == 1 else { return aside("it is version \(version); this daemon reads version 1") }
        guard h.load(fromByteOffset: 12, as: UInt32.self) == kind.rawValue else { return aside("it holds the other kind of records") }
        guard h.load(fromByteOffset: 288, as: UInt64.self) == checksum(h) else { return aside("its header checksum does not match") }
        let capacity = Int(h.load(fromByteOffset: 16, as: UInt64.self))
        guard capacity == RecordStore.roundedCapacity(capacity), size == headerSize + capacity else {
            return aside("its header's size of \(capacity) bytes does not match the file's \(size) bytes")
        }
        let hostLength = Int(h.load(fromByteOffset: 24, as: UInt32.self))
        guard hostLength <= 256, Array(UnsafeRawBufferPointer(start: h + 32, count: hostLength)) == host else {
            return aside("it belongs to another host name (\(String(decoding: UnsafeRawBufferPointer(start: h + 32, count: min(hostLength, 256)), as: UTF8.self)))")
        }
        let a = WindowPositions.Position(byte: h.load(fromByteOffset: 320, as: UInt64.self), count: h.load(fromByteOffset: 328, as: UInt64.self))
        let s = WindowPositions.Position(byte: h.load(fromByteOffset: 336, as: UInt64.self), count: h.load(fromByteOffset: 344, as: UInt64.self))
        guard a.byte <= s.byte, a.count <= s.count, (a.byte == s.byte) == (a.count == s.count) else {
            return aside("its positions are out of order")
        }
        let store = RecordStore(mapped: h + headerSize, capacity: capacity)
        let why = store.verify(from: a.byte, to: s.byte, count: s.count - a.count) { p, length in
            switch kind {
            case .events:
                let e = p.assumingMemoryBound(to: pb_event.self)
                return length >= MemoryLayout<pb_event>.size && length <= Int(PB_EVENT_MAX_SIZE)
                    && Int(e.pointee.total_size) >= MemoryLayout<pb_event>.size && Int(e.pointee.total_size) <= length
            case .plugins:
                guard length >= PluginRecord.headerSize else { return false }
                let n = Int(p.load(fromByteOffset: 8, as: UInt16.self)), t = Int(p.load(fromByteOffset: 10, as: UInt16.self))
                let d = Int(p.load(fromByteOffset: 12, as: UInt32.self))
                return PluginRecord.headerSize + n + t + d == length && n > 0
            }
        }
        if let why { return aside(why) }
        return (fd, region, capacity)
    }

    /// Makes a fresh, empty file (under a temporary name, renamed into place once its header is written).
    static func create(_ path: String, kind: Kind, host: [UInt8], capacity: Int) throws -> (FileDescriptor, MappedRegion) {
        let tmp = path + ".new-\(getpid())"
        do throws(Errno) {
            try? FileSystem.unlink(tmp)
            let fd = try FileDescriptor.open(tmp, [.readWrite, .create, .exclusive], permissions: 0o600)
            do throws(Errno) {
                _ = try fd.tryLock()
                try fd.resize(to: headerSize + capacity)
                let region = try MappedRegion(fd: fd, count: headerSize + capacity, protection: [.read, .write], shared: true)
                let h = region.baseAddress
                h.storeBytes(of: magic, as: UInt64.self)
                h.storeBytes(of: UInt32(1), toByteOffset: 8, as: UInt32.self)
                h.storeBytes(of: kind.rawValue, toByteOffset: 12, as: UInt32.self)
                h.storeBytes(of: UInt64(capacity), toByteOffset: 16, as: UInt64.self)
                h.storeBytes(of: UInt32(host.count), toByteOffset: 24, as: UInt32.self)
                host.withUnsafeBytes { b in if let a = b.baseAddress { (h + 32).copyMemory(from: a, byteCount: b.count) } }
                h.storeBytes(of: checksum(h), toByteOffset: 288, as: UInt64.self)
                try FileSystem.rename(tmp, to: path)
                return (fd, region)
            } catch {
                try? fd.close()
                try? FileSystem.unlink(tmp)
                throw error
            }
        } catch {
            throw stateError(path, "cannot create the publisher state file", error)
        }
    }
}
