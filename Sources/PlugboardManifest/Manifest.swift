/// A plugin's manifest: what `plugin.toml` declares and what a `.pbm` file stores.
///
/// The host decides from it, without `dlopen`, whether to load a plugin, which events it gets,
/// how its worker runs, what configuration `init` receives and in which order plugins start.
public struct Manifest: Sendable, Equatable {
    /// Short unique name, `[a-z0-9][a-z0-9._-]*`, at most 64 bytes (e.g. `usb-logger`).
    public var name: String
    /// The plugin's own version, e.g. `1.2.0`.
    public var version: String
    /// File name of the plugin's shared object, relative to the manifest's directory (e.g. `libusb-logger.so`).
    public var library: String
    /// One line for people; may be empty.
    public var summary: String
    /// `authors = [...]`, e.g. `["Ada <ada@example.org>"]`.
    public var authors: [String]
    /// SPDX identifier or free text, e.g. `MIT`; may be empty.
    public var license: String
    /// Plugin ABI the plugin was built against (`PB_ABI_MAJOR`/`PB_ABI_MINOR`).
    public var abiMajor: UInt16
    public var abiMinor: UInt16
    /// SHA-256 of the `.so` when the manifest was packed; `nil` in a manifest read from `plugin.toml`.
    public var librarySHA256: [UInt8]?
    public var worker: WorkerSettings
    /// The rules, in file order. An event reaches the plugin when any rule matches.
    public var rules: [MatchRule]
    /// `[config]`: handed to the plugin's `init` as `pb_config` entries, in file order.
    public var config: [ConfigEntry]
    /// `[exports]`: symbols the `.so` exports, with their C signatures (validated now; a later libffi
    /// issue calls through them).
    public var exports: [Export]
    /// `[dependencies] after = [...]`: plugins that must be initialised before this one.
    public var after: [String]

    public init(name: String, version: String, library: String, summary: String = "",
                authors: [String] = [], license: String = "", abiMajor: UInt16 = 1, abiMinor: UInt16 = 0, librarySHA256: [UInt8]? = nil,
                worker: WorkerSettings = WorkerSettings(), rules: [MatchRule], config: [ConfigEntry] = [],
                exports: [Export] = [], after: [String] = []) {
        self.name = name
        self.version = version
        self.library = library
        self.summary = summary
        self.authors = authors
        self.license = license
        self.abiMajor = abiMajor
        self.abiMinor = abiMinor
        self.librarySHA256 = librarySHA256
        self.worker = worker
        self.rules = rules
        self.config = config
        self.exports = exports
        self.after = after
    }
}

/// One `[config]` entry. Values are strings, as `pb_host_api.config_get` returns them.
public struct ConfigEntry: Sendable, Equatable {
    public var key: String
    public var value: String
    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }
}

/// One `[exports]` entry: `symbol = "C signature"`.
public struct Export: Sendable, Equatable {
    public var symbol: String
    public var signature: String
    public init(symbol: String, signature: String) {
        self.symbol = symbol
        self.signature = signature
    }
}

/// `[worker]`: how the host runs the plugin's worker.
public struct WorkerSettings: Sendable, Equatable {
    /// Where the plugin runs: `process` (the default: a worker process of its own, mapping the ring
    /// read-only) or `thread` (a thread of the host, for trusted, latency-critical plugins).
    public enum Isolation: UInt16, Sendable, CaseIterable {
        case thread = 0
        case process = 1
        public var name: String { self == .thread ? "thread" : "process" }
        public init?(name: String) {
            switch name {
            case "thread": self = .thread
            case "process": self = .process
            default: return nil
            }
        }
    }

    /// `settle_ms`: whether events of one device are held and coalesced for this plugin
    /// (docs/operations.md, "Settle window").
    public enum Settle: Sendable, Equatable {
        /// Every event at once (the default).
        case off
        /// `settle_ms = "default"`: the daemon's `performance.debounce_ms`.
        case daemonDefault
        /// `settle_ms = N`, 1...60,000 ms.
        case milliseconds(UInt32)
    }

    /// Most events per `events` call (1...4096). Default 64.
    public var batch: UInt32
    /// How long one callback may run before the host reports the plugin as stalled, in ms;
    /// 0 = no deadline. Default 0.
    public var deadlineMs: UInt32
    public var isolation: Isolation
    /// The per-device settle window. Default `.off`.
    public var settle: Settle
    /// `nice` of the plugin's worker (-20...19); nil leaves the daemon's.
    public var nice: Int8?
    /// `cpu_affinity`: CPUs the plugin's worker runs on, as a cpulist ("2", "0-3", "0,2-3");
    /// "" leaves the daemon's placement.
    public var cpuAffinity: String

    public init(batch: UInt32 = 64, deadlineMs: UInt32 = 0, isolation: Isolation = .process, settle: Settle = .off,
                nice: Int8? = nil, cpuAffinity: String = "") {
        self.batch = batch
        self.deadlineMs = deadlineMs
        self.isolation = isolation
        self.settle = settle
        self.nice = nice
        self.cpuAffinity = cpuAffinity
    }

    /// Whether any setting of the `tuning` section (kind 10) is set: a manifest without one is
    /// written exactly as format 1.0 wrote it.
    public var hasTuning: Bool { settle != .off || nice != nil || !cpuAffinity.isEmpty }

    public static let batchRange: ClosedRange<Int> = 1...4096
    public static let deadlineRange: ClosedRange<Int> = 0...3_600_000
    /// `settle_ms` as an integer (0 = off).
    public static let settleRange: ClosedRange<Int> = 0...60_000
    public static let niceRange: ClosedRange<Int> = -20...19
}

/// One `[[match]]` rule. Every field that is set must match; unset fields match anything.
public struct MatchRule: Sendable, Equatable {
    /// Actions a rule can be limited to (bit `1 << PB_ACTION_*`).
    public struct Actions: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let add = Actions(rawValue: 1 << 1)
        public static let remove = Actions(rawValue: 1 << 2)
        public static let change = Actions(rawValue: 1 << 3)
        public static let bind = Actions(rawValue: 1 << 4)
        public static let unbind = Actions(rawValue: 1 << 5)
        public static let resync = Actions(rawValue: 1 << 6)
        /// Empty set: every action.
        public static let any: Actions = []
        public static let names: [(String, Actions)] = [
            ("add", .add), ("remove", .remove), ("change", .change),
            ("bind", .bind), ("unbind", .unbind), ("resync", .resync),
        ]
        public static let validMask: UInt8 = 0b0111_1110
        public var names: [String] { Self.names.filter { contains($0.1) }.map(\.0) }
    }

    /// Only `usb` today (every event the host produces is a USB device event).
    public var subsystem: String
    /// idVendor: one id (`046d`, stored as 0x046d...0x046d) or a range (`0x1000-0x10ff`); nil = any.
    public var vendor: ClosedRange<UInt16>?
    /// idProduct, as `vendor`.
    public var product: ClosedRange<UInt16>?
    public var deviceClass: UInt8?
    /// Matches when any of the device's interfaces has this class.
    public var interfaceClass: UInt8?
    /// Glob over the serial number: `*` any run, `?` one byte, everything else literal.
    public var serial: String?
    public var actions: Actions

    /// A rule with single vendor and product ids (nil = any).
    public init(subsystem: String = "usb", vendor: UInt16? = nil, product: UInt16? = nil, deviceClass: UInt8? = nil,
                interfaceClass: UInt8? = nil, serial: String? = nil, actions: Actions = .any) {
        self.init(subsystem: subsystem, vendors: vendor.map { $0...$0 }, products: product.map { $0...$0 },
                  deviceClass: deviceClass, interfaceClass: interfaceClass, serial: serial, actions: actions)
    }

    /// A rule with id ranges (nil = any).
    public init(subsystem: String = "usb", vendors: ClosedRange<UInt16>?, products: ClosedRange<UInt16>? = nil,
                deviceClass: UInt8? = nil, interfaceClass: UInt8? = nil, serial: String? = nil, actions: Actions = .any) {
        self.subsystem = subsystem
        self.vendor = vendors
        self.product = products
        self.deviceClass = deviceClass
        self.interfaceClass = interfaceClass
        self.serial = serial
        self.actions = actions
    }

    /// `046d:c52b class=03 serial="AB*" actions=add,remove` — for people.
    public var summary: String {
        var s = "\(vendor.map(rangeText) ?? "*"):\(product.map(rangeText) ?? "*")"
        if let c = deviceClass { s += " device_class=\(hex2(c))" }
        if let c = interfaceClass { s += " interface_class=\(hex2(c))" }
        if let p = serial { s += " serial=\"\(p)\"" }
        if !actions.isEmpty { s += " actions=\(actions.names.joined(separator: ","))" }
        return s
    }
}

/// `046d` or `1000-10ff`.
func rangeText(_ r: ClosedRange<UInt16>) -> String {
    r.lowerBound == r.upperBound ? hex4(r.lowerBound) : "\(hex4(r.lowerBound))-\(hex4(r.upperBound))"
}

func hex4(_ v: UInt16) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 4 - s.count)) + s
}

func hex2(_ v: UInt8) -> String {
    let s = String(v, radix: 16)
    return s.count < 2 ? "0" + s : s
}

/// The host's plugin ABI, from the header. A manifest's ABI major must equal it.
public enum HostABI {
    public static let major: UInt16 = 1
    public static let minor: UInt16 = 0
}
