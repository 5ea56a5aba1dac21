/// What the host tells a worker process before it loads its plugin (the `setup` frame).
public struct WorkerSetup: Sendable, Equatable {
    /// The plugin's `.so`.
    public var pluginPath: String
    /// The name its manifest gives; the plugin must call itself the same ("" skips the check).
    public var expectedName: String
    public var configuration: [String: String] = [:]
    /// `[config]` in order (what init receives).
    public var configurationOrder: [String] = []
    public var batchSize: UInt32
    /// The plugin's manifest (`.pbm` bytes) for its match filter; empty: every event.
    public var manifest: [UInt8] = []
    /// uid/gid to run as when started as root (`UInt32.max`: keep).
    public var uid: UInt32 = .max
    public var gid: UInt32 = .max
    /// setrlimit values, 0 = unlimited: address space (bytes), CPU (seconds), open files.
    public var addressSpace: UInt64 = 0
    public var cpuSeconds: UInt64 = 0
    public var openFiles: UInt64 = 0
    /// Events up to this sequence go one per callback (after a crash, so the next crash names
    /// the one event that caused it).
    public var singleUntil: UInt64 = 0
    /// Sequences this plugin must not receive (poison events: it crashed on each twice).
    public var skip: [UInt64] = []
    /// Without a manifest the host does not know the plugin's name before it loads: the worker
    /// takes the configuration for the name the plugin reports from here (empty: `configuration`).
    public var byName: [String: PluginConfiguration] = [:]
    /// Largest record `publish` accepts (the host's, so a larger one is refused at the call).
    public var maxRecordBytes: UInt32 = 64 << 10
    /// The settle window in ns (0: none) and the most devices it holds.
    public var settleNanoseconds: UInt64 = 0
    public var settleDevices: UInt32 = UInt32(SettleOptions.defaultMaxDevices)
    /// Nice value to set before the plugin loads (nil: keep); CPUs to pin to (empty: keep).
    public var nice: Int32?
    public var cpus: [UInt32] = []

    public init(pluginPath: String, expectedName: String, configuration: PluginConfiguration, batchSize: UInt32) {
        self.pluginPath = pluginPath
        self.expectedName = expectedName
        for e in configuration.entries {
            self.configuration[e.key] = e.value
            configurationOrder.append(e.key)
        }
        self.batchSize = batchSize
    }

    public var pluginConfiguration: PluginConfiguration {
        PluginConfiguration(configurationOrder.compactMap { k in configuration[k].map { (key: k, value: $0) } })
    }

    public func encode() -> [UInt8] {
        var w = WireWriter()
        w.string(pluginPath)
        w.string(expectedName)
        w.u32(UInt32(configurationOrder.count))
        for k in configurationOrder {
            w.string(k)
            w.string(configuration[k] ?? "")
        }
        w.u32(batchSize)
        w.data(manifest)
        w.u32(uid)
        w.u32(gid)
        w.u64(addressSpace)
        w.u64(cpuSeconds)
        w.u64(openFiles)
        w.u64(singleUntil)
        w.u32(UInt32(skip.count))
        for s in skip { w.u64(s) }
        w.u32(UInt32(byName.count))
        for (name, c) in byName.sorted(by: { $0.key < $1.key }) {
            w.string(name)
            w.u32(UInt32(c.entries.count))
            for e in c.entries {
                w.string(e.key)
                w.string(e.value)
            }
        }
        w.u32(maxRecordBytes)
        w.u64(settleNanoseconds)
        w.u32(settleDevices)
        w.u8(nice == nil ? 0 : 1)
        w.u32(UInt32(bitPattern: nice ?? 0))
        w.u32(UInt32(cpus.count))
        for c in cpus { w.u32(c) }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireReader.Truncated) -> WorkerSetup {
        var r = WireReader(bytes)
        var s = WorkerSetup(pluginPath: try r.string(), expectedName: try r.string(), configuration: [:], batchSize: 1)
        let n = try r.u32()
        guard n < 100_000 else { throw WireReader.Truncated() }
        for _ in 0..<n {
            let k = try r.string()
            s.configuration[k] = try r.string()
            s.configurationOrder.append(k)
        }
        s.batchSize = max(1, try r.u32())
        s.manifest = try r.data()
        s.uid = try r.u32()
        s.gid = try r.u32()
        s.addressSpace = try r.u64()
        s.cpuSeconds = try r.u64()
        s.openFiles = try r.u64()
        s.singleUntil = try r.u64()
        let k = try r.u32()
        guard k < 1_000_000 else { throw WireReader.Truncated() }
        for _ in 0..<k { s.skip.append(try r.u64()) }
        let names = try r.u32()
        guard names < 100_000 else { throw WireReader.Truncated() }
        for _ in 0..<names {
            let name = try r.string()
            let n = try r.u32()
            guard n < 100_000 else { throw WireReader.Truncated() }
            var entries: [PluginConfiguration.Entry] = []
            for _ in 0..<n { entries.append((key: try r.string(), value: try r.string())) }
            s.byName[name] = PluginConfiguration(entries)
        }
        s.maxRecordBytes = try r.u32()
        s.settleNanoseconds = try r.u64()
        s.settleDevices = max(1, min(try r.u32(), 1 << 16))
        let hasNice = try r.u8()
        let nice = Int32(bitPattern: try r.u32())
        if hasNice == 1 { s.nice = nice }
        let cpus = try r.u32()
        guard cpus <= 1024 else { throw WireReader.Truncated() }
        for _ in 0..<cpus { s.cpus.append(try r.u32()) }
        return s
    }
}
