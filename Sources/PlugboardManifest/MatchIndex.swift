import CPlugboard

/// All plugins' `[[match]]` rules compiled into one hash index keyed by vendor:product, with wildcard
/// buckets — the idea of kmod's `modules.alias.bin`, where the lookup key is the device and the
/// wildcard patterns are tried in a fixed, small number of probes. Each rule goes into exactly one
/// bucket, the most specific its fields allow:
///
///     exact      vendor:product           (one vendor and one product)
///     vendor     vendor:*                 (one vendor; any product or a product range)
///     class      device_class=C           (no single vendor, device_class set)
///     interface  interface_class=C        (no single vendor or device_class, interface_class set)
///     any        everything else          (vendor ranges, serial/actions only, subsystem only)
///
/// An event probes exact(vid,pid), vendor(vid), class(its device class), interface(each distinct
/// interface class it has) and any; the remaining fields of the candidate rules are then checked.
///
/// Two kinds of question, neither of which scans all plugins:
/// - per worker: `firstMatch(plugin:event:)` — does plugin `i` want this event, and by which rule?
///   The probes go to a table keyed by (plugin, bucket); the cost depends on how many of *that
///   plugin's* rules share a bucket, not on the number of plugins.
/// - per event: `forEachMatch(event:)` — which plugins want it (for `explain --device` and tests);
///   the same probes of the global buckets, then a merge of only the candidate rules.
///
/// The hot path (`firstMatch`) does not allocate, lock or retain: the storage is immutable after init.
public final class MatchIndex: Sendable {
    /// One rule, flattened for matching.
    @usableFromInline
    struct Compiled: Sendable {
        var plugin: Int32
        var rule: Int32
        var vendorLo: UInt16, vendorHi: UInt16
        var productLo: UInt16, productHi: UInt16
        var fields: UInt16
        var deviceClass: UInt8
        var interfaceClass: UInt8
        var actions: UInt8
        var serialStart: Int32
        var serialCount: Int32
    }

    static let kindExact: UInt64 = 0, kindVendor: UInt64 = 1, kindAny: UInt64 = 2
    static let kindClass: UInt64 = 3, kindInterface: UInt64 = 4

    let rules: [Compiled]
    /// Glob bytes of every serial pattern, back to back.
    let serialPool: [UInt8]
    /// Open-addressing table: keys (0 = empty), and for each key a range of `order`.
    let keys: [UInt64]
    let starts: [Int32]
    let counts: [Int32]
    let mask: Int
    /// Rule indices (into `rules`), grouped by bucket, ascending within a bucket.
    let order: [Int32]
    /// Number of plugins the index was built for.
    public let pluginCount: Int

    /// - Parameter plugins: for each plugin, in the host's plugin order, its rules in file order.
    public init(plugins: [[MatchRule]]) {
        var rules: [Compiled] = []
        var pool: [UInt8] = []
        var buckets: [UInt64: [Int32]] = [:]
        for (p, list) in plugins.enumerated() {
            for (r, rule) in list.enumerated() {
                var fields: UInt16 = 0
                if rule.vendor != nil { fields |= PBMFormat.MatchField.vendor }
                if rule.product != nil { fields |= PBMFormat.MatchField.product }
                if rule.deviceClass != nil { fields |= PBMFormat.MatchField.deviceClass }
                if rule.interfaceClass != nil { fields |= PBMFormat.MatchField.interfaceClass }
                var start: Int32 = 0, count: Int32 = 0
                if let s = rule.serial {
                    fields |= PBMFormat.MatchField.serial
                    start = Int32(pool.count)
                    pool += s.utf8
                    count = Int32(s.utf8.count)
                }
                let c = Compiled(plugin: Int32(p), rule: Int32(r),
                                 vendorLo: rule.vendor?.lowerBound ?? 0, vendorHi: rule.vendor?.upperBound ?? 0,
                                 productLo: rule.product?.lowerBound ?? 0, productHi: rule.product?.upperBound ?? 0,
                                 fields: fields, deviceClass: rule.deviceClass ?? 0, interfaceClass: rule.interfaceClass ?? 0,
                                 actions: rule.actions.rawValue, serialStart: start, serialCount: count)
                let id = Int32(rules.count)
                rules.append(c)
                let kind: UInt64, v: UInt16, pr: UInt16
                // A range of vendors cannot be keyed by one vendor: it goes to the class/interface/any
                // buckets; a single vendor with a product range goes to the vendor bucket.
                let oneVendor = rule.vendor.map { $0.lowerBound == $0.upperBound } ?? false
                let oneProduct = rule.product.map { $0.lowerBound == $0.upperBound } ?? false
                if oneVendor && oneProduct { kind = Self.kindExact; v = c.vendorLo; pr = c.productLo }
                else if oneVendor { kind = Self.kindVendor; v = c.vendorLo; pr = 0 }
                else if let dc = rule.deviceClass { kind = Self.kindClass; v = 0; pr = UInt16(dc) }
                else if let ic = rule.interfaceClass { kind = Self.kindInterface; v = 0; pr = UInt16(ic) }
                else { kind = Self.kindAny; v = 0; pr = 0 }
                buckets[Self.key(plugin: p, kind: kind, vendor: v, product: pr), default: []].append(id)
                buckets[Self.key(plugin: -1, kind: kind, vendor: v, product: pr), default: []].append(id)
            }
        }
        var capacity = 16
        while capacity < buckets.count * 2 { capacity <<= 1 }
        var keys = [UInt64](repeating: 0, count: capacity)
        var starts = [Int32](repeating: 0, count: capacity)
        var counts = [Int32](repeating: 0, count: capacity)
        var order: [Int32] = []
        for (k, ids) in buckets.sorted(by: { $0.key < $1.key }) {
            var slot = Self.hash(k) & (capacity - 1)
            while keys[slot] != 0 { slot = (slot + 1) & (capacity - 1) }
            keys[slot] = k
            starts[slot] = Int32(order.count)
            counts[slot] = Int32(ids.count)
            order += ids // already ascending: rules were appended in plugin, then file order
        }
        self.rules = rules
        self.serialPool = pool
        self.keys = keys
        self.starts = starts
        self.counts = counts
        self.mask = capacity - 1
        self.order = order
        self.pluginCount = plugins.count
    }

    /// Bit 63 set so that no key is 0 (the empty slot); plugin -1 is the global bucket. Bits 35...62
    /// hold plugin + 1, 32...34 the bucket kind, then vendor and product (or the class code).
    @inline(__always)
    static func key(plugin: Int, kind: UInt64, vendor: UInt16, product: UInt16) -> UInt64 {
        (1 << 63) | ((UInt64(UInt32(truncatingIfNeeded: plugin + 1)) & 0xFFF_FFFF) << 35) | (kind << 32) | (UInt64(vendor) << 16) | UInt64(product)
    }

    /// A full 64-bit mixer (murmur3's finaliser): every key bit reaches the low bits used for the slot.
    /// (A plain multiply-shift kept only low key bits there, so one (vendor, product) of many plugins
    /// collided into one probe chain and a lookup grew with the plugin count; the benchmark showed it.)
    @inline(__always)
    static func hash(_ k: UInt64) -> Int {
        var x = k
        x ^= x >> 33
        x &*= 0xFF51_AFD7_ED55_8CCD
        x ^= x >> 33
        x &*= 0xC4CE_B9FE_1A85_EC53
        x ^= x >> 33
        return Int(truncatingIfNeeded: x)
    }

    /// The slot of `k`, or -1.
    @inline(__always)
    func find(_ k: UInt64) -> Int {
        var slot = Self.hash(k) & mask
        while true {
            let s = keys[slot]
            if s == k { return slot }
            if s == 0 { return -1 }
            slot = (slot + 1) & mask
        }
    }

    /// The index (0-based, in file order) of the first of plugin `plugin`'s rules that matches `event`,
    /// or nil. Does not allocate; cost independent of the number of plugins.
    /// - Parameter event: valid for the duration of the call.
    public func firstMatch(plugin: Int, event: UnsafePointer<pb_event>) -> Int? {
        let vid = event.pointee.vendor_id, pid = event.pointee.product_id
        // Three fixed probes (no array literal: that would allocate per call).
        var best = Int32.max
        probe(Self.key(plugin: plugin, kind: Self.kindExact, vendor: vid, product: pid), event, &best)
        probe(Self.key(plugin: plugin, kind: Self.kindVendor, vendor: vid, product: 0), event, &best)
        probe(Self.key(plugin: plugin, kind: Self.kindClass, vendor: 0, product: UInt16(event.pointee.device_class)), event, &best)
        let n = min(Int(event.pointee.interfaces_len), Int(PB_MAX_INTERFACES))
        if n > 0 {
            let base = UnsafeRawPointer(event) + Self.interfacesOffset
            for i in 0..<n where !Self.seenEarlier(base, i) {
                probe(Self.key(plugin: plugin, kind: Self.kindInterface, vendor: 0,
                               product: UInt16(base.load(fromByteOffset: i * Self.interfaceStride, as: UInt8.self))), event, &best)
            }
        }
        probe(Self.key(plugin: plugin, kind: Self.kindAny, vendor: 0, product: 0), event, &best)
        return best == Int32.max ? nil : Int(best)
    }

    @inline(__always)
    func probe(_ key: UInt64, _ event: UnsafePointer<pb_event>, _ best: inout Int32) {
        let slot = find(key)
        if slot < 0 { return }
        let start = Int(starts[slot]), end = start + Int(counts[slot])
        for i in start..<end {
            let id = Int(order[i])
            let rule = rules[id].rule
            if rule >= best { return } // ascending within a bucket
            if matches(rules[id], event) { best = rule; return }
        }
    }

    /// True when any of plugin `plugin`'s rules matches `event`.
    @inline(__always)
    public func matches(plugin: Int, event: UnsafePointer<pb_event>) -> Bool {
        firstMatch(plugin: plugin, event: event) != nil
    }

    /// A filter for plugin `plugin`'s worker, in the shape the core's workers accept.
    public func filter(forPlugin plugin: Int) -> @Sendable (UnsafePointer<pb_event>) -> Bool {
        { [self] event in self.firstMatch(plugin: plugin, event: event) != nil }
    }

    /// Calls `body(plugin, rule)` once for every plugin that wants `event`, with its first matching
    /// rule, in plugin order. Three probes of the global buckets, then a merge of the three candidate
    /// lists (each sorted by plugin, then rule): the cost follows the number of candidate rules, not
    /// the number of plugins. Does not allocate.
    public func forEachMatch(event: UnsafePointer<pb_event>, _ body: (_ plugin: Int, _ rule: Int) -> Void) {
        let vid = event.pointee.vendor_id, pid = event.pointee.product_id
        let n = min(Int(event.pointee.interfaces_len), Int(PB_MAX_INTERFACES))
        // Up to 4 + 32 candidate lists, on the stack.
        withUnsafeTemporaryAllocation(of: Range<Int>.self, capacity: 4 + Int(PB_MAX_INTERFACES)) { ranges in
            var count = 0
            func add(_ r: Range<Int>) {
                if !r.isEmpty { ranges.initializeElement(at: count, to: r); count += 1 }
            }
            add(range(Self.key(plugin: -1, kind: Self.kindExact, vendor: vid, product: pid)))
            add(range(Self.key(plugin: -1, kind: Self.kindVendor, vendor: vid, product: 0)))
            add(range(Self.key(plugin: -1, kind: Self.kindClass, vendor: 0, product: UInt16(event.pointee.device_class))))
            add(range(Self.key(plugin: -1, kind: Self.kindAny, vendor: 0, product: 0)))
            if n > 0 {
                let base = UnsafeRawPointer(event) + Self.interfacesOffset
                for i in 0..<n where !Self.seenEarlier(base, i) {
                    add(range(Self.key(plugin: -1, kind: Self.kindInterface, vendor: 0,
                                       product: UInt16(base.load(fromByteOffset: i * Self.interfaceStride, as: UInt8.self)))))
                }
            }
            var lastPlugin: Int32 = -1
            while true {
                // The smallest rule id at the head of the lists (ids are in plugin, then rule, order).
                var pick = -1
                var best = Int32.max
                for j in 0..<count where !ranges[j].isEmpty && order[ranges[j].lowerBound] < best {
                    best = order[ranges[j].lowerBound]
                    pick = j
                }
                if pick < 0 { break }
                ranges[pick] = (ranges[pick].lowerBound + 1)..<ranges[pick].upperBound
                let c = rules[Int(best)]
                if c.plugin == lastPlugin { continue } // this plugin already matched with an earlier rule
                if matches(c, event) {
                    lastPlugin = c.plugin
                    body(Int(c.plugin), Int(c.rule))
                }
            }
            _ = ranges.prefix(count).deinitialize()
        }
    }

    static let interfacesOffset = MemoryLayout<pb_event>.offset(of: \pb_event.interfaces)!
    static let interfaceStride = MemoryLayout<pb_usb_interface>.stride

    /// True when interface `i`'s class already appeared among interfaces 0..<i (probe each class once).
    @inline(__always)
    static func seenEarlier(_ base: UnsafeRawPointer, _ i: Int) -> Bool {
        let c = base.load(fromByteOffset: i * interfaceStride, as: UInt8.self)
        for j in 0..<i where base.load(fromByteOffset: j * interfaceStride, as: UInt8.self) == c { return true }
        return false
    }

    @inline(__always)
    func range(_ key: UInt64) -> Range<Int> {
        let slot = find(key)
        if slot < 0 { return 0..<0 }
        let start = Int(starts[slot])
        return start..<(start + Int(counts[slot]))
    }

    /// Every plugin that wants `event` with its first matching rule, in plugin order (allocates the
    /// result; for tools such as `explain --device`).
    public func matchingPlugins(event: UnsafePointer<pb_event>) -> [(plugin: Int, rule: Int)] {
        var out: [(plugin: Int, rule: Int)] = []
        forEachMatch(event: event) { out.append((plugin: $0, rule: $1)) }
        return out
    }

    @inline(__always)
    func matches(_ c: Compiled, _ e: UnsafePointer<pb_event>) -> Bool {
        let f = c.fields
        if f & PBMFormat.MatchField.vendor != 0 {
            let v = e.pointee.vendor_id
            if v < c.vendorLo || v > c.vendorHi { return false }
        }
        if f & PBMFormat.MatchField.product != 0 {
            let p = e.pointee.product_id
            if p < c.productLo || p > c.productHi { return false }
        }
        if c.actions != 0 {
            let a = e.pointee.action
            if a > 7 || (c.actions & (1 << UInt8(a))) == 0 { return false }
        }
        if f & PBMFormat.MatchField.deviceClass != 0 && c.deviceClass != e.pointee.device_class { return false }
        if f & PBMFormat.MatchField.interfaceClass != 0 && !Self.hasInterface(class: c.interfaceClass, e) { return false }
        if f & PBMFormat.MatchField.serial != 0 {
            let s = e.pointee.serial
            let raw = UnsafeRawPointer(e)
            // Same bounds rule as pb_event_string in the header; an absent (or out of bounds) serial
            // never matches a serial rule, not even "*".
            guard s.offset != 0 && UInt32(s.offset) + UInt32(s.length) < e.pointee.total_size else { return false }
            let subject = UnsafeRawBufferPointer(start: raw + Int(s.offset), count: Int(s.length))
            let matched = serialPool.withUnsafeBytes { pool in
                Glob.matches(pattern: UnsafeRawBufferPointer(rebasing: pool[Int(c.serialStart)..<Int(c.serialStart + c.serialCount)]), subject)
            }
            if !matched { return false }
        }
        return true
    }

    @inline(__always)
    static func hasInterface(class cls: UInt8, _ e: UnsafePointer<pb_event>) -> Bool {
        let n = min(Int(e.pointee.interfaces_len), Int(PB_MAX_INTERFACES))
        let base = UnsafeRawPointer(e) + MemoryLayout<pb_event>.offset(of: \pb_event.interfaces)!
        for i in 0..<n where base.load(fromByteOffset: i * MemoryLayout<pb_usb_interface>.stride, as: UInt8.self) == cls {
            return true
        }
        return false
    }
}

/// `*` (any run, possibly empty), `?` (one byte), everything else literal; bytes, not characters.
public enum Glob {
    public static func matches(pattern: UnsafeRawBufferPointer, _ s: UnsafeRawBufferPointer) -> Bool {
        var p = 0, i = 0
        var star = -1, mark = 0
        while i < s.count {
            if p < pattern.count && (pattern[p] == UInt8(ascii: "?") || (pattern[p] != UInt8(ascii: "*") && pattern[p] == s[i])) {
                p += 1; i += 1
            } else if p < pattern.count && pattern[p] == UInt8(ascii: "*") {
                star = p; mark = i; p += 1
            } else if star >= 0 {
                p = star + 1; mark += 1; i = mark
            } else {
                return false
            }
        }
        while p < pattern.count && pattern[p] == UInt8(ascii: "*") { p += 1 }
        return p == pattern.count
    }

    public static func matches(pattern: String, _ s: String) -> Bool {
        Array(pattern.utf8).withUnsafeBytes { p in Array(s.utf8).withUnsafeBytes { matches(pattern: p, $0) } }
    }
}
