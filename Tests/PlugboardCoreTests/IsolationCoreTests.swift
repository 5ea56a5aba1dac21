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

    @Test("a worker process that cannot be started names the program and the fix")
    func missingWorkerExecutable() throws {
        let rt = try runtime { $0.workerExecutable = "/nonexistent/plugboard-worker" }
        #expect(rt.addProcessPlugin(ProcessPluginSpec(path: TestSupport.plugin("pbtest-recorder"), name: "recorder",
                                                      version: "1", configuration: [:], batchSize: 8, deadline: nil, manifest: [])))
        #expect(rt.startWorkers() == 0)
        let text = rt.failures.map(\.description).joined()
        #expect(text.contains("/nonexistent/plugboard-worker") && text.contains("plugins.worker_executable"), "\(text)")
    }
}
