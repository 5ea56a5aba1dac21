import CPlugboard
import CPlugboardSupport
import PlugboardSystem
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A single-producer, multi-consumer broadcast ring of `pb_event`s in a sealed memfd.
///
/// Layout of the mapping (all offsets in bytes; docs/architecture.md has the picture):
///
///     0     magic "PBRING01", version, slot size, slot count     (header line)
///     64    published: the sequence of the newest published event (producer's line)
///     128   waiters, futex word                                   (wakeup line)
///     192   closed flag                                           (end-of-stream line)
///     4096  slot 0 ... slot N-1, `slotSize` bytes each
///
/// Sequences start at 1; event `s` lives in slot `(s - 1) & mask`. The producer
/// writes a slot, then publishes it by storing its sequence with release order.
/// It never waits: a consumer that falls `capacity` events behind is *lapped*
/// (it learns so when it polls, and after a batch whose slots were overwritten
/// while it read them), counts the lap and resynchronises from the device table.
///
/// The safety rule: while `published == h`, the producer may already be writing
/// event `h + 1`, which overwrites event `h + 1 - capacity`. So a consumer whose
/// cursor is `c` may read events `c + 1 ... h` only while `h - c < capacity`,
/// checked before (poll) and after (commit) it reads them.
///
/// The memory is a sealed memfd (no shrink, no grow) so that a worker process can
/// later map the same ring read-only; today all consumers are threads.
public final class EventRing: Sendable {
    public static let magic: UInt64 = 0x3130_474E_4952_4250  // "PBRING01" little-endian
    @usableFromInline static let headerSize = 4096
    static let publishedOffset = 64
    static let waitersOffset = 128
    static let futexOffset = 132
    static let closedOffset = 192

    /// Number of slots (a power of two).
    public let capacity: Int
    /// The most events a consumer can have unread before the next event laps it
    /// (`capacity - 1`: the producer may be writing the slot after the newest one).
    public var window: Int { capacity - 1 }
    /// Bytes per slot.
    public let slotSize: Int
    /// The memfd holding the ring.
    public var fd: Int32 { memoryFile.rawValue }
    /// Bytes mapped.
    public let mappedSize: Int
    let memoryFile: FileDescriptor
    /// Owns the mapping (`munmap` when the ring goes): the producer's writable one, or a
    /// read-only view of the header in an attached ring.
    let region: MappedRegion
    /// A read-only mapping of the slots alone: consumers hand plugins pointers into it, so a
    /// stray write faults instead of changing what the other consumers read, and the header
    /// (published, closed) cannot be reached through it.
    let slotRegion: MappedRegion
    @usableFromInline nonisolated(unsafe) let readBase: UnsafeRawPointer
    /// Mapped from another process's memfd (read-only, no producer).
    public let isAttached: Bool
    /// The file the ring lives in (`state.ring_dir`), nil for a memfd.
    public let filePath: String?
    /// Consumers in other processes: where each keeps its cursor and its sleeping flag.
    let remotes = Mutex<[ObjectIdentifier: RemoteCursor]>([:])
    let remoteCount = Atomic<Int>(0)
    /// When the ring's pages get backed (`init`'s `prefault`).
    public enum Prefault: Sendable { case now, background }
    private let prefaulted = Atomic<Bool>(false)
    /// True once every page of the ring is backed (at once for `.now`).
    public var isPrefaulted: Bool { prefaulted.load(ordering: .acquiring) }
    /// The lowest sequence a sleeping consumer of this process asked to be woken for mid-burst
    /// (`RingConsumer.wakeBatch`); `.max` when none. Reset by every wake. See `wakeIfDue`.
    let wakeAt = Atomic<UInt64>(.max)

    // The mapping is written only by the single producer (slots, `published`,
    // `closed`) and through atomics (waiters, futex word); consumers only read
    // slots after an acquire load of `published`. That protocol, not the type
    // system, makes sharing the raw pointer across threads safe.
    @usableFromInline nonisolated(unsafe) let base: UnsafeMutableRawPointer
    @usableFromInline let mask: UInt64
    let producerTaken = Atomic<Bool>(false)
    let consumers = Mutex<[ObjectIdentifier: RingConsumer]>([:])

    /// Creates a ring of at least `slotCount` slots (rounded up to a power of two).
    ///
    /// In memory (`file` nil), the memfd is sealed against shrinking, growing and any *future*
    /// writable mapping (`F_SEAL_FUTURE_WRITE`) right after the producer's own mapping is made:
    /// every other mapping of it (plugin threads here, worker processes there) can only read.
    ///
    /// In a file (`file` set: `state.ring_dir`, docs/redis.md "Crash safety"), the ring outlives a
    /// crash of the daemon, so the next one can publish what this one received. A file cannot be
    /// sealed; workers get a read-only descriptor of it (no writable mapping, no write(2)), and
    /// only the daemon's user may open it (mode 0600). It is made under a temporary name, locked
    /// (`flock`, held while this ring lives) and renamed into place once its header is written.
    /// - Parameter firstSequence: the sequence of the first event (1, or one past the previous run's).
    /// - Parameter prefault: back every page now (before `init` returns) or on a thread of its own
    ///   (the daemon: 6 ms for the default 8 MiB ring, a fifth of `run`'s start, is then spent
    ///   beside the rest of the start instead of before it; a page the producer writes first is
    ///   simply faulted in then). `isPrefaulted` says when it is done.
    /// - Throws: `PlugboardError` when the memfd or file cannot be created, sealed or mapped.
    public init(slotCount: Int, slotSize: Int = EventLayout.maxSize, file: String? = nil,
                firstSequence: UInt64 = 1, prefault: Prefault = .now) throws {
        precondition(slotCount > 0 && slotSize >= EventLayout.headerSize && slotSize % 64 == 0 && firstSequence >= 1)
        var n = 1
        while n < slotCount { n <<= 1 }
        capacity = n
        self.slotSize = slotSize
        mask = UInt64(n - 1)
        mappedSize = Self.headerSize + n * slotSize
        isAttached = false
        filePath = file
        let fd: FileDescriptor
        var temporary: String?
        if let file {
            let tmp = file + ".new-\(getpid())"
            do throws(Errno) {
                try? FileSystem.unlink(tmp)
                fd = try FileDescriptor.open(tmp, [.readWrite, .create, .exclusive], permissions: 0o600)
                _ = try fd.tryLock()
                try fd.resize(to: mappedSize)
            } catch {
                throw PlugboardError(code: "ring.file", file: file, field: "state.ring_dir",
                                     reason: "cannot create the event ring file of \(mappedSize) bytes: \(error)",
                                     fix: "make the directory writable by the daemon's user (it should be a tmpfs such as /run/plugboard), or set state.ring_dir = \"\" to keep the ring in memory")
            }
            temporary = tmp
        } else {
            do throws(Errno) {
                fd = try MemoryFile.create(name: "plugboard-ring", size: mappedSize, seals: [.shrink, .grow])
            } catch {
                throw PlugboardError(code: "ring.memfd",
                                     reason: "cannot create the event ring memfd of \(mappedSize) bytes: \(error.call): \(error.reason)",
                                     fix: "use fewer ring slots, or raise the memory limit")
            }
        }
        do throws(Errno) {
            region = try MappedRegion(fd: fd, count: mappedSize, protection: [.read, .write], shared: true)
        } catch {
            try? fd.close()
            if let temporary { try? FileSystem.unlink(temporary) }
            throw PlugboardError(code: "ring.mmap", reason: "cannot map the event ring: \(error.call): \(error.reason)",
                                 fix: "use fewer ring slots")
        }
        do throws(Errno) {
            if file == nil { try MemoryFile.addSeals([.futureWrite, .seal], to: fd) }
            slotRegion = try MappedRegion(fd: fd, count: n * slotSize, offset: Self.headerSize, protection: .read, shared: true)
        } catch {
            try? fd.close()
            if let temporary { try? FileSystem.unlink(temporary) }
            throw PlugboardError(code: "ring.seal", reason: "cannot seal or map the event ring read-only: \(error.call): \(error.reason)",
                                 fix: "run on Linux 5.1 or later (F_SEAL_FUTURE_WRITE)")
        }
        memoryFile = fd
        base = region.baseAddress
        readBase = UnsafeRawPointer(slotRegion.baseAddress)
        // Every slot backed: otherwise each first write to a page (one per two slots, until
        // the ring wraps, which in a quiet daemon takes days) page-faults on the way to the
        // plugins (docs/benchmarks.md, "## udev"). Populating does not change what the pages
        // hold, so it may run while the producer writes.
        switch prefault {
        case .now:
            _ = pbs_prefault(base, mappedSize)
            prefaulted.store(true, ordering: .releasing)
        case .background:
            let ring = self  // kept alive (and mapped) until the thread is done
            _ = NativeThread(name: "pb-ring-fault") {
                _ = pbs_prefault(ring.base, ring.mappedSize)
                ring.prefaulted.store(true, ordering: .releasing)
            }
        }
        base.storeBytes(of: Self.magic, toByteOffset: 0, as: UInt64.self)
        base.storeBytes(of: UInt32(1), toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: UInt32(slotSize), toByteOffset: 12, as: UInt32.self)
        base.storeBytes(of: UInt32(n), toByteOffset: 16, as: UInt32.self)
        pbs_store_release_u64((base + Self.publishedOffset).assumingMemoryBound(to: UInt64.self), firstSequence - 1)
        if let file, let temporary {
            do throws(Errno) { try FileSystem.rename(temporary, to: file) } catch {
                try? FileSystem.unlink(temporary)
                throw PlugboardError(code: "ring.file", file: file, field: "state.ring_dir",
                                     reason: "cannot put the event ring file in place: \(error)",
                                     fix: "make the directory writable by the daemon's user")
            }
        }
    }

    /// Maps a ring another process created, read-only (a worker process's view). The header
    /// is checked against the file's size before any slot is touched, so a short or foreign
    /// file is refused instead of faulting. Such a ring has no producer.
    /// - Throws: `PlugboardError` naming what does not fit.
    public init(attaching fd: FileDescriptor) throws {
        isAttached = true
        filePath = nil
        let size: Int
        do throws(Errno) { size = try fd.status().size } catch {
            throw PlugboardError(code: "ring.attach", reason: "cannot read the ring's size: \(error)", fix: "pass the ring memfd")
        }
        guard size > Self.headerSize else {
            throw PlugboardError(code: "ring.attach", reason: "the ring file is \(size) bytes, too short for a header",
                                 fix: "pass the ring memfd")
        }
        do throws(Errno) {
            region = try MappedRegion(fd: fd, count: Self.headerSize, protection: .read, shared: true)
        } catch {
            throw PlugboardError(code: "ring.attach", reason: "cannot map the ring header: \(error)", fix: "pass the ring memfd")
        }
        let h = region.baseAddress
        let magic = h.load(fromByteOffset: 0, as: UInt64.self)
        let version = h.load(fromByteOffset: 8, as: UInt32.self)
        let slot = Int(h.load(fromByteOffset: 12, as: UInt32.self))
        let count = Int(h.load(fromByteOffset: 16, as: UInt32.self))
        guard magic == Self.magic, version == 1, slot >= EventLayout.headerSize, slot % 64 == 0,
              count > 0, count & (count - 1) == 0, Self.headerSize + count * slot == size else {
            throw PlugboardError(code: "ring.attach",
                                 reason: "not a version-1 event ring of this size (magic \(String(magic, radix: 16)), \(count) slots of \(slot) bytes, file \(size) bytes)",
                                 fix: "start the worker from the host that created the ring")
        }
        capacity = count
        slotSize = slot
        mask = UInt64(count - 1)
        mappedSize = size
        do throws(Errno) {
            slotRegion = try MappedRegion(fd: fd, count: count * slot, offset: Self.headerSize, protection: .read, shared: true)
        } catch {
            throw PlugboardError(code: "ring.attach", reason: "cannot map the ring's slots: \(error)", fix: "pass the ring memfd")
        }
        memoryFile = fd
        base = h
        readBase = UnsafeRawPointer(slotRegion.baseAddress)
    }

    deinit {
        // The region unmaps itself after this; the memfd's pages go with the last mapping.
        try? memoryFile.close()
    }

    @usableFromInline @inline(__always) var publishedPointer: UnsafeMutablePointer<UInt64> {
        (base + Self.publishedOffset).assumingMemoryBound(to: UInt64.self)
    }
    @inline(__always) var waitersPointer: UnsafeMutablePointer<UInt32> {
        (base + Self.waitersOffset).assumingMemoryBound(to: UInt32.self)
    }
    @inline(__always) var futexPointer: UnsafeMutablePointer<UInt32> {
        (base + Self.futexOffset).assumingMemoryBound(to: UInt32.self)
    }
    @inline(__always) var closedPointer: UnsafeMutablePointer<UInt32> {
        (base + Self.closedOffset).assumingMemoryBound(to: UInt32.self)
    }

    /// The newest published sequence (0 before the first event).
    @inline(__always) public var published: UInt64 { pbs_load_acquire_u64(publishedPointer) }

    /// True once the producer closed the ring (a finite source ended).
    @inline(__always) public var isClosed: Bool { pbs_load_acquire_u32(closedPointer) != 0 }

    /// The slot that holds sequence `seq`.
    @usableFromInline @inline(__always) func slot(_ seq: UInt64) -> UnsafeMutableRawPointer {
        base + Self.headerSize + Int((seq &- 1) & mask) * slotSize
    }

    /// The read-only view of the slot that holds `seq` (what consumers hand to plugins).
    @inline(__always) func readSlot(_ seq: UInt64) -> UnsafeRawPointer {
        readBase + Int((seq &- 1) & mask) * slotSize
    }

    /// The one producer of this ring. Traps if called twice: single producer by construction.
    public func makeProducer() -> RingProducer {
        precondition(!isAttached, "an attached ring is read-only")
        let (exchanged, _) = producerTaken.compareExchange(expected: false, desired: true, ordering: .relaxed)
        precondition(exchanged, "EventRing has exactly one producer")
        return RingProducer(ring: self)
    }

    /// A new consumer whose cursor starts at the newest published event (it sees what comes next).
    /// `sleepWord` is where it announces that it sleeps on the futex (the ring header's
    /// `waiters` count by default; a worker process passes a word of its own writable page).
    /// `startingAt` places the cursor elsewhere (a restarted worker process reading on from where
    /// its predecessor stopped); a cursor a whole ring behind is lapped at the first poll.
    /// `wakeAtWord`, beside a `sleepWord` of its own: where it says which sequence is worth
    /// waking it for mid-burst (`wakeIfDue`).
    public func makeConsumer(name: String, sleepWord: UnsafeMutablePointer<UInt32>? = nil,
                             wakeAtWord: UnsafeMutablePointer<UInt64>? = nil,
                             startingAt: UInt64? = nil) -> RingConsumer {
        let c = RingConsumer(ring: self, name: name, cursor: min(startingAt ?? published, published),
                             sleepWord: sleepWord ?? waitersPointer, wakeAtWord: wakeAtWord)
        consumers.withLock { $0[ObjectIdentifier(c)] = c }
        return c
    }

    /// The cursor of the slowest registered consumer, or nil when there is none.
    func minimumConsumerCursor() -> UInt64? {
        // No array per call: the producer asks this on every turn of its wait for room.
        let local = consumers.withLock { d -> UInt64? in
            var m: UInt64?
            for c in d.values {
                let v = c.sharedCursor.load(ordering: .acquiring)
                if m == nil || v < m! { m = v }
            }
            return m
        }
        guard remoteCount.load(ordering: .relaxed) > 0 else { return local }
        let head = published
        let remote = remotes.withLock { d -> UInt64? in
            var m: UInt64?
            for r in d.values {
                let v = r.cursor(head: head)
                if m == nil || v < m! { m = v }
            }
            return m
        }
        switch (local, remote) {
        case let (l?, r?): return min(l, r)
        default: return local ?? remote
        }
    }

    /// Names and lags of the registered consumers (for metrics).
    public var consumerLags: [(name: String, lag: UInt64)] {
        let head = published
        return consumers.withLock { $0.values.map { ($0.name, head &- $0.sharedCursor.load(ordering: .relaxed)) } }
            + remotes.withLock { $0.values.map { ($0.name, head &- $0.cursor(head: head)) } }
    }

    /// Registers a consumer in another process: its cursor and sleeping flag live in a page it
    /// can write (never in the ring). Its cursor counts for flow control and lag like a local
    /// one's, read defensively (see `RemoteCursor`). Deregister it when the process is gone.
    public func registerRemote(name: String, cursor: UnsafeMutablePointer<UInt64>,
                               sleeping: UnsafeMutablePointer<UInt32>,
                               wakeAt: UnsafeMutablePointer<UInt64>? = nil) -> RemoteCursor {
        let r = RemoteCursor(ring: self, name: name, cursor: cursor, sleeping: sleeping, wakeAt: wakeAt)
        remotes.withLock { $0[ObjectIdentifier(r)] = r }
        remoteCount.add(1, ordering: .relaxed)
        return r
    }

    /// True when a consumer in another process said it sleeps on the futex.
    @usableFromInline func remoteSleeping() -> Bool {
        remotes.withLock { $0.values.contains { pbs_load_seqcst_u32($0.sleeping) != 0 } }
    }

    /// True when a consumer in another process sleeps and `head` reached the sequence it asked to
    /// be woken for (any, when it names none). What it wrote there is its own business: a worker
    /// that asks for too much only sleeps longer itself, until the burst's `flush()`.
    @usableFromInline func remoteDue(head: UInt64) -> Bool {
        remotes.withLock {
            $0.values.contains { r in
                pbs_load_seqcst_u32(r.sleeping) != 0 && (r.wakeAt.map { pbs_load_seqcst_u64($0) <= head } ?? true)
            }
        }
    }

    /// Wakes every waiting consumer. Called by the producer after publishing when someone sleeps.
    @usableFromInline @inline(__always) func wakeIfWaiting() {
        // Pairs with the waiter's seq_cst increment of `waiters` then load of
        // `published`: either the waiter sees the new sequence, or we see it waiting.
        pbs_fence_seqcst()
        if pbs_load_seqcst_u32(waitersPointer) != 0 || (remoteCount.load(ordering: .relaxed) > 0 && remoteSleeping()) {
            wakeAll()
        }
    }

    /// The mid-burst wake (`RingProducer.flushIfDue`): like `wakeIfWaiting`, but a consumer of
    /// this process sleeping on the ring is woken only once the events it asked for are there
    /// (`wakeAt`: its cursor plus its `wakeBatch`), not for every few events the producer
    /// writes. With 64 plugin threads on two cores, a wake every 32 events of the synthetic
    /// source woke each thread for one short batch: two context switches per event in all, and
    /// the cost per plugin per event about twice that of one plugin (docs/benchmarks.md, "Cost
    /// per plugin from 1 to 64 plugins"). The producer's end-of-burst `flush()` still wakes
    /// everyone, so an idle ring's latency does not change. A consumer in another process asks
    /// the same way, through a word in its own control page (`WorkerControl.wakeAtWord`: the ring
    /// is read-only to it).
    @usableFromInline func wakeIfDue() {
        pbs_fence_seqcst()
        let head = pbs_load_seqcst_u64(publishedPointer)
        if pbs_load_seqcst_u32(waitersPointer) != 0 && head >= wakeAt.load(ordering: .sequentiallyConsistent) {
            wakeAll()
        } else if remoteCount.load(ordering: .relaxed) > 0 && remoteDue(head: head) {
            wakeAll()
        }
    }

    /// Lowers `wakeAt` to `seq` (a consumer about to sleep mid-burst).
    func requestWake(at seq: UInt64) {
        var current = wakeAt.load(ordering: .sequentiallyConsistent)
        while seq < current {
            let (exchanged, original) = wakeAt.compareExchange(expected: current, desired: seq, ordering: .sequentiallyConsistent)
            if exchanged { return }
            current = original
        }
    }

    func wakeAll() {
        // Before the futex word changes: a consumer that asks for a wake after this keeps its
        // request; one that asked before reads the new word and does not sleep on the old one.
        wakeAt.store(.max, ordering: .sequentiallyConsistent)
        _ = pbs_fetch_add_u32(futexPointer, 1)
        // Can fail only with a bad address (a bug): nothing to recover.
        _ = try? Futex.wake(futexPointer, count: .max)
    }

    /// Wakes the sleepers on the ring whose waiter bits share one with `bits`, and no others
    /// (`ConsumerWakeup`): the word moves first, so one about to sleep on the old word does not.
    func wake(bits: UInt32) {
        _ = pbs_fetch_add_u32(futexPointer, 1)
        _ = try? Futex.wake(futexPointer, count: .max, bits: bits)
    }

    /// The seals in force on the ring's memfd (for tests and `/debug`).
    public var seals: Int32 { pbs_memfd_seals(fd) }
}

/// Wakes one in-process consumer of the ring for something other than an event: more work it
/// serves from elsewhere (the Redis publisher's plugin output), or a stop. The consumer then
/// sleeps as a waiter with its own futex bit (`RingConsumer.makeWakeup`), so the producer's wakes
/// still reach it and these reach no other consumer. Without it the publisher polled plugin output
/// every millisecond: 3 % of a core for an idle daemon (docs/benchmarks.md, "An idle daemon").
///
/// The consumer calls `willSleep()`, then looks at its other work once more, then `wait`s, then
/// `didWake()`; whoever adds work or asks it to stop does so first, then calls `signal()`. Both
/// sides use sequentially consistent order, so either the consumer sees the work or `signal`
/// sees it sleeping.
public final class ConsumerWakeup: Sendable {
    let ring: EventRing
    let bits: UInt32
    private let sleeping = Atomic<Bool>(false)

    init(ring: EventRing, bits: UInt32) {
        self.ring = ring
        self.bits = bits
    }

    public func willSleep() { sleeping.store(true, ordering: .sequentiallyConsistent) }
    public func didWake() { sleeping.store(false, ordering: .relaxed) }

    /// Wakes the consumer if it sleeps (a load and nothing else when it is awake).
    public func signal() {
        if sleeping.load(ordering: .sequentiallyConsistent) { ring.wake(bits: bits) }
    }
}

/// The single writer of an `EventRing`. Use it from one thread only.
public final class RingProducer: @unchecked Sendable {
    // @unchecked: handed once to the source thread and used only there (single
    // producer, enforced by EventRing.makeProducer); `next` is never shared.
    public let ring: EventRing
    @usableFromInline var next: UInt64
    /// When true the producer waits for the slowest registered consumer instead of
    /// lapping it: for finite sources (replay, synthetic) whose whole point is that
    /// every event arrives. Live sources (udev) never wait.
    public var flowControl = false
    /// Set from any thread to stop waiting for consumers (shutdown, a stuck plugin).
    public let abandonFlowControl = Atomic<Bool>(false)
    @usableFromInline var roomUntil: UInt64 = 0
    /// Events published per action (index `PB_ACTION_*`; 7 counts everything past RESYNC).
    /// One writer (this producer), any readers: a relaxed load and a release store per event.
    @usableFromInline let actionCounts: UnsafeMutablePointer<UInt64>

    init(ring: EventRing) {
        self.ring = ring
        self.next = ring.published + 1
        actionCounts = .allocate(capacity: 8)
        actionCounts.initialize(repeating: 0, count: 8)
    }

    deinit { actionCounts.deallocate() }

    /// Events published so far, by action name ("add", "remove", ... "unknown").
    public var eventsByAction: [String: UInt64] {
        var out: [String: UInt64] = [:]
        for a in EventAction.allCases { out[a.name, default: 0] += pbs_load_acquire_u64(actionCounts + Int(a.rawValue)) }
        out[EventAction.unknown.name, default: 0] += pbs_load_acquire_u64(actionCounts + 7)
        return out
    }

    /// Blocks until writing `seq` overwrites nothing a registered consumer has yet to read.
    ///
    /// Sleeping consumers are woken once, on entry: what was published without a wake
    /// (`publishWithoutWake`) must reach the slowest before the producer waits for it, and
    /// nothing is published while it waits, so a consumer that goes to sleep later sees the
    /// same `published` and does not sleep (the waiter's check in `RingConsumer.wait`). Waking
    /// on every turn of the loop instead (as before) woke every consumer that was already done
    /// (the fast plugins' workers) thousands of times a second for nothing while the producer
    /// waited for the slowest (the Redis publisher): a `futex` wake per turn here, and a wake-up,
    /// a spin and a sleep in each of them (docs/benchmarks.md, "The whole daemon with the sample
    /// plugins"). Once the wait sleeps, the wake is repeated now and then, as a safety net that
    /// costs nothing measurable.
    ///
    /// The wait spins briefly, yields a few times, then sleeps `roomSleep` per turn. It used to
    /// yield for 10,000 turns before sleeping: while the Redis publisher (the slowest) drained a
    /// full ring, the producer's `sched_yield` loop took a third of the daemon's CPU, on two
    /// cores shared with redis-server. A sleep costs no throughput: when it starts the ring is
    /// full, so the slowest consumer has `capacity` events to work through, far more than it
    /// takes in one sleep.
    @usableFromInline
    func waitForRoom(_ seq: UInt64) {
        ring.wakeIfWaiting()
        var turns = 0
        var sleepMicroseconds: Int64 = 50
        while !abandonFlowControl.load(ordering: .relaxed) {
            guard let slowest = ring.minimumConsumerCursor() else {
                roomUntil = seq &+ UInt64(ring.capacity / 2)
                return
            }
            // Keep `published - cursor < capacity` for every consumer (see EventRing).
            if seq &- slowest < UInt64(ring.capacity) {
                roomUntil = slowest &+ UInt64(ring.capacity) &- 1
                return
            }
            turns += 1
            if turns < Self.roomSpins {
                pbs_cpu_relax()
            } else if turns < Self.roomSpins + Self.roomYields {
                sched_yield()
            } else {
                if turns % 64 == 0 { ring.wakeIfWaiting() }
                sleepThread(for: .microseconds(sleepMicroseconds))
                sleepMicroseconds = min(sleepMicroseconds * 2, Self.roomSleepMaxMicroseconds)
            }
        }
        roomUntil = seq
    }

    /// The wait for room (`waitForRoom`): spins, then yields, then sleeps from 50 µs, doubling
    /// while no room appears, up to `roomSleepMaxMicroseconds`. Each sleep is a timer and two
    /// context switches (about 8 % of the daemon's CPU at a fixed 50 µs). The sleeps grow only
    /// while the slowest consumer commits nothing, and it still has most of a ring to read then.
    static let roomSpins = 64
    static let roomYields = 16
    static let roomSleepMaxMicroseconds: Int64 = 400

    /// The sequence the next published event will get.
    public var nextSequence: UInt64 { next }

    /// Fills the next slot in place with `fill`, publishes it and wakes sleeping consumers.
    /// - Returns: the event's sequence.
    @inlinable @discardableResult
    public func publish(_ fill: (inout EventWriter) throws -> Void) rethrows -> UInt64 {
        let seq = try write(fill)
        ring.wakeIfWaiting()
        return seq
    }

    /// Like `publish`, but leaves waking consumers to a later `flush()`: for sources that
    /// produce bursts (one wakeup per burst instead of per event).
    @inlinable @discardableResult
    public func publishWithoutWake(_ fill: (inout EventWriter) throws -> Void) rethrows -> UInt64 {
        try write(fill)
    }

    @inlinable
    func write(_ fill: (inout EventWriter) throws -> Void) rethrows -> UInt64 {
        let seq = next
        if flowControl && seq > roomUntil { waitForRoom(seq) }
        // Orders the previous publish before this slot's writes become visible, so a reader
        // that sees torn data in this slot also sees `published >= seq - 1` when it validates.
        pbs_fence_release()
        var writer = EventWriter(at: ring.slot(seq), capacity: ring.slotSize, sequence: seq)
        try fill(&writer)
        let counter = actionCounts + Int(min(writer.event.pointee.action, 7))
        pbs_store_release_u64(counter, pbs_load_relaxed_u64(counter) &+ 1)
        pbs_store_release_u64(ring.publishedPointer, seq)
        next = seq &+ 1
        return seq
    }

    /// Wakes consumers sleeping on the ring (after `publishWithoutWake`). Call it before the
    /// producer stops publishing for a while (the end of a burst, before blocking on input).
    public func flush() { ring.wakeIfWaiting() }

    /// A wake in the middle of a burst, when the producer will publish more at once: wakes a
    /// sleeping consumer only when it has a batch worth waking for (`EventRing.wakeIfDue`). It
    /// must be followed by a `flush()` when the burst ends, or a consumer may sleep on events
    /// until its wait times out.
    public func flushIfDue() { ring.wakeIfDue() }

    /// Marks the end of a finite stream: consumers drain what is published, then finish.
    public func close() {
        pbs_store_release_u32(ring.closedPointer, 1)
        ring.wakeAll()
    }
}

/// What a consumer's poll found.
public enum RingPoll: Equatable, Sendable {
    /// `count` events are ready in the buffer given to `poll`.
    case events(Int)
    /// The consumer fell a whole ring behind and skipped `missed` events; its cursor now
    /// points at the newest event. Resynchronise from the device table.
    case lapped(missed: UInt64)
    /// Nothing new yet.
    case empty
    /// The ring is closed and this consumer has read everything.
    case finished
}

/// One reader of an `EventRing`, with its own cursor. Use it from one thread only.
public final class RingConsumer: @unchecked Sendable {
    // @unchecked: created on the orchestration thread, then used only by the
    // worker thread it is handed to; the cursor is plain state of that thread.
    // Lag and counters readable from other threads are in `stats`.
    public let ring: EventRing
    public let name: String
    /// The sequence of the last event this consumer finished with.
    public private(set) var cursor: UInt64
    /// How far the last batch extends (cursor + count of the pending batch).
    var pendingEnd: UInt64
    /// Times lapped.
    public private(set) var laps: UInt64 = 0
    /// Events skipped by laps.
    public private(set) var missed: UInt64 = 0
    /// Most spins before sleeping on the futex (0: sleep at once).
    public var spinLimit = 256
    /// Waits in a row that spun for nothing and then slept long (see `wait`). Used by the
    /// consumer's thread only.
    var longSleeps = 0
    /// A sleep shorter than this means the next event came about a spin's length (256 pauses,
    /// a few µs) after the consumer went to sleep: a spin would have caught it, so spinning
    /// resumes. Longer sleeps mean the spin would have been wasted. It was 50 µs: then a paced
    /// source whose events came 10–50 µs apart now and then (umockdev's sender at one per
    /// 100 µs, with jitter) turned spinning back on for eight waits each time, and the plugin
    /// threads of the paced udev run spent 4–10 µs more per event (docs/benchmarks.md, "Consumers
    /// spin again only after a sleep a spin could have saved").
    static let shortSleepNanoseconds: UInt64 = 10_000
    /// After this many long sleeps in a row the consumer stops spinning, so an idle consumer
    /// costs one futex sleep per event, not a spin. Not after one: on a busy machine a consumer
    /// of a hot ring also sleeps long now and then (descheduled), and it must keep spinning.
    static let longSleepsBeforeNoSpin = 8
    /// The futex bits this consumer sleeps with: every consumer has `eventBits`, which the
    /// producer's plain wake matches too; a consumer with a `ConsumerWakeup` also has
    /// `wakeupBits`, so that wakeup reaches it and no other consumer.
    var waitBits: UInt32 = RingConsumer.eventBits
    static let eventBits: UInt32 = 1
    static let wakeupBits: UInt32 = 2

    /// Lets something other than the producer wake this consumer (see `ConsumerWakeup`).
    public func makeWakeup() -> ConsumerWakeup {
        waitBits = Self.eventBits | Self.wakeupBits
        return ConsumerWakeup(ring: ring, bits: Self.wakeupBits)
    }

    /// The spins the next `wait` will make before sleeping (for tests and `/debug`).
    public var nextSpins: Int { longSleeps >= Self.longSleepsBeforeNoSpin ? 0 : spinLimit }
    /// The cursor, published for the producer's flow control and for lag metrics.
    let sharedCursor = Atomic<UInt64>(0)
    /// Raised while this consumer sleeps on the futex (the producer wakes only when one is up).
    let sleepWord: UnsafeMutablePointer<UInt32>
    /// How many events a sleeping consumer waits for when the producer is mid-burst
    /// (`RingProducer.flushIfDue`); the end of a burst (`flush`) wakes it for any number.
    /// The default, 256 (at most a quarter of the ring), is 13 of the daemon's default batches
    /// of 20.
    public var wakeBatch: UInt64
    /// A consumer in another process: where it tells the producer its `cursor + wakeBatch`.
    let wakeAtWord: UnsafeMutablePointer<UInt64>?

    init(ring: EventRing, name: String, cursor: UInt64, sleepWord: UnsafeMutablePointer<UInt32>,
         wakeAtWord: UnsafeMutablePointer<UInt64>? = nil) {
        self.ring = ring
        self.name = name
        self.sleepWord = sleepWord
        self.wakeAtWord = wakeAtWord
        self.wakeBatch = UInt64(max(1, min(256, ring.capacity / 4)))
        self.cursor = cursor
        self.pendingEnd = cursor
        sharedCursor.store(cursor, ordering: .relaxed)
    }

    /// Moves a consumer that has read nothing yet to `cursor` (a hot-reloaded plugin's worker
    /// takes over its predecessor's position). Call before its first poll, while a consumer at
    /// or behind `cursor` is still registered.
    func reposition(to cursor: UInt64) {
        self.cursor = cursor
        pendingEnd = cursor
        sharedCursor.store(cursor, ordering: .releasing)
    }

    /// Stops counting this consumer for flow control and lag (it will read no more).
    public func deregister() {
        _ = ring.consumers.withLock { $0.removeValue(forKey: ObjectIdentifier(self)) }
    }

    /// Events published but not yet finished by this consumer.
    public var lag: UInt64 { ring.published &- cursor }

    /// Fills `buffer` with pointers to up to `max` next events (oldest first).
    ///
    /// The pointers stay valid until `commit()` if the producer does not lap this
    /// consumer meanwhile; `commit()` says whether it did.
    @inline(__always)
    public func poll(max: Int, into buffer: UnsafeMutablePointer<UnsafePointer<pb_event>?>) -> RingPoll {
        let head = ring.published
        if head == cursor {
            // `closed` is stored after the last publish, so re-check `published` after seeing it.
            if ring.isClosed && ring.published == cursor { return .finished }
            return .empty
        }
        let available = head &- cursor
        if available >= UInt64(ring.capacity) {
            let skipped = head &- cursor
            lap(to: head, skipped: skipped)
            return .lapped(missed: skipped)
        }
        let n = Int(min(available, UInt64(max)))
        var seq = cursor &+ 1
        for i in 0..<n {
            buffer[i] = ring.readSlot(seq).assumingMemoryBound(to: pb_event.self)
            seq &+= 1
        }
        pendingEnd = cursor &+ UInt64(n)
        return .events(n)
    }

    /// Finishes the batch returned by the last `poll`.
    /// - Returns: false when the producer overwrote part of the batch while it was being read
    ///   (the reader was lapped mid-batch); the consumer then skips to the newest event and
    ///   counts a lap, and the caller should resynchronise.
    @inline(__always)
    public func commit() -> Bool {
        // The slot reads of the batch must complete before the validating load.
        pbs_fence_acquire()
        let head = ring.published
        // The producer may be writing `head + 1`, which overwrites `head + 1 - capacity`:
        // the batch's oldest event (cursor + 1) is intact only while head - cursor < capacity.
        if head &- cursor >= UInt64(ring.capacity) {
            // The whole batch counts as missed: what the reader saw may be torn.
            lap(to: head, skipped: head &- cursor)
            return false
        }
        cursor = pendingEnd
        sharedCursor.store(cursor, ordering: .releasing)
        return true
    }

    func lap(to head: UInt64, skipped: UInt64) {
        laps &+= 1
        missed &+= skipped
        cursor = head
        pendingEnd = head
        sharedCursor.store(cursor, ordering: .releasing)
    }

    /// Blocks until an event past the cursor is published, the ring closes, or `timeoutNanoseconds`
    /// pass (0 = no limit). Spins briefly first, then sleeps on the ring's futex.
    ///
    /// The spin is adaptive: it pays only when the producer publishes within it (a hot ring:
    /// synthetic or replay sources, bursts), and otherwise costs a few microseconds of CPU per
    /// event for nothing (profiled on a paced udev burst: the spin was the top symbol of every
    /// consumer). So after `longSleepsBeforeNoSpin` waits in a row that spun for nothing and
    /// then slept long, later waits sleep at once, until a sleep ends within
    /// `shortSleepNanoseconds` or an event is there before the sleep: events come fast again.
    public func wait(timeoutNanoseconds: UInt64 = 0) {
        for _ in 0..<nextSpins {
            if ring.published != cursor || ring.isClosed {
                longSleeps = 0
                return
            }
            pbs_cpu_relax()
        }
        let word = pbs_load_seqcst_u32(ring.futexPointer)
        // Before the sleeping flag goes up: a producer that sees the flag sees the request.
        if sleepWord == ring.waitersPointer {
            ring.requestWake(at: cursor &+ wakeBatch)
        } else if let wakeAtWord {
            pbs_store_release_u64(wakeAtWord, cursor &+ wakeBatch)
        }
        _ = pbs_fetch_add_u32(sleepWord, 1)
        if pbs_load_seqcst_u64(ring.publishedPointer) == cursor && !ring.isClosed {
            // Any outcome (woken, timed out, a signal) sends the caller back to poll.
            let slept = pbs_monotonic_ns()
            Futex.wait(ring.futexPointer, expected: word, timeoutNanoseconds: timeoutNanoseconds, bits: waitBits)
            if pbs_monotonic_ns() &- slept < Self.shortSleepNanoseconds {
                longSleeps = 0
            } else if longSleeps < Self.longSleepsBeforeNoSpin {
                longSleeps += 1
            }
        } else {
            // Published between the spin and the sleep: events come fast; spin again.
            longSleeps = 0
        }
        _ = pbs_fetch_sub_u32(sleepWord, 1)
    }
}

/// The host's view of a consumer in another process: a cursor and a sleeping flag in a page
/// that process can write. The process is untrusted, so its cursor is read defensively: never
/// past `published`, never behind what was seen before (a worker that writes a small number
/// cannot hold back the producer's flow control further than a worker that stopped).
public final class RemoteCursor: @unchecked Sendable {
    // @unchecked: the pointers are into a shared page owned by the host's worker record, which
    // deregisters this before unmapping it; `highest` is guarded by `lock`.
    public let name: String
    unowned let ring: EventRing
    let cursorWord: UnsafeMutablePointer<UInt64>
    let sleeping: UnsafeMutablePointer<UInt32>
    /// Where it says which sequence is worth waking it for mid-burst (nil: any).
    let wakeAt: UnsafeMutablePointer<UInt64>?
    private let highest = Mutex<UInt64>(0)

    init(ring: EventRing, name: String, cursor: UnsafeMutablePointer<UInt64>, sleeping: UnsafeMutablePointer<UInt32>,
         wakeAt: UnsafeMutablePointer<UInt64>? = nil) {
        self.ring = ring
        self.name = name
        self.cursorWord = cursor
        self.sleeping = sleeping
        self.wakeAt = wakeAt
        highest.withLock { $0 = pbs_load_acquire_u64(cursor) }
    }

    /// The cursor, clamped to `[highest seen, head]`.
    func cursor(head: UInt64) -> UInt64 {
        let v = pbs_load_acquire_u64(cursorWord)
        return highest.withLock { h in
            if v > h && v <= head { h = v }
            return h
        }
    }

    /// Moves the cursor the host trusts (a restarted or replacement worker starting at `seq`).
    public func reset(to seq: UInt64) {
        pbs_store_release_u64(cursorWord, seq)
        highest.withLock { $0 = seq }
    }

    /// Stops counting this consumer (its process is gone, or quarantined).
    public func deregister() {
        let removed = ring.remotes.withLock { $0.removeValue(forKey: ObjectIdentifier(self)) }
        if removed != nil { ring.remoteCount.subtract(1, ordering: .relaxed) }
    }
}
