import CPlugboard
import CPlugboardSupport
import Foundation
import Logging
import PlugboardCore
import PlugboardSystem
import PlugboardTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The permissions of the mapping that holds `address`, from /proc/self/maps ("r--s", "rw-s").
func mappingPermissions(of address: UnsafeRawPointer) -> String? {
    let a = UInt(bitPattern: address)
    // Read to the end with read(2): /proc files report size 0 to fstat.
    guard let bytes = try? FileDescriptor.readContents(of: "/proc/self/maps") else { return nil }
    let maps = String(decoding: bytes, as: UTF8.self)
    for line in maps.split(separator: "\n") {
        let f = line.split(separator: " ", omittingEmptySubsequences: true)
        let range = f[0].split(separator: "-")
        guard let lo = UInt(range[0], radix: 16), let hi = UInt(range[1], radix: 16) else { continue }
        if a >= lo && a < hi { return String(f[1]) }
    }
    return nil
}

@Suite("Isolation in the core: a sealed ring read through read-only mappings, remote cursors, worker processes")
struct IsolationCoreTests {
    @Test("the ring memfd is sealed against any new writable mapping and write(2); the producer keeps writing")
    func ringSealedAgainstWriters() throws {
        let ring = try EventRing(slotCount: 16)
        let seals = ring.seals
        #expect(seals & pbs_seal_future_write() != 0, "F_SEAL_FUTURE_WRITE in \(seals)")
        #expect(seals & pbs_seal_shrink() != 0 && seals & pbs_seal_grow() != 0 && seals & pbs_seal_seal() != 0)
        let fd = FileDescriptor(rawValue: dup(ring.fd))
        defer { try? fd.close() }
        #expect(throws: Errno.self) { _ = try MappedRegion(fd: fd, count: ring.mappedSize, protection: [.read, .write], shared: true) }
        do {
            _ = try MappedRegion(fd: fd, count: ring.mappedSize, protection: [.read, .write], shared: true)
        } catch {
            #expect(error.code == EPERM, "\(error)")
        }
        let bytes = [UInt8](repeating: 1, count: 8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd.rawValue, $0.baseAddress, $0.count) }
        #expect(written == -1 && errno == EPERM, "write(2) to the sealed ring: \(written)")
        let producer = ring.makeProducer()
        producer.publish { $0.setString(.syspath, "/sys/devices/a") }
        #expect(ring.published == 1)
    }

    @Test("a consumer hands out pointers into a read-only mapping that holds no header")
    func consumerPointersAreReadOnly() throws {
        let ring = try EventRing(slotCount: 16)
        let producer = ring.makeProducer()
        let consumer = ring.makeConsumer(name: "t")
        producer.publish { $0.setString(.syspath, "/sys/devices/a") }
        let buf = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: 4)
        defer { buf.deallocate() }
        #expect(consumer.poll(max: 4, into: buf) == .events(1))
        let p = UnsafeRawPointer(buf[0]!)
        #expect(mappingPermissions(of: p)?.hasPrefix("r-") == true, "\(mappingPermissions(of: p) ?? "none")")
        #expect(buf[0]!.string(.syspath) == "/sys/devices/a")
        #expect(consumer.commit())
    }

    @Test("another view attaches to the ring memfd read-only and reads what was published; a foreign file is refused")
    func attachReadOnly() throws {
        let ring = try EventRing(slotCount: 8)
        let producer = ring.makeProducer()
        let ro = try FileDescriptor.open("/proc/self/fd/\(ring.fd)", .readOnly)
        let view = try EventRing(attaching: ro)
        #expect(view.capacity == 8 && view.slotSize == ring.slotSize)
        let consumer = view.makeConsumer(name: "remote")
        producer.publish { $0.setString(.syspath, "/sys/devices/x") }
        let buf = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: 4)
        defer { buf.deallocate() }
        #expect(consumer.poll(max: 4, into: buf) == .events(1))
        #expect(buf[0]!.string(.syspath) == "/sys/devices/x")
        let foreign = try MemoryFile.create(name: "foreign", size: 8192)
        #expect {
            _ = try EventRing(attaching: foreign)
        } throws: { ($0 as? PlugboardError)?.code == "ring.attach" }
    }

    @Test("a worker's histograms scribbled with huge counts cannot make the host's sums overflow")
    func scribbledHistogramIsSafe() throws {
        let control = try WorkerControl.create(name: "scribbled")
        let words = UnsafeMutableRawPointer(mutating: control.cursorWord).advanced(by: 1024 - 8)
            .assumingMemoryBound(to: UInt64.self)
        for i in 0..<LatencyHistogram.bucketCount { words[i] = .max }
        #expect(control.latency.snapshot().allSatisfy { $0 == LatencyHistogram.maxCount })
        #expect(control.latency.quantile(0.99) != nil)
        #expect(control.latency.total == LatencyHistogram.maxCount * UInt64(LatencyHistogram.bucketCount))
    }

    @Test("sending to a worker that died is an EPIPE error, never a SIGPIPE that ends the host")
    func sendToDeadPeer() throws {
        let (a, b) = try SocketPair.stream()
        try b.close()
        // (SIGPIPE's disposition is left alone here: other tests in this process write to closed
        // pipes too. MSG_NOSIGNAL is what keeps a plugboard-less host alive; plugboard also ignores it.)
        let channel = WireChannel(fd: a)
        #expect {
            try channel.send(.shutdown)
        } throws: { ($0 as? Errno)?.code == EPIPE }
        // The channel owns `a` and closes it when it goes: closing it here as well closed a
        // descriptor number another thread of this process had opened meanwhile (libdispatch
        // then crashed on its epoll source).
        _ = channel
    }

    @Test("a remote cursor is clamped: never past published, never back; it holds flow control until deregistered")
    func remoteCursorClamped() throws {
        let ring = try EventRing(slotCount: 8)
        let producer = ring.makeProducer()
        let word = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        let sleeping = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        defer { word.deallocate(); sleeping.deallocate() }
        word.pointee = 0
        sleeping.pointee = 0
        let remote = ring.registerRemote(name: "w", cursor: word, sleeping: sleeping)
        for _ in 0..<5 { producer.publish { $0.setString(.syspath, "/a") } }
        word.pointee = 1_000  // a lie: past published
        #expect(ring.consumerLags.first { $0.name == "w" }?.lag == 5)
        word.pointee = 3
        #expect(ring.consumerLags.first { $0.name == "w" }?.lag == 2)
        word.pointee = 1  // going back: ignored
        #expect(ring.consumerLags.first { $0.name == "w" }?.lag == 2)
        remote.deregister()
        #expect(ring.consumerLags.contains { $0.name == "w" } == false)
    }
}

@Suite("Worker processes run by the core runtime")
struct ProcessWorkerCoreTests {
    static var worker: String { PackagePaths.product("plugboard-worker") }

    func runtime(_ tweak: (inout ProcessPolicy) -> Void = { _ in }) throws -> Runtime {
        var options = RuntimeOptions()
        options.ringSlots = 256
        options.outputQueueRecords = 20_000
        var policy = ProcessPolicy(workerExecutable: Self.worker)
        policy.restartBackoff = .milliseconds(5)
        tweak(&policy)
        options.processPolicy = policy
        return try Runtime(options: options, logger: TestSupport.logger)
    }

    /// The recorder compiled under another name (the host refuses duplicate names).
    static func recorder(named name: String, in dir: String) throws -> String {
        let out = "\(dir)/lib\(name).so"
        let r = try TestSupport.run("/usr/bin/cc", ["-std=gnu11", "-O2", "-shared", "-fPIC", "-fvisibility=hidden",
                                                    "-I", TestSupport.packageRoot + "/SDK/include", "-o", out,
                                                    TestSupport.packageRoot + "/Tests/TestPlugins/recorder/recorder.c",
                                                    "-DRECORDER_NAME=\"\(name)\""])
        #expect(r.status == 0, "\(r.output)")
        return out
    }

    @Test("a recorder in a worker process sees every event, byte for byte what a recorder thread sees, and its host calls arrive")
    func recorderInProcess() throws {
        let dir = try TestSupport.tempDir("proc")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let threadOut = "\(dir)/thread.txt", procOut = "\(dir)/process.txt"
        let rt = try runtime()
        rt.addPlugin(try PluginLoader.open(TestSupport.plugin("pbtest-recorder")), configuration: ["output": threadOut])
        let path = try Self.recorder(named: "rec-proc", in: dir)
        #expect(rt.addProcessPlugin(ProcessPluginSpec(path: path, name: "rec-proc", version: "1",
                                                      configuration: ["output": procOut, "publish": "1"], batchSize: 7,
                                                      deadline: nil, manifest: [])))
        #expect(rt.startWorkers() == 2, "\(rt.failures.map(\.description))")
        let proc = try #require(rt.workers.first { $0.name == "rec-proc" } as? ProcessWorker)
        #expect(proc.pid > 0 && proc.isolation == .process)
        rt.start(source: SyntheticSource(count: 5000))
        rt.waitUntilDrained()
        let a = try String(contentsOfFile: threadOut, encoding: .utf8)
        let b = try String(contentsOfFile: procOut, encoding: .utf8)
        #expect(a.split(separator: "\n").count == 5001, "5000 events and SHUTDOWN")
        #expect(a == b)
        let stats = proc.stats
        #expect(stats.events == 5000 && stats.crashes.isEmpty && stats.state == .stopped, "\(stats)")
        #expect(proc.metricsSnapshot.counters["events"] == 5000, "counter_add crossed the process boundary")
        let published = rt.outputQueue.drain(max: 10_000).filter { $0.plugin == "rec-proc" }
        #expect(published.count == 5000 && published.last.map { String(decoding: $0.payload, as: UTF8.self) } == "5000")
    }

    /// What every open descriptor of this process is, as (device, inode) of what it refers to.
    static func openFiles() -> Set<[UInt64]> {
        var found: Set<[UInt64]> = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            var st = stat()
            if stat("/proc/self/fd/\(entry)", &st) == 0 { found.insert([UInt64(st.st_dev), UInt64(st.st_ino)]) }
        }
        return found
    }

    static func identity(_ path: String) -> [UInt64]? {
        var st = stat()
        return stat(path, &st) == 0 ? [UInt64(st.st_dev), UInt64(st.st_ino)] : nil
    }

    /// Found by the isolation bench, which makes a runtime per round: the source's thread kept
    /// its closure, which held the runtime, which held the thread, so no runtime was ever
    /// freed, nor its ring and its workers' descriptors (60 rounds: 4,700 descriptors, then
    /// EMFILE); and a worker's control page and output pipes were never closed even when it was.
    @Test("a runtime run to its end and dropped is freed, and so is every descriptor it and its worker processes held")
    func droppedRuntimeIsFreed() throws {
        let dir = try TestSupport.tempDir("freed")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        weak var weakRuntime: Runtime?
        weak var weakWorker: ProcessWorker?
        var held: [[UInt64]] = []
        do {
            let rt = try runtime()
            rt.addPlugin(try PluginLoader.open(TestSupport.plugin("pbtest-recorder")), configuration: ["output": "\(dir)/thread.txt"])
            let path = try Self.recorder(named: "rec-freed", in: dir)
            #expect(rt.addProcessPlugin(ProcessPluginSpec(path: path, name: "rec-freed", version: "1",
                                                          configuration: ["output": "\(dir)/process.txt"], batchSize: 7,
                                                          deadline: nil, manifest: [])))
            #expect(rt.startWorkers() == 2, "\(rt.failures.map(\.description))")
            let proc = try #require(rt.workers.first { $0.name == "rec-freed" } as? ProcessWorker)
            // The ring, and the pipes the worker's stdout and stderr are (the host holds their
            // read ends), by identity: descriptor numbers are reused.
            held = [Self.identity("/proc/self/fd/\(rt.ring.fd)"), Self.identity("/proc/\(proc.pid)/fd/1"),
                    Self.identity("/proc/\(proc.pid)/fd/2")].compactMap { $0 }
            #expect(held.count == 3)
            weakWorker = proc
            weakRuntime = rt
            rt.start(source: SyntheticSource(count: 100))
            rt.waitUntilDrained()
            #expect(Self.openFiles().isSuperset(of: held))
            #expect(rt.workers.count == 2)
        }
        // The worker's monitor thread may still be on its way out.
        let deadline = ContinuousClock.now + .seconds(20)
        while (weakRuntime != nil || weakWorker != nil) && ContinuousClock.now < deadline { usleep(10_000) }
        #expect(weakRuntime == nil, "the runtime was not freed")
        #expect(weakWorker == nil, "the worker was not freed")
        #expect(Self.openFiles().isDisjoint(with: held), "a descriptor of the ring or of the worker's output pipes is still open")
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [])
            .compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)") }
        #expect(!names.contains { $0.contains("plugboard-worker-rec-freed") }, "the worker's control page is still open")
    }

    /// Both orders of the graceful stop's two halves, each with the monitor's idle watchdog tick
    /// set to an hour: the gate opened after the worker drained (only the gate's wake can tell
    /// the monitor), and the gate opened before the source started (only the worker's `drained`
    /// frame can). A monitor that waited for its tick would hold the join to its deadline, and
    /// the worker would be killed there without running its plugin's shutdown. Four rounds each:
    /// another wake (a host call the worker queued just before it drained) sometimes hides a
    /// missing `drained` frame (a single round passed in 3 of 5 runs without it; four rounds
    /// failed in all 4 runs tried).
    @Test("a graceful stop reaches a worker process at once, whichever comes last: the host's shutdown gate or the worker's drain",
          arguments: [false, true])
    func gracefulStopWakesTheMonitor(gateFirst: Bool) throws {
        for _ in 0..<4 { try gracefulStop(gateFirst: gateFirst) }
    }

    func gracefulStop(gateFirst: Bool) throws {
        let dir = try TestSupport.tempDir("gate")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = "\(dir)/out.txt"
        let rt = try runtime { $0.watchdogTick = .seconds(3600) }
        let path = try Self.recorder(named: "rec-gate", in: dir)
        #expect(rt.addProcessPlugin(ProcessPluginSpec(path: path, name: "rec-gate", version: "1", configuration: ["output": out],
                                                      batchSize: 16, deadline: nil, manifest: [])))
        #expect(rt.startWorkers() == 1, "\(rt.failures.map(\.description))")
        let proc = try #require(rt.workers.first as? ProcessWorker)
        if gateFirst { proc.openShutdownGate() }
        rt.start(source: SyntheticSource(count: 1000))
        rt.waitUntilSourceDrained()
        if !gateFirst {
            // The worker has read everything and waits for the gate (it sent `drained` already).
            let until = ContinuousClock.now + .seconds(60)
            while proc.activity != .drained && ContinuousClock.now < until { sleepThread(for: .milliseconds(2)) }
            #expect(proc.activity == .drained)
            proc.openShutdownGate()
        }
        // Far below the tick: only a wake-up lets the join return before this deadline.
        #expect(proc.join(until: .now + .seconds(120)), "the monitor slept through the stop")
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 1001 && lines.last == "SHUTDOWN", "every event, then the plugin's own shutdown: \(lines.suffix(2))")
        #expect(proc.stats.state == .stopped && proc.stats.crashes.isEmpty, "\(proc.stats)")
    }

    @Test("a worker process lapped by a live source resynchronises from the host's device table, fetched over its socket")
    func lappedWorkerResyncs() throws {
        let dir = try TestSupport.tempDir("lap")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = "\(dir)/slow.txt"
        let rt = try runtime()  // 256 slots
        // Two devices in the table, so the resync has something to hand over.
        for i in 0..<2 {
            rt.deviceTable.apply(UnsafePointer(Self.device(i).pointer))
        }
        let path = try Self.recorder(named: "slow-proc", in: dir)
        #expect(rt.addProcessPlugin(ProcessPluginSpec(path: path, name: "slow-proc", version: "1",
                                                      configuration: ["output": out, "delay_us": "20000"], batchSize: 8,
                                                      deadline: nil, manifest: [])))
        #expect(rt.startWorkers() == 1)
        let feed = FeedSource()
        rt.start(source: feed)
        feed.wanted.store(5000, ordering: .releasing)  // a live source: it never waits for the slow worker
        let deadline = ContinuousClock.now + .seconds(30)
        while (rt.pluginStats.first?.resyncs ?? 0) == 0 && ContinuousClock.now < deadline { usleep(5000) }
        _ = rt.stop(deadline: .seconds(10))
        let stats = try #require(rt.pluginStats.first)
        #expect(stats.laps > 0 && stats.resyncs > 0 && stats.missed > 0, "\(stats)")
        let lines = TestSupport.lines(out)
        #expect(lines.contains("RESYNC 2"), "the device table crossed the process boundary: \(lines.filter { $0.hasPrefix("RESYNC") })")
        #expect(stats.crashes.isEmpty)
    }

    /// A device record (an add event) for the table.
    static func device(_ i: Int) -> (pointer: UnsafeMutablePointer<pb_event>, keep: UnsafeMutableRawPointer) {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: EventLayout.maxSize, alignment: 64)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: EventLayout.maxSize)
        var w = EventWriter(at: raw, capacity: EventLayout.maxSize, sequence: UInt64(i + 1))
        w.action = .add
        w.event.pointee.vendor_id = 0x1d6b
        w.setString(.syspath, "/sys/devices/lap/\(i)")
        return (w.event, raw)
    }

    @Test("thread mode: a hot reload never unmaps an old image whose thread still runs (the host would fault)")
    func threadReloadKeepsOldImageMapped() throws {
        let dir = try TestSupport.tempDir("outlive")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Built with plain cc, as outside authors do: SwiftPM's build of it carries Swift sections
        // and would never be closed anyway.
        let path = "\(dir)/libmisbehave.so"
        let cc = try TestSupport.run("/usr/bin/cc", ["-std=gnu11", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-pthread",
                                                     "-I", TestSupport.packageRoot + "/SDK/include", "-o", path,
                                                     TestSupport.packageRoot + "/Tests/TestPlugins/misbehave/misbehave.c", "-ldl"])
        #expect(cc.status == 0, "\(cc.output)")
        var options = RuntimeOptions()
        options.ringSlots = 256
        let rt = try Runtime(options: options, logger: TestSupport.logger)
        // Each build starts a thread in init that keeps touching a static of its image forever.
        rt.addPlugin(try PluginLoader.open(path), configuration: ["mode": "thread-outlives", "where": "init"])
        #expect(rt.startWorkers() == 1, "\(rt.failures.map(\.description))")
        let feed = FeedSource()
        rt.start(source: feed)
        feed.wanted.store(100, ordering: .releasing)
        for _ in 0..<3 {
            let next = try rt.reload(pluginNamed: "misbehave", from: path)
            #expect(next.state == .running)
        }
        usleep(50_000)  // the old builds' threads run on in their (still mapped) images
        _ = rt.stop(deadline: .seconds(5))
        #expect(rt.pluginStats.first?.state == .stopped)
    }

    @Test("a plugin that refuses init in its worker process is refused with the plugin's own reason; the others run")
    func initRefusedInProcess() throws {
        let rt = try runtime()
        #expect(rt.addProcessPlugin(ProcessPluginSpec(path: TestSupport.plugin("pbtest-init-fails"), name: "init-fails",
                                                      version: "1", configuration: [:], batchSize: 8, deadline: nil, manifest: [])))
        #expect(rt.addProcessPlugin(ProcessPluginSpec(path: TestSupport.plugin("pbtest-wrong-abi"), name: "wrong-abi",
                                                      version: "1", configuration: [:], batchSize: 8, deadline: nil, manifest: [])))
        #expect(rt.startWorkers() == 0)
        let text = rt.failures.map(\.description).joined(separator: "\n")
        #expect(text.contains("init failed with status"), "\(text)")
        #expect(text.contains("plugin speaks ABI"), "\(text)")
        #expect(rt.failures.allSatisfy { $0.path.hasSuffix(".so") })
    }

    @Test("a worker that writes garbage to the host's socket (an unknown message, a half-sent frame) is killed and named, never waited for",
          arguments: [("unknown", #"printf '\001\000\000\000\015' >&3"#, "sent an unknown or malformed message (type 13)"),
                      ("half", #"printf '\144\000\000\000\014ab' >&3"#, "a message left half-sent")])
    func garbageOnTheSocket(kind: String, write: String, message: String) throws {
        // A stand-in worker, as a plugin's own code could write to descriptor 3.
        let dir = try TestSupport.tempDir("garbage")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let script = "\(dir)/worker-\(kind)"
        try "#!/bin/sh\n\(write)\nexec sleep 60\n".write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        let rt = try runtime {
            $0.workerExecutable = script
            $0.initDeadline = .seconds(120)
        }
        #expect(rt.addProcessPlugin(ProcessPluginSpec(path: TestSupport.plugin("pbtest-recorder"), name: "recorder",
                                                      version: "1", configuration: [:], batchSize: 8, deadline: nil, manifest: [])))
        let start = ContinuousClock.now
        #expect(rt.startWorkers() == 0)
        #expect(ContinuousClock.now - start < .seconds(60), "refused at once, not held until the 120 s init deadline")
        let text = rt.failures.map(\.description).joined()
        #expect(text.contains(message) && text.contains("was killed"), "\(text)")
        let stray = try TestSupport.run("/usr/bin/pgrep", ["-f", script])
        #expect(stray.status != 0, "the stand-in worker was killed: \(stray.output)")
    }

    @Test("a worker process that cannot be started names the program and the fix")
    func missingWorkerExecutable() throws {
        let rt = try runtime { $0.workerExecutable = "/nonexistent/plugboard-worker" }
        #expect(rt.addProcessPlugin(ProcessPluginSpec(path: TestSupport.plugin("pbtest-recorder"), name: "recorder",
                                                      version: "1", configuration: [:], batchSize: 8, deadline: nil, manifest: [])))
        #expect(rt.startWorkers() == 0)
        let text = rt.failures.map(\.description).joined()
        #expect(text.contains("/nonexistent/plugboard-worker") && text.contains("plugins.worker_executable"), "\(text)")
    }

    @Test("hot reload of a Swift plugin in process mode, 100 times under load: every event once, state carried over, a new process each time",
          .timeLimit(.minutes(5)))
    func swiftPluginReloadedAHundredTimes() throws {
        let rt = try runtime()
        let path = TestSupport.plugin("swift-counter")
        #expect(rt.addProcessPlugin(ProcessPluginSpec(path: path, name: "swift-counter", version: "1.0.0", configuration: [:],
                                                      batchSize: 16, deadline: nil, manifest: [])))
        #expect(rt.startWorkers() == 1, "\(rt.failures.map(\.description))")
        let source = UntilStoppedSource()
        rt.start(source: source)
        func reload() throws {
            let next = try rt.reload(pluginNamed: "swift-counter", from: path)
            #expect(next.isolation == .process && next.state == .running)
        }
        for _ in 0..<30 { try reload() }
        var pids: Set<Int32> = []
        for i in 0..<100 {
            try reload()
            if let w = rt.workers.first as? ProcessWorker { pids.insert(w.pid) }
        }
        _ = rt.stopSource(until: .now + .seconds(10))
        #expect(rt.drain(until: .now + .seconds(30)).isEmpty)
        #expect(rt.shutdownPlugins(until: .now + .seconds(10)).isEmpty)
        let sent = rt.sourceContext?.published.load(ordering: .relaxed) ?? 0
        #expect(sent > 1000, "events flowed during the reloads: \(sent)")
        #expect(pids.count == 100, "each reload ran a new worker process")
        let summary = rt.outputQueue.drain(max: 100_000).filter { $0.topic == "summary" }
        #expect(summary.count == 131, "each build publishes its running total when it shuts down")
        let text = summary.last.map { String(decoding: $0.payload, as: UTF8.self) } ?? ""
        #expect(text.hasPrefix("{\"events\":\(sent),"), "every event counted once across 131 builds: \(text) vs \(sent)")
        let stats = try #require(rt.pluginStats.first)
        #expect(stats.events == sent && stats.missed == 0 && stats.laps == 0, "\(stats)")
    }

    /// Lines of /proc/PID/maps and VmRSS (KiB) of another process.
    static func mappingsAndRSS(pid: Int32) -> (maps: Int, rssKiB: Int, descriptors: Int) {
        let maps = (try? FileDescriptor.readContents(of: "/proc/\(pid)/maps")).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let status = (try? FileDescriptor.readContents(of: "/proc/\(pid)/status")).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let rss = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }?
            .split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) } ?? 0
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.count ?? -1
        return (maps.split(separator: "\n").count, rss, fds)
    }

    @Test("plugboard run --watch, a Swift plugin in process mode renamed into place 100 times: the host's mappings and RSS stay flat, every event counted once",
          .timeLimit(.minutes(5)))
    func watchReloadsLeaveNothingInTheHost() throws {
        let dir = try TestSupport.tempDir("watch-swift")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let plugboard = PackagePaths.product("plugboard")
        try FileManager.default.copyItem(atPath: TestSupport.plugin("swift-counter"), toPath: "\(dir)/libswift-counter.so")
        let packed = try TestSupport.run(plugboard, ["pack", TestSupport.packageRoot + "/SamplePlugins/swift-counter/plugin.toml",
                                                     "--library", "\(dir)/libswift-counter.so", "-o", "\(dir)/swift-counter.pbm"])
        #expect(packed.status == 0, "\(packed.output)")
        // 20,000 events, 3 ms apart: the source outlasts 110 reloads even on a loaded machine (60 s;
        // the run is stopped with SIGTERM after them), and hundreds of events arrive during them
        // (a reload takes about 10 ms since the old worker's stop no longer waits for a watchdog
        // tick; at 12 ms apart, 110 reloads saw barely 100 events).
        let session = "\(dir)/session.jsonl"
        var lines = ""
        for i in 0..<20_000 {
            lines += "{\"action\":\"\(i % 2 == 0 ? "add" : "remove")\",\"syspath\":\"/sys/devices/w/\(i % 7)\",\"vendor_id\":\"1d6b\",\"product_id\":\"000\(i % 7)\",\"delay_ms\":3}\n"
        }
        try lines.write(toFile: session, atomically: true, encoding: .utf8)
        let log = "\(dir)/run.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: plugboard)
        p.arguments = ["run", "--plugins", dir, "--registry-cache", "none", "--source", "replay:\(session)", "--watch",
                       "--set", "plugins.worker_user=root"]
        p.standardOutput = out
        p.standardError = out
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        func text() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        func reloads() -> Int { text().components(separatedBy: "plugin reloaded").count - 1 }
        let start = ContinuousClock.now
        while !text().contains("event source started") && ContinuousClock.now - start < .seconds(30) { usleep(20_000) }
        func replace(_ n: Int) throws {
            let want = reloads() + 1
            try? FileManager.default.removeItem(atPath: "\(dir)/.next.so")
            try FileManager.default.copyItem(atPath: TestSupport.plugin("swift-counter"), toPath: "\(dir)/.next.so")
            #expect(rename("\(dir)/.next.so", "\(dir)/libswift-counter.so") == 0)
            let t = ContinuousClock.now
            while reloads() < want && ContinuousClock.now - t < .seconds(10) { usleep(2_000) }
            #expect(reloads() >= want, "reload \(n) did not happen: \(text().suffix(2000))")
        }
        for i in 0..<10 { try replace(i) }  // warm-up: the host's first-use allocations
        let before = Self.mappingsAndRSS(pid: p.processIdentifier)
        for i in 0..<100 { try replace(i) }
        let after = Self.mappingsAndRSS(pid: p.processIdentifier)
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        let output = text()
        #expect(p.terminationStatus == 0, "\(output.suffix(3000))")
        #expect(reloads() == 110)
        #expect(after.maps - before.maps <= 4, "host mappings \(before.maps) -> \(after.maps) over 100 reloads")
        #expect(after.rssKiB - before.rssKiB <= 1024, "host RSS \(before.rssKiB) KiB -> \(after.rssKiB) KiB over 100 reloads")
        #expect(before.descriptors > 0 && after.descriptors - before.descriptors <= 2,
                "host descriptors \(before.descriptors) -> \(after.descriptors) over 100 reloads")
        // The last build's summary counts every event the source published: state carried across
        // 111 builds, nothing twice, nothing lost.
        let sent = output.firstMatch(of: /replay:\S+: (\d+) events in/).flatMap { Int($0.1) }
        let last = output.split(separator: "\n").last { $0.contains("swift-counter/summary:") }
        #expect(sent.map { $0 > 100 } == true, "\(output.suffix(2000))")
        #expect(last?.contains("{\"events\":\(sent ?? -1),") == true, "\(last ?? "no summary") vs \(sent ?? -1) published")
        print("watch reloads: host maps \(before.maps) -> \(after.maps), RSS \(before.rssKiB) -> \(after.rssKiB) KiB, descriptors \(before.descriptors) -> \(after.descriptors), \(sent ?? -1) events")
    }
}

/// A finite source (flow control on: nothing is lapped) that publishes one add every 20 µs until stopped.
final class UntilStoppedSource: EventSource {
    var name: String { "paced" }
    var isFinite: Bool { true }
    func run(_ context: SourceContext) throws {
        var n: UInt64 = 0
        while !context.shouldStop {
            n += 1
            context.producer.publish { w in
                w.action = .add
                w.event.pointee.vendor_id = 0x1d6b
                w.event.pointee.product_id = UInt16(n % 4)
                w.setString(.syspath, "/sys/devices/paced/\(n % 4)")
            }
            context.published.add(1, ordering: .relaxed)
            usleep(20)
        }
    }
}
