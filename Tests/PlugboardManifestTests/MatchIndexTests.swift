import CPlugboard
import PlugboardManifest
import Testing

@Suite("Match index")
struct MatchIndexTests {
    func query(_ vid: UInt16, _ pid: UInt16, cls: UInt8? = nil, serial: String? = nil, action: Int32 = PB_ACTION_ADD) -> DeviceQuery {
        DeviceQuery(vendor: vid, product: pid, classCode: cls, serial: serial, action: UInt16(action))
    }

    func first(_ index: MatchIndex, _ plugin: Int, _ q: DeviceQuery) -> Int? {
        q.withEvent { index.firstMatch(plugin: plugin, event: $0) }
    }

    @Test("exact, vendor-wildcard and any rules match the devices they name and no others")
    func buckets() {
        let index = MatchIndex(plugins: [
            [MatchRule(vendor: 0x046d, product: 0xc52b)],
            [MatchRule(vendor: 0x046d)],
            [MatchRule()],
        ])
        #expect(first(index, 0, query(0x046d, 0xc52b)) == 0)
        #expect(first(index, 0, query(0x046d, 0xc52c)) == nil)
        #expect(first(index, 1, query(0x046d, 0xffff)) == 0)
        #expect(first(index, 1, query(0x046e, 0xc52b)) == nil)
        #expect(first(index, 2, query(0x1234, 0x5678)) == 0)
        #expect(query(0x046d, 0xc52b).withEvent { index.matchingPlugins(event: $0).map(\.plugin) } == [0, 1, 2])
        #expect(query(0x1111, 0x2222).withEvent { index.matchingPlugins(event: $0).map(\.plugin) } == [2])
    }

    @Test("the first matching rule in file order is reported, whichever bucket it is in")
    func firstRuleInFileOrder() {
        let index = MatchIndex(plugins: [[
            MatchRule(deviceClass: 9),                      // rule 0: any vendor, hubs
            MatchRule(vendor: 0x1d6b, product: 0x0002),     // rule 1: exact
            MatchRule(vendor: 0x1d6b),                      // rule 2: vendor
        ]])
        #expect(first(index, 0, query(0x1d6b, 0x0002, cls: 9)) == 0)
        #expect(first(index, 0, query(0x1d6b, 0x0002, cls: 0)) == 1)
        #expect(first(index, 0, query(0x1d6b, 0x0003)) == 2)
    }

    @Test("class, interface class, serial glob and actions narrow a rule")
    func predicates() {
        let index = MatchIndex(plugins: [
            [MatchRule(deviceClass: 3)],
            [MatchRule(interfaceClass: 8)],
            [MatchRule(vendor: 0x0781, serial: "AB?-*")],
            [MatchRule(actions: [.remove])],
        ])
        #expect(first(index, 0, query(1, 2, cls: 3)) == 0)
        #expect(first(index, 0, query(1, 2, cls: 4)) == nil)
        #expect(first(index, 1, query(1, 2, cls: 8)) == 0)   // the query puts its class in interface 0 too
        #expect(first(index, 1, query(1, 2)) == nil)
        #expect(first(index, 2, query(0x0781, 1, serial: "ABC-123")) == 0)
        #expect(first(index, 2, query(0x0781, 1, serial: "ABCD-123")) == nil)
        #expect(first(index, 2, query(0x0781, 1)) == nil)     // no serial: a serial rule cannot match
        #expect(first(index, 3, query(1, 2, action: PB_ACTION_REMOVE)) == 0)
        #expect(first(index, 3, query(1, 2, action: PB_ACTION_ADD)) == nil)
    }

    @Test("interface class is found in any of the event's interfaces, not only the first")
    func laterInterface() {
        let index = MatchIndex(plugins: [[MatchRule(interfaceClass: 0x0e)]])
        DeviceQuery(vendor: 1, product: 2).withEvent { e in
            let m = UnsafeMutablePointer(mutating: e)
            m.pointee.interfaces_len = 3
            m.pointee.interfaces.0.iface_class = 1
            m.pointee.interfaces.1.iface_class = 2
            m.pointee.interfaces.2.iface_class = 0x0e
            #expect(index.firstMatch(plugin: 0, event: e) == 0)
            m.pointee.interfaces_len = 2
            #expect(index.firstMatch(plugin: 0, event: e) == nil)
        }
    }

    @Test("a serial string that lies outside the event is treated as absent")
    func serialOutOfBounds() {
        let index = MatchIndex(plugins: [[MatchRule(serial: "*")]])
        query(1, 2, serial: "X").withEvent { e in
            #expect(index.firstMatch(plugin: 0, event: e) == 0)
            UnsafeMutablePointer(mutating: e).pointee.serial.length = 3000
            #expect(index.firstMatch(plugin: 0, event: e) == nil)
            UnsafeMutablePointer(mutating: e).pointee.serial = pb_str(offset: 0, length: 0)
            #expect(index.firstMatch(plugin: 0, event: e) == nil, "absent serial never matches a serial rule")
        }
    }

    @Test("vendor and product ranges match inclusively, in every bucket")
    func ranges() {
        let index = MatchIndex(plugins: [
            [MatchRule(vendors: 0x046d...0x046d, products: 0xc520...0xc52f)],   // vendor bucket
            [MatchRule(vendors: 0x1000...0x10ff)],                               // any bucket
            [MatchRule(vendors: 0x1000...0x10ff, deviceClass: 9)],               // class bucket
        ])
        #expect(first(index, 0, query(0x046d, 0xc520)) == 0)
        #expect(first(index, 0, query(0x046d, 0xc52f)) == 0)
        #expect(first(index, 0, query(0x046d, 0xc530)) == nil)
        #expect(first(index, 1, query(0x1000, 1)) == 0 && first(index, 1, query(0x10ff, 1)) == 0)
        #expect(first(index, 1, query(0x1100, 1)) == nil)
        #expect(first(index, 2, query(0x1080, 1, cls: 9)) == 0)
        #expect(first(index, 2, query(0x1080, 1, cls: 3)) == nil)
        #expect(query(0x1080, 1, cls: 9).withEvent { index.matchingPlugins(event: $0).map(\.plugin) } == [1, 2])
    }

    @Test("glob: * and ? over bytes")
    func glob() {
        #expect(Glob.matches(pattern: "*", ""))
        #expect(Glob.matches(pattern: "a*b*c", "aXXbYc"))
        #expect(!Glob.matches(pattern: "a*b*c", "aXXbY"))
        #expect(Glob.matches(pattern: "??", "ab"))
        #expect(!Glob.matches(pattern: "??", "abc"))
        #expect(Glob.matches(pattern: "*x", "xxxx"))
    }

    /// The reference the index must agree with: every rule of every plugin, checked one by one.
    func naive(_ plugins: [[MatchRule]], _ q: DeviceQuery) -> [(Int, Int)] {
        plugins.enumerated().compactMap { p, rules in rules.firstIndex { q.mismatch($0) == nil }.map { (p, $0) } }
    }

    @Test("on 1000 random plugins the index agrees with checking every rule (per plugin and per event)")
    func agreesWithNaive() {
        var rng = PBMFuzzTests.SplitMix64(state: 42)
        let vendors: [UInt16] = [0x046d, 0x1d6b, 0x0781, 0x8087, 0x05ac]
        func rule() -> MatchRule {
            var r = MatchRule()
            switch Int.random(in: 0..<8, using: &rng) {
            case 0, 1: break
            case 2: r.vendor = 0x0700...0x1d6b // a vendor range: goes to the non-vendor buckets
            default: let v = vendors.randomElement(using: &rng)!; r.vendor = v...v
            }
            if r.vendor != nil {
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: let p = UInt16.random(in: 0...7, using: &rng); r.product = p...p
                case 1: let p = UInt16.random(in: 0...5, using: &rng); r.product = p...(p + 2)
                default: break
                }
            }
            if Int.random(in: 0..<5, using: &rng) == 0 { r.deviceClass = UInt8.random(in: 0...3, using: &rng) }
            if Int.random(in: 0..<5, using: &rng) == 0 { r.interfaceClass = UInt8.random(in: 0...3, using: &rng) }
            if Int.random(in: 0..<6, using: &rng) == 0 { r.serial = ["A*", "?B*", "*9"].randomElement(using: &rng) }
            if Int.random(in: 0..<4, using: &rng) == 0 { r.actions = [.add, .remove].randomElement(using: &rng)! }
            return r
        }
        let plugins = (0..<1000).map { _ in (0..<Int.random(in: 1...3, using: &rng)).map { _ in rule() } }
        let index = MatchIndex(plugins: plugins)
        var total = 0
        for _ in 0..<300 {
            let q = DeviceQuery(vendor: vendors.randomElement(using: &rng)!, product: UInt16.random(in: 0...7, using: &rng),
                                classCode: Bool.random(using: &rng) ? UInt8.random(in: 0...3, using: &rng) : nil,
                                serial: ["AB9", "XB1", nil].randomElement(using: &rng)!,
                                action: UInt16([PB_ACTION_ADD, PB_ACTION_REMOVE, PB_ACTION_CHANGE].randomElement(using: &rng)!))
            let expected = naive(plugins, q).map { "\($0.0):\($0.1)" }
            let viaEvent = q.withEvent { index.matchingPlugins(event: $0) }.map { "\($0.plugin):\($0.rule)" }
            let perPlugin = q.withEvent { e in (0..<plugins.count).compactMap { p in index.firstMatch(plugin: p, event: e).map { "\(p):\($0)" } } }
            for (name, got) in [("matchingPlugins", viaEvent), ("firstMatch", perPlugin)] where got != expected {
                let missing = Set(expected).subtracting(got).sorted().prefix(3), extra = Set(got).subtracting(expected).sorted().prefix(3)
                Issue.record("\(name) disagrees for \(q): missing \(Array(missing)), extra \(Array(extra))")
                return
            }
            total += expected.count
        }
        #expect(total > 1000, "the random rules should match often enough to mean something")
    }

    @Test("the worker filter answers for its own plugin only")
    func filterPerPlugin() {
        let index = MatchIndex(plugins: [[MatchRule(vendor: 1)], [MatchRule(vendor: 2)]])
        let f0 = index.filter(forPlugin: 0), f1 = index.filter(forPlugin: 1)
        query(1, 0).withEvent { e in
            #expect(f0(e))
            #expect(!f1(e))
        }
    }
}
