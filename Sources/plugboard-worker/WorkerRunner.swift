import CPlugboard
import CPlugboardSupport
import Logging
import PlugboardCore
import PlugboardManifest
import PlugboardSystem
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One plugin in this process: setup from the host, lock down, load, init, then the ring loop
/// (the same protocol as a worker thread's, `Worker.run`, with its state in the control page so
/// the host can watch it), then the handover or the shutdown the host asks for.
final class WorkerRunner: RemoteHost, @unchecked Sendable {
    // @unchecked: the channel serialises its writes; `requestLock` serialises device-table
    // requests (the only reads of the channel once the loop runs).
    let channel: WireChannel
    let ringFD: FileDescriptor
    let controlFD: FileDescriptor
    let requestLock = Mutex<Void>(())
    /// A copy of the host's table, which holds the bound (performance.max_devices).
    let devices = DeviceTable(maxDevices: .max)
    /// Publish, metrics and logs go through this queue (a plugin may call from threads of its
    /// own: `queueLock` serialises them).
    let queue: SharedQueue.Producer
    let queueLock = Mutex<Void>(())
    nonisolated(unsafe) var control: WorkerControl?
    /// Largest publish payload: the host's (`WorkerSetup.maxRecordBytes`, plugins.max_record_bytes).
    nonisolated(unsafe) var maxRecordBytes = 64 << 10

    init(channel: WireChannel, ringFD: FileDescriptor, controlFD: FileDescriptor, queue: SharedQueue.Producer) {
        self.channel = channel
        self.ringFD = ringFD
        self.controlFD = controlFD
        self.queue = queue
    }

    /// One host call into the queue; false when the queue is full (the host is behind).
    func push(_ kind: HostCallRecord, _ head: [UInt8], _ tail: UnsafeRawBufferPointer) -> Bool {
        head.withUnsafeBytes { h in queueLock.withLock { _ in queue.push(kind: kind.rawValue, h, tail) } }
    }

    func push(_ kind: HostCallRecord, _ head: [UInt8], _ text: String) -> Bool {
        var t = text
        return t.withUTF8 { push(kind, head, UnsafeRawBufferPointer($0)) }
    }

    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

    /// Tells the host why the plugin will not run; the process then exits 0 (a refusal is not a crash).
    func refuse(_ code: String, _ message: String) -> Int32 {
        var w = WireWriter()
        w.string(code)
        w.string(message)
        try? channel.send(.initFailed, w.bytes)
        return 0
    }

    /// A note from the runner itself (not the plugin) for the host's log.
    func note(_ level: Int32, _ message: String) {
        var w = WireWriter()
        w.u8(1)
        w.u32(UInt32(bitPattern: level))
        w.string(message)
        try? channel.send(.log, w.bytes)
    }

    func run() -> Int32 {
        guard let (type, payload) = try? channel.receive(), type == WireType.setup.rawValue,
              var setup = try? WorkerSetup.decode(payload) else {
            return 70  // EX_SOFTWARE: not started by a host
        }
        let path = setup.pluginPath
        maxRecordBytes = Int(setup.maxRecordBytes)
        // Priority first, while the daemon's CAP_SYS_NICE (if any) is still held; threads the
        // plugin starts inherit both. Not applied is a warning: the plugin runs, at the default.
        if let nice = setup.nice, let problem = WorkerPriority.applyNice(nice) {
            note(PB_LOG_WARNING, "worker priority not applied: \(problem)")
        }
        if !setup.cpus.isEmpty, let problem = WorkerPriority.applyAffinity(CPUAffinity(setup.cpus.map(Int.init))) {
            note(PB_LOG_WARNING, "worker priority not applied: \(problem)")
        }
        // Before any plugin code: limits, then privileges (a dropped uid cannot raise limits).
        do throws(Errno) {
            if setup.addressSpace > 0 { try LockDown.limit(.addressSpace, to: setup.addressSpace) }
            if setup.cpuSeconds > 0 { try LockDown.limit(.cpuSeconds, to: setup.cpuSeconds) }
            if setup.openFiles > 0 { try LockDown.limit(.openFiles, to: setup.openFiles) }
            try LockDown.apply(account: setup.uid == .max ? nil : LockDown.Account(name: "", uid: setup.uid, gid: setup.gid))
        } catch {
            return refuse("worker", "\(path): the worker process could not drop its privileges: \(error) (fix: check plugins.worker_user and the limits in the daemon config)")
        }
        let ring: EventRing
        let control: WorkerControl
        do {
            ring = try EventRing(attaching: ringFD)
            control = try WorkerControl.attach(controlFD)
        } catch {
            return refuse("worker", "\(path): the worker process could not map the event ring: \(error)")
        }
        self.control = control
        // With a memory limit, a crash is recorded with the peak address space it died at, so the
        // host can name the limit (MemoryLimitReport). Before any plugin code.
        control.peakAddressSpace = 0
        if setup.addressSpace > 0 { _ = pbs_crash_recorder_install(control.peakAddressSpaceWord) }
        var filter: (@Sendable (UnsafePointer<pb_event>) -> Bool)? = nil
        if !setup.manifest.isEmpty {
            do {
                let m = try PBMReader.decode(setup.manifest, file: path)
                filter = MatchIndex(plugins: [m.rules]).filter(forPlugin: 0)
            } catch {
                return refuse("worker", "\(path): the worker could not read the manifest the host sent: \(error)")
            }
        }
        let plugin: LoadedPlugin
        do { plugin = try PluginLoader.open(path) } catch {
            return refuse(error.code, error.description)
        }
        if !setup.expectedName.isEmpty && plugin.name != setup.expectedName {
            return refuse("skipped", "\(path): skipped: the plugin calls itself \"\(plugin.name)\" but its manifest says \"\(setup.expectedName)\" (fix: make plugin.name in plugin.toml match pb_plugin_api.name and pack again)")
        }
        // The plugin's log calls go to the host through the queue (RemoteHost), never to this
        // logger: no handler, nothing to format.
        let logger = Logger(label: "plugboard-worker") { _ in SwiftLogNoOpLogHandler() }
        let configuration = setup.byName[plugin.name] ?? setup.pluginConfiguration
        let context = PluginContext(name: plugin.name, configuration: configuration, outputQueue: OutputQueue(maxRecords: 1),
                                    deviceTable: devices, logger: logger, remote: self)
        do { try plugin.initialize(context: context) } catch {
            return refuse(error.code, error.description)
        }
        var ready = WireWriter()
        ready.string(plugin.name)
        ready.string(plugin.version)
        ready.u16(plugin.abiMinor)
        guard (try? channel.send(.ready, ready.bytes)) != nil else { return 0 }

        // Wait for the go (cursor, and the state a predecessor saved, on a hot reload).
        guard let (goType, goPayload) = try? channel.receive(), goType == WireType.go.rawValue else {
            plugin.shutdown()
            return 0
        }
        var go = WireReader(goPayload)
        guard let cursor = try? go.u64(), let hasState = try? go.u8() else { return 70 }
        if hasState == 1, let saved = try? go.data() {
            let status = plugin.restoreState(saved)
            if status != PB_OK { note(PB_LOG_WARNING, "restore_state returned \(statusName(status)); the plugin starts without its predecessor's state") }
        }
        // The poison events and one-event batches as the host knows them now (a pre-warmed
        // spare was set up before the crash that decided them).
        if let singleUntil = try? go.u64(), let n = try? go.u32(), n <= 65_536 {
            var skip: [UInt64] = []
            for _ in 0..<n { if let q = try? go.u64() { skip.append(q) } }
            setup.singleUntil = singleUntil
            setup.skip = skip
        }
        let consumer = ring.makeConsumer(name: plugin.name, sleepWord: control.sleepingWord, wakeAtWord: control.wakeAtWord,
                                         startingAt: cursor)
        control.cursor = consumer.cursor
        let end = loop(ring: ring, consumer: consumer, plugin: plugin, control: control, setup: setup, filter: filter)
        switch end {
        case .stop:
            _exit(0)
        case .handOver:
            var w = WireWriter()
            w.u64(consumer.cursor)
            if plugin.supportsStateTransfer, let saved = plugin.saveState() {
                w.u8(1)
                w.data(saved)
            } else {
                w.u8(0)
            }
            try? channel.send(.state, w.bytes)
        case .finished:
            break
        }
        consumer.deregister()
        control.activity = .drained
        try? channel.send(.drained)
        // Wait for the host to open the shutdown gate (or to go away).
        while let (t, _) = try? channel.receive() {
            if t == WireType.shutdown.rawValue { break }
        }
        control.activity = .inShutdown
        plugin.shutdown()
        control.activity = .done
        try? channel.send(.done)
        // No exit handlers: a plugin's destructors or threads cannot hold the process.
        _exit(0)
    }

    enum End { case finished, handOver, stop }

    func loop(ring: EventRing, consumer: RingConsumer, plugin: LoadedPlugin, control: WorkerControl,
              setup: WorkerSetup, filter: (@Sendable (UnsafePointer<pb_event>) -> Bool)?) -> End {
        let cap = Int(setup.batchSize)
        let skip = Set(setup.skip)
        let batch = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: cap)
        let selected = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: cap)
        defer {
            batch.deallocate()
            selected.deallocate()
        }
        var errors: UInt64 = 0
        var markToken: UInt32 = 0
        func call(_ events: UnsafeMutablePointer<UnsafePointer<pb_event>?>, _ k: Int) {
            let start = pbs_monotonic_ns()
            for i in 0..<k { control.latency.record(start &- events[i]!.pointee.timestamp_ns) }
            control.batchSizes.record(k)
            control.enterCallback(first: events[0]!.pointee.sequence, last: events[k - 1]!.pointee.sequence, at: start)
            control.activity = .inEvents
            let status = plugin.deliver(events, count: UInt32(k))
            control.activity = .idle
            control.leaveCallback()
            control.callbackDuration.record(pbs_monotonic_ns() &- start)
            if status != PB_OK {
                errors += 1
                control.add(.errors, 1)
                if errors == 1 || errors % 100 == 0 {
                    note(PB_LOG_ERROR, "events callback returned \(statusName(status)) (\(errors) so far)")
                }
            }
        }
        // The settle window (docs/operations.md, "Settle window"): nil for a plugin without one,
        // whose path below is today's but for a branch per batch.
        let settle = setup.settleNanoseconds > 0
            ? SettleWindow(SettleOptions(window: .nanoseconds(Int64(setup.settleNanoseconds)), maxDevices: Int(setup.settleDevices)))
            : nil
        func publishSettle(_ settle: SettleWindow) {
            control[.settleCoalesced] = settle.coalesced
            control[.settleFlaps] = settle.flaps
            control[.settleOverflow] = settle.overflow
        }
        func deliverSettled(_ settle: SettleWindow, upTo now: UInt64) {
            while true {
                let k = settle.takeDue(now: now, into: batch, max: cap) { e, n in
                    if SettleWindow.reportsFlap(n) {
                        note(PB_LOG_INFO, "device \(e.string(.syspath)) (\(SettleWindow.deviceID(e))) flapped within the settle window: added and removed, delivered as nothing (flap \(n) of this device)")
                    }
                }
                if k > 0 {
                    call(batch, k)
                    control.add(.delivered, UInt64(k))
                }
                settle.release()
                if k < cap { break }
            }
            publishSettle(settle)
        }
        while true {
            switch control.command {
            case .handOver:
                // What the window holds goes to this build before it saves its state.
                if let settle, settle.held > 0 { deliverSettled(settle, upTo: .max) }
                return .handOver
            case .stop: return .stop
            case .none: break
            }
            if let settle, settle.held > 0, pbs_monotonic_ns() >= settle.nextDue {
                deliverSettled(settle, upTo: pbs_monotonic_ns())
            }
            // A canary's comparison (the host's `ProcessWorker.snapshot`): once per token, the
            // state and the cursor it belongs to, then a mark after every batch.
            let token = control.markToken
            if token != markToken {
                markToken = token
                if token != 0 { snapshot(consumer: consumer, plugin: plugin, control: control) }
            }
            var limit = consumer.cursor < setup.singleUntil ? 1 : cap
            let fence = control.readLimit
            if fence != 0 {
                // A canary's shadow stops at the fence the host set (nothing past it is compared).
                if consumer.cursor >= fence {
                    usleep(2000)
                    continue
                }
                limit = min(limit, Int(clamping: fence - consumer.cursor))
            }
            switch consumer.poll(max: limit, into: batch) {
            case .events(let n):
                var k = 0
                var withheld: UInt64 = 0
                for i in 0..<n {
                    let e = batch[i]!
                    if !skip.isEmpty && skip.contains(e.pointee.sequence) {
                        withheld += 1
                        continue
                    }
                    if filter?(e) ?? true {
                        selected[k] = e
                        k += 1
                    }
                }
                var direct = k
                if let settle { direct = settle.hold(selected, count: k, now: pbs_monotonic_ns()) }
                if direct > 0 { call(selected, direct) }
                if consumer.commit() {
                    control.add(.delivered, UInt64(direct))
                    control.add(.filtered, UInt64(n - k) - withheld)
                    control.cursor = consumer.cursor
                    if let settle { publishSettle(settle) }
                    if markToken != 0 { mark(consumer.cursor, control: control) }
                } else {
                    if let settle {
                        settle.discardAll()
                        publishSettle(settle)
                    }
                    lapped(consumer: consumer, plugin: plugin, control: control)
                }
            case .lapped:
                if let settle {
                    settle.discardAll()
                    publishSettle(settle)
                }
                lapped(consumer: consumer, plugin: plugin, control: control)
            case .empty:
                // Events and every command of the host (stop, hand over, a canary's mark or fence)
                // wake this process through the ring's futex; the timeout is only a safety net,
                // long so that an idle plugin costs nothing (docs/benchmarks.md, "An idle daemon").
                if let settle {
                    consumer.wait(timeoutNanoseconds: settle.sleepNanoseconds(now: pbs_monotonic_ns(), idle: 1_000_000_000))
                } else {
                    consumer.wait(timeoutNanoseconds: 1_000_000_000)
                }
            case .finished:
                if let settle, settle.held > 0 { deliverSettled(settle, upTo: .max) }
                return .finished
            }
        }
    }

    /// The canary's snapshot: a mark at the cursor (in the host-call queue, so it is ordered
    /// with the publishes), then the state saved at that cursor, over the channel.
    func snapshot(consumer: RingConsumer, plugin: LoadedPlugin, control: WorkerControl) {
        mark(consumer.cursor, control: control)
        var w = WireWriter()
        w.u64(consumer.cursor)
        // Only a plugin built for ABI 1.1 or later knows save_state may come without a shutdown.
        if plugin.abiMinor >= 1, plugin.supportsStateTransfer, let saved = plugin.saveState() {
            w.u8(1)
            w.data(saved)
        } else {
            w.u8(0)
        }
        try? channel.send(.snapshot, w.bytes)
    }

    /// Queues a mark: every publish before it belongs to events up to `cursor`. The host drains
    /// the queue all the time, so a full queue empties; one that stays full for a second loses
    /// the mark, and the host is told so (its comparison is then void).
    func mark(_ cursor: UInt64, control: WorkerControl) {
        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        for _ in 0..<10_000 {
            if push(.mark, Self.le(cursor), empty) { return }
            usleep(100)
        }
        control.markLost = true
    }

    func lapped(consumer: RingConsumer, plugin: LoadedPlugin, control: WorkerControl) {
        let missedBefore = control[.missed]
        control[.laps] = consumer.laps
        control[.missed] = consumer.missed
        control.cursor = consumer.cursor
        note(PB_LOG_WARNING, "plugin fell a whole ring behind and was lapped (\(consumer.missed &- missedBefore) events missed); resynchronising from the device table")
        refreshDeviceTable(into: devices)
        let snapshot = devices.snapshot()
        control.activity = .inResync
        let status = plugin.resync(snapshot.pointers, count: UInt32(snapshot.count))
        control.activity = .idle
        control.add(.resyncs, 1)
        if status != PB_OK {
            control.add(.errors, 1)
            note(PB_LOG_ERROR, "resync callback returned \(statusName(status))")
        }
    }

    // MARK: RemoteHost (the plugin's host calls, sent to the host)

    func log(level: Int32, message: String) {
        if !push(.log, Self.le(UInt32(bitPattern: level)), String(message.utf8.prefix(queue.maximumPayload - 4)) ?? "") {
            control?.add(.refused, 1)
        }
    }

    func publish(topic: String, payload: UnsafeRawBufferPointer) -> Int32 {
        let topicBytes = Array(topic.utf8)
        guard topicBytes.count <= OutputQueue.maxTopicBytes, payload.count + topicBytes.count + 2 <= queue.maximumPayload,
              payload.count <= maxRecordBytes else {
            control?.add(.refused, 1)
            return PB_ERR_INVALID
        }
        guard push(.publish, Self.le(UInt16(topicBytes.count)) + topicBytes, payload) else {
            control?.add(.refused, 1)
            control?.add(.queueFull, 1)
            return PB_ERR_FULL
        }
        control?.add(.published, 1)
        return PB_OK
    }

    func counterAdd(_ name: String, _ delta: UInt64) {
        if !push(.counter, Self.le(delta), name) { control?.add(.refused, 1) }
    }

    func gaugeSet(_ name: String, _ value: Double) {
        if !push(.gauge, Self.le(value.bitPattern), name) { control?.add(.refused, 1) }
    }

    func histogramObserve(_ name: String, _ value: Double) {
        if !push(.histogram, Self.le(value.bitPattern), name) { control?.add(.refused, 1) }
    }

    func refreshDeviceTable(into table: DeviceTable) {
        requestLock.withLock { _ in
            guard (try? channel.send(.deviceTableRequest)) != nil else { return }
            while let (t, payload) = try? channel.receive() {
                guard t == WireType.deviceTable.rawValue else { continue }
                var r = WireReader(payload)
                var records: [DeviceRecord] = []
                if let n = try? r.u32() {
                    for _ in 0..<n {
                        guard let bytes = try? r.data(), let rec = DeviceRecord(bytes: bytes) else { break }
                        records.append(rec)
                    }
                }
                table.replaceAll(with: records)
                return
            }
        }
    }
}
