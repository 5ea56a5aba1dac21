import CPlugboard
import CPlugboardSupport

#if canImport(Glibc)
import Glibc
#endif

/// How a plugin's settle window runs: manifest `[worker] settle_ms` (or the daemon's
/// `performance.debounce_ms` for `settle_ms = "default"`) and `performance.settle_devices`.
public struct SettleOptions: Sendable, Equatable {
    /// How long a device's events are held after its first one, before the net change is delivered.
    public var window: Duration
    /// Most devices held at once; an event of another device past it is delivered at once (counted).
    public var maxDevices: Int

    public init(window: Duration, maxDevices: Int = SettleOptions.defaultMaxDevices) {
        self.window = window
        self.maxDevices = max(1, maxDevices)
    }

    public static let defaultMaxDevices = 128

    var windowNanoseconds: UInt64 { UInt64(max(0, window.nanoseconds)) }
}

/// One plugin's settle window (docs/operations.md, "Settle window"): events of one device within
/// `window` of its first are held and coalesced, then the net change is delivered.
///
/// - A device is keyed by its syspath (the same port keeps it across a re-plug, where the device
///   number changes); an event without one by bus and device number.
/// - The window opens at a device's first held event and closes `window` later; it does not
///   extend, so a device that never stops flapping is still delivered (or counted) once per window
///   and never stalls the plugin.
/// - At the close, from the presence before the window (absent if the first event was `add`) and
///   after it (absent if the last event was `remove`): absent → absent (add ... remove) is a
///   *flap*, delivered as nothing and counted; absent → present is the last event with its action
///   set to `add` (so a plugin sees the device arrive, in its last state); otherwise the last
///   event as it is.
/// - The held event is a **copy** of the device's last event in a buffer of this window's own:
///   by the time the window closes its ring slot may have been overwritten (lapped). The copy is
///   taken before the batch's `commit()` validates it, so a torn copy is never delivered: a batch
///   that was lapped discards every held device (the resync that follows carries their state).
/// - Memory is fixed at creation: `maxDevices` slots of `EventLayout.maxSize` bytes (256 KiB at
///   the default 128), nothing allocated per event.
///
/// Used by one worker (thread or process) from its own thread only.
public final class SettleWindow {
    let windowNanoseconds: UInt64
    let capacity: Int
    let slotSize = EventLayout.maxSize
    let storage: UnsafeMutableRawPointer
    // The held devices, in the order their windows opened: their deadlines ascend, so the due
    // ones are a prefix.
    let keys: UnsafeMutablePointer<UInt64>
    let slots: UnsafeMutablePointer<Int32>
    let deadlines: UnsafeMutablePointer<UInt64>
    let presentBefore: UnsafeMutablePointer<Bool>
    let counts: UnsafeMutablePointer<UInt64>
    public private(set) var held = 0
    let free: UnsafeMutablePointer<Int32>
    var freeCount: Int
    /// Slots handed to the plugin by the last `takeDue`, freed by `release()` after the callback.
    let inFlight: UnsafeMutablePointer<Int32>
    var inFlightCount = 0
    /// Flaps per device (by key), for the log: a small table, the least-flapping entry replaced.
    static let flapTableSize = 64
    let flapKeys: UnsafeMutablePointer<UInt64>
    let flapCounts: UnsafeMutablePointer<UInt64>

    /// Events that entered the window and were not delivered as themselves: replaced by a later
    /// event of their device, dropped in a flap, or superseded by a resync.
    public private(set) var coalesced: UInt64 = 0
    /// Windows that ended where they began, without the device (add ... remove): delivered as nothing.
    public private(set) var flaps: UInt64 = 0
    /// Events delivered at once, unsettled, because `capacity` devices were already held.
    public private(set) var overflow: UInt64 = 0

    public init(_ options: SettleOptions) {
        windowNanoseconds = options.windowNanoseconds
        capacity = options.maxDevices
        storage = .allocate(byteCount: capacity * slotSize, alignment: 64)
        keys = .allocate(capacity: capacity)
        slots = .allocate(capacity: capacity)
        deadlines = .allocate(capacity: capacity)
        presentBefore = .allocate(capacity: capacity)
        counts = .allocate(capacity: capacity)
        free = .allocate(capacity: capacity)
        inFlight = .allocate(capacity: capacity)
        for i in 0..<capacity { free[i] = Int32(capacity - 1 - i) }
        freeCount = capacity
        flapKeys = .allocate(capacity: Self.flapTableSize)
        flapCounts = .allocate(capacity: Self.flapTableSize)
        flapKeys.initialize(repeating: 0, count: Self.flapTableSize)
        flapCounts.initialize(repeating: 0, count: Self.flapTableSize)
        // Backed now, like the ring: no page fault on the way to a plugin.
        _ = pbs_prefault(storage, capacity * slotSize)
    }

    deinit {
        storage.deallocate()
        keys.deallocate()
        slots.deallocate()
        deadlines.deallocate()
        presentBefore.deallocate()
        counts.deallocate()
        free.deallocate()
        inFlight.deallocate()
        flapKeys.deallocate()
        flapCounts.deallocate()
    }

    @inline(__always) func slot(_ i: Int32) -> UnsafeMutablePointer<pb_event> {
        (storage + Int(i) * slotSize).assumingMemoryBound(to: pb_event.self)
    }

    /// When the oldest held window closes (`UInt64.max` when none is held).
    public var nextDue: UInt64 { held > 0 ? deadlines[0] : .max }

    /// How long a worker with nothing to read may sleep: until the next window closes, at most `idle`.
    @inline(__always) public func sleepNanoseconds(now: UInt64, idle: UInt64) -> UInt64 {
        guard held > 0 else { return idle }
        let due = deadlines[0]
        // Never 0: a futex wait of 0 means no limit.
        return due <= now ? 1_000 : max(1_000, min(idle, due - now))
    }

    /// The syspath bytes of an event, bounded by the slot (a torn slot cannot point outside it).
    @inline(__always) static func syspath(_ e: UnsafePointer<pb_event>) -> UnsafeRawBufferPointer? {
        let s = e.pointee.syspath
        let end = Int(s.offset) + Int(s.length)
        guard s.offset != 0, s.length > 0, end < min(Int(e.pointee.total_size), EventLayout.maxSize) else { return nil }
        return UnsafeRawBufferPointer(start: UnsafeRawPointer(e) + Int(s.offset), count: Int(s.length))
    }

    /// FNV-1a of the syspath, else of bus and device number.
    @inline(__always) static func key(_ e: UnsafePointer<pb_event>) -> UInt64 {
        if let p = syspath(e) { return FNV1a.hash(p) }
        return (FNV1a.offsetBasis ^ (UInt64(e.pointee.busnum) << 16 | UInt64(e.pointee.devnum) | 1 << 40)) &* FNV1a.prime
    }

    @inline(__always) static func sameDevice(_ a: UnsafePointer<pb_event>, _ b: UnsafePointer<pb_event>) -> Bool {
        switch (syspath(a), syspath(b)) {
        case let (x?, y?): return x.count == y.count && memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0
        case (nil, nil): return a.pointee.busnum == b.pointee.busnum && a.pointee.devnum == b.pointee.devnum
        default: return false
        }
    }

    @inline(__always) func copy(_ e: UnsafePointer<pb_event>, into i: Int32) {
        let n = max(EventLayout.headerSize, min(Int(e.pointee.total_size), slotSize))
        memcpy(slot(i), e, n)
    }

    /// Holds the events `batch[0..<count]` (of the batch being read, before its `commit()`); the
    /// ones that found no room (every device slot held) are moved to the front of `batch`.
    /// - Returns: how many are at the front, to be delivered at once.
    @inline(__always)
    public func hold(_ batch: UnsafeMutablePointer<UnsafePointer<pb_event>?>, count: Int, now: UInt64) -> Int {
        var direct = 0
        for j in 0..<count {
            let e = batch[j]!
            if !hold(e, now: now) {
                batch[direct] = e
                direct += 1
            }
        }
        return direct
    }

    /// Holds one event. False when it could not be held (`capacity` other devices are held).
    public func hold(_ e: UnsafePointer<pb_event>, now: UInt64) -> Bool {
        let k = Self.key(e)
        for i in 0..<held where keys[i] == k && Self.sameDevice(UnsafePointer(slot(slots[i])), e) {
            copy(e, into: slots[i])
            counts[i] &+= 1
            return true
        }
        guard held < capacity, freeCount > 0 else {
            overflow &+= 1
            return false
        }
        freeCount -= 1
        let s = free[freeCount]
        copy(e, into: s)
        keys[held] = k
        slots[held] = s
        deadlines[held] = now &+ windowNanoseconds
        presentBefore[held] = e.pointee.action != EventAction.add.rawValue
        counts[held] = 1
        held += 1
        return true
    }

    /// Moves the devices whose window closed by `now` out of the window: up to `max` net changes
    /// into `out` (pointers into this window's buffer, valid until `release()`); flaps are counted
    /// and reported to `flapped` with the device's last event and its flap count.
    /// - Returns: how many events are in `out`. Less than `max` means nothing else is due.
    public func takeDue(now: UInt64, into out: UnsafeMutablePointer<UnsafePointer<pb_event>?>, max: Int,
                 flapped: (UnsafePointer<pb_event>, UInt64) -> Void) -> Int {
        var k = 0
        var i = 0
        while i < held && deadlines[i] <= now && k < max {
            let e = slot(slots[i])
            let before = presentBefore[i]
            let after = e.pointee.action != EventAction.remove.rawValue
            if !before && !after {
                flaps &+= 1
                coalesced &+= counts[i]
                flapped(UnsafePointer(e), countFlap(keys[i]))
                free[freeCount] = slots[i]
                freeCount += 1
            } else {
                if !before && e.pointee.action != EventAction.add.rawValue { e.pointee.action = EventAction.add.rawValue }
                coalesced &+= counts[i] &- 1
                out[k] = UnsafePointer(e)
                k += 1
                inFlight[inFlightCount] = slots[i]
                inFlightCount += 1
            }
            i += 1
        }
        if i > 0 {
            let rest = held - i
            if rest > 0 {
                (keys).update(from: keys + i, count: rest)
                slots.update(from: slots + i, count: rest)
                deadlines.update(from: deadlines + i, count: rest)
                presentBefore.update(from: presentBefore + i, count: rest)
                counts.update(from: counts + i, count: rest)
            }
            held = rest
        }
        return k
    }

    /// Frees what the last `takeDue` handed out (after the plugin's callback returned).
    @inline(__always) public func release() {
        for j in 0..<inFlightCount {
            free[freeCount] = inFlight[j]
            freeCount += 1
        }
        inFlightCount = 0
    }

    /// Drops every held device (the consumer was lapped: a copy may be torn, and the resync that
    /// follows carries the devices' state). Their events count as coalesced.
    public func discardAll() {
        for i in 0..<held {
            coalesced &+= counts[i]
            free[freeCount] = slots[i]
            freeCount += 1
        }
        held = 0
    }

    /// This device's flaps so far (the table keeps the `flapTableSize` devices flapping most).
    func countFlap(_ key: UInt64) -> UInt64 {
        var least = 0
        for j in 0..<Self.flapTableSize {
            if flapKeys[j] == key && flapCounts[j] > 0 {
                flapCounts[j] &+= 1
                return flapCounts[j]
            }
            if flapCounts[j] < flapCounts[least] { least = j }
        }
        flapKeys[least] = key
        flapCounts[least] = 1
        return 1
    }

    /// `vvvv:pppp` of an event, for the log.
    public static func deviceID(_ e: UnsafePointer<pb_event>) -> String {
        func hex4(_ v: UInt16) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: 4 - s.count) + s
        }
        return "\(hex4(e.pointee.vendor_id)):\(hex4(e.pointee.product_id))"
    }

    /// Whether a device's flap count is one the log reports: 1, 10, 100, 1000...
    public static func reportsFlap(_ n: UInt64) -> Bool {
        var p: UInt64 = 1
        while p < n { p &*= 10 }
        return p == n
    }
}
