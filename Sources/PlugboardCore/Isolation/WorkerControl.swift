import CPlugboardSupport
import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

/// The page a worker process and the host share for one plugin (a sealed memfd of its own):
/// the worker's ring cursor and sleeping flag, where it is (activity, the batch it is in and
/// since when, for the watchdog), its counters and its latency histograms.
///
/// The worker writes, the host reads. The worker runs untrusted plugin code that may scribble
/// on this page, so the host treats every value as a claim about that plugin alone: its cursor
/// is clamped (`RemoteCursor`), its counters are only its own, and the watchdog does not rely
/// on it alone (a stalled cursor is caught too). Nothing here can reach another plugin.
///
///     0     magic "PBWCTL01"
///     8     cursor            (u64)  last sequence finished with
///     16    sleeping          (u32)  raised while it sleeps on the ring's futex
///     20    activity          (u32)  WorkerActivity
///     24    batchFirst        (u64)  first sequence of the batch in the callback (0: none)
///     32    batchLast         (u64)
///     40    callbackStart     (u64)  CLOCK_MONOTONIC ns the callback began (0: not in one)
///     48    counters          (u64 × 9) delivered, filtered, errors, laps, missed, resyncs, overruns, published, refused
///     144   command           (u32)  host -> worker: 1 hand over (hot reload), 2 stop now
///     152   settle counters   (u64 × 3) coalesced, flaps, overflow
///     176   readLimit         (u64)  host -> worker: read no event past this sequence (0: no limit)
///     184   markToken         (u32)  host -> worker: a new nonzero token asks for a snapshot (state
///                                    and cursor), then a mark in the host-call queue after every
///                                    batch, until the token is 0 again (a canary's comparison)
///     188   markLost          (u32)  worker -> host: a mark could not be queued
///     192   wakeAt            (u64)  worker -> host: while sleeping, the sequence worth waking it
///                                    for in the middle of a burst (0: any; `EventRing.wakeIfDue`)
///     200   queueFull         (u64)  worker -> host: of `refused`, publishes refused for a full queue
///     832   batch sizes       (u64 × 16) `BatchSizes`: the sizes of the batches handed to the plugin
///     960   peakAddressSpace  (u64)  worker -> host: the process's VmPeak in bytes, written by its
///                                    crash handler as it dies (0: none); see `MemoryLimitReport`
///     1024  latency histogram (receipt → callback)
///     4096  callback duration histogram
public final class WorkerControl: @unchecked Sendable {
    // @unchecked: the fields are read and written only through pbs_* atomics on the mapping.
    public static let size = 8192
    public static let magic: UInt64 = 0x3130_4C54_4357_4250  // "PBWCTL01"

    public enum Counter: Int, CaseIterable, Sendable {
        case delivered = 0, filtered, errors, laps, missed, resyncs, overruns, published, refused
        /// The settle window's (after `command`: the first nine are packed before it).
        case settleCoalesced, settleFlaps, settleOverflow
        /// Of `refused`, the publishes refused because the host-call queue was full (the host
        /// behind), not because they were invalid: a canary's comparison is void after one.
        case queueFull

        var offset: Int {
            switch rawValue {
            case 0..<9: 48 + rawValue * 8
            case 9..<12: 152 + (rawValue - 9) * 8
            default: 200
            }
        }
    }

    public let file: FileDescriptor
    let region: MappedRegion
    let base: UnsafeMutableRawPointer
    public let latency: LatencyHistogram
    public let callbackDuration: LatencyHistogram
    /// The sizes of the batches the worker handed its plugin (kept across restarts).
    public let batchSizes: BatchSizes

    /// The host's page owns its memfd and closes it when freed; a page attached to a
    /// descriptor someone else owns (the worker's 5, a test's) leaves it open.
    private let ownsFile: Bool

    init(file: FileDescriptor, region: MappedRegion, ownsFile: Bool) {
        self.file = file
        self.region = region
        self.ownsFile = ownsFile
        base = region.baseAddress
        latency = LatencyHistogram(storage: (base + 1024).assumingMemoryBound(to: UInt64.self))
        callbackDuration = LatencyHistogram(storage: (base + 4096).assumingMemoryBound(to: UInt64.self))
        batchSizes = BatchSizes(storage: (base + 832).assumingMemoryBound(to: UInt64.self))
    }

    /// A fresh page (host side).
    public static func create(name: String) throws(Errno) -> WorkerControl {
        let fd = try MemoryFile.create(name: "plugboard-worker-\(name)", size: size, seals: [.shrink, .grow, .seal])
        do {
            let region = try MappedRegion(fd: fd, count: size, protection: [.read, .write], shared: true)
            region.baseAddress.storeBytes(of: magic, as: UInt64.self)
            return WorkerControl(file: fd, region: region, ownsFile: true)
        } catch {
            try? fd.close()
            throw error
        }
    }

    /// The host's page, mapped in the worker process.
    public static func attach(_ fd: FileDescriptor) throws(Errno) -> WorkerControl {
        let region = try MappedRegion(fd: fd, count: size, protection: [.read, .write], shared: true)
        guard region.baseAddress.load(as: UInt64.self) == magic else {
            throw Errno(code: EINVAL, call: "mmap", path: fd.path, detail: "not a worker control page")
        }
        return WorkerControl(file: fd, region: region, ownsFile: false)
    }

    deinit {
        if ownsFile { try? file.close() }
    }

    func u64(_ offset: Int) -> UnsafeMutablePointer<UInt64> { (base + offset).assumingMemoryBound(to: UInt64.self) }
    func u32(_ offset: Int) -> UnsafeMutablePointer<UInt32> { (base + offset).assumingMemoryBound(to: UInt32.self) }

    public var cursorWord: UnsafeMutablePointer<UInt64> { u64(8) }
    public var sleepingWord: UnsafeMutablePointer<UInt32> { u32(16) }
    public var wakeAtWord: UnsafeMutablePointer<UInt64> { u64(192) }

    public var cursor: UInt64 {
        get { pbs_load_acquire_u64(cursorWord) }
        set { pbs_store_release_u64(cursorWord, newValue) }
    }
    public var activity: WorkerActivity {
        get { WorkerActivity(rawValue: UInt8(truncatingIfNeeded: pbs_load_acquire_u32(u32(20)))) ?? .idle }
        set { pbs_store_release_u32(u32(20), UInt32(newValue.rawValue)) }
    }
    /// The batch in the callback now (first, last sequence), or nil.
    public var batch: (first: UInt64, last: UInt64)? {
        let f = pbs_load_acquire_u64(u64(24))
        return f == 0 ? nil : (f, pbs_load_acquire_u64(u64(32)))
    }
    public func enterCallback(first: UInt64, last: UInt64, at now: UInt64) {
        pbs_store_release_u64(u64(24), first)
        pbs_store_release_u64(u64(32), last)
        pbs_store_release_u64(u64(40), now)
    }
    public func leaveCallback() {
        pbs_store_release_u64(u64(40), 0)
        pbs_store_release_u64(u64(24), 0)
    }
    /// When the running callback began (ns), or nil.
    public var callbackStart: UInt64? {
        let v = pbs_load_acquire_u64(u64(40))
        return v == 0 ? nil : v
    }
    public subscript(counter: Counter) -> UInt64 {
        get { pbs_load_relaxed_u64(u64(counter.offset)) }
        set { pbs_store_release_u64(u64(counter.offset), newValue) }
    }
    public func add(_ counter: Counter, _ n: UInt64) { self[counter] = self[counter] &+ n }
    /// Host -> worker requests, read by the worker between batches (the host wakes it with the
    /// ring's futex).
    public enum Command: UInt32, Sendable { case none = 0, handOver = 1, stop = 2 }
    public var command: Command {
        get { Command(rawValue: pbs_load_acquire_u32(u32(144))) ?? .none }
        set { pbs_store_release_u32(u32(144), newValue.rawValue) }
    }
    /// The canary's fence: the worker reads no event past this sequence (0: no limit).
    public var readLimit: UInt64 {
        get { pbs_load_acquire_u64(u64(176)) }
        set { pbs_store_release_u64(u64(176), newValue) }
    }
    /// A new nonzero token asks the worker for a snapshot and marks (see the layout); 0 stops them.
    public var markToken: UInt32 {
        get { pbs_load_acquire_u32(u32(184)) }
        set { pbs_store_release_u32(u32(184), newValue) }
    }
    /// Raised by the worker when a mark could not be queued (the comparison cannot be trusted).
    public var markLost: Bool {
        get { pbs_load_acquire_u32(u32(188)) != 0 }
        set { pbs_store_release_u32(u32(188), newValue ? 1 : 0) }
    }
    /// The word the worker's crash handler writes the process's peak address space into
    /// (`pbs_crash_recorder_install`).
    public var peakAddressSpaceWord: UnsafeMutablePointer<UInt64> { u64(960) }
    /// The worker's peak address space (bytes) as its crash handler read it while dying; 0 when
    /// it did not die by a signal the handler catches (or has not died). A claim of the plugin's
    /// process, like everything on this page: used to word a crash reason, never to decide.
    public var peakAddressSpace: UInt64 {
        get { pbs_load_acquire_u64(peakAddressSpaceWord) }
        set { pbs_store_release_u64(peakAddressSpaceWord, newValue) }
    }
    /// Clears what a dead worker left behind (flags, the batch), keeping the counters.
    public func resetForRestart() {
        peakAddressSpace = 0
        // A crashed worker may have scribbled anywhere on its page, the magic included.
        base.storeBytes(of: Self.magic, as: UInt64.self)
        pbs_store_release_u32(sleepingWord, 0)
        pbs_store_release_u64(wakeAtWord, 0)
        leaveCallback()
        activity = .idle
        command = .none
    }
}
