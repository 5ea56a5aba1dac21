import CPlugboard
import CPlugboardSupport
import Foundation
import PlugboardCore
import Synchronization
import Testing

/// The CPU list a thread of this process may run on, as the kernel reports it.
private func cpusAllowed(thread tid: Int32) throws -> String {
    let status = try String(contentsOfFile: "/proc/self/task/\(tid)/status", encoding: .utf8)
    let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") })
    return line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces)
}

/// A synthetic source that notes which CPUs its own thread may run on.
private final class AffinityNotingSource: EventSource {
    let inner: SyntheticSource
    init(inner: SyntheticSource) { self.inner = inner }
    let seen = Mutex<CPUAffinity?>(nil)
    var name: String { inner.name }
    var isFinite: Bool { true }
    func run(_ context: SourceContext) throws {
        seen.withLock { $0 = CPUAffinity.allowed }
        try inner.run(context)
    }
}

@Suite("CPU affinity (performance.cpu_affinity)")
struct AffinityTests {
    @Test("CPU lists parse as taskset writes them and print in the kernel's form", arguments: [
        ("1", [1], "1"), ("0-2,5", [0, 1, 2, 5], "0-2,5"), (" 3 , 1 ", [1, 3], "1,3"), ("1,1,0", [0, 1], "0-1"), ("", [], ""),
    ])
    func parses(text: String, cpus: [Int], printed: String) throws {
        let set = try CPUAffinity.parse(text).get()
        #expect(set.cpus == cpus)
        #expect(set.description == printed)
    }

    @Test("a malformed CPU list is refused with the reason", arguments: [
        ("a", "\"a\" is not a CPU number"), ("3-1", "runs backwards"), ("1-", "\"1-\" is not a CPU number"),
        ("-1", "\"-1\" is not a CPU number"), ("1,,2", "has an empty entry"), ("1-2-3", "\"1-2-3\" is not a CPU number"),
        ("99999", "past the largest CPU number"),
    ])
    func refuses(text: String, reason: String) {
        guard case .failure(let e) = CPUAffinity.parse(text) else {
            Issue.record("\"\(text)\" parsed")
            return
        }
        #expect(e.description.contains(reason), "\(e)")
    }

    @Test("a CPU this process may not use is refused at start, naming the key, the CPU and the allowed ones")
    func refusesUnavailableCPU() throws {
        let allowed = CPUAffinity.allowed
        // The set the message quotes is the kernel's, as it lists it for this thread.
        #expect(try cpusAllowed(thread: pbs_thread_id()) == "\(allowed)")
        try #require(!allowed.cpus.contains(1000), "CPU 1000 is allowed here: the refusal below cannot be tested")
        var options = RuntimeOptions()
        options.cpuAffinity = CPUAffinity([1000])
        #expect {
            _ = try Runtime(options: options, logger: TestSupport.logger)
        } throws: { e in
            let m = "\(e)"
            // The core names no key (the host adds it: OneHostTests).
            return !m.contains("performance.cpu_affinity") && m.contains("CPU 1000 is not one this process may run on")
                && m.contains("(allowed: \(allowed))")
        }
    }

    @Test("pinned: the source and every worker run only on the listed CPU, and every event is delivered")
    func pinsSourceAndWorkers() throws {
        let allowed = CPUAffinity.allowed
        let cpu = try #require(allowed.cpus.last)
        let dir = try TestSupport.pluginDir([
            (TestSupport.plugin("pbtest-recorder"), "librecorder.so"),
            (TestSupport.plugin("device-counter"), "libdevice-counter.so"),
        ])
        var options = RuntimeOptions()
        options.cpuAffinity = CPUAffinity([cpu])
        options.pluginConfiguration = ["recorder": ["output": "\(dir)/out"]]
        let runtime = try Runtime(options: options, logger: TestSupport.logger)
        try runtime.addLibraries(in: [dir])
        runtime.startWorkers()
        let workers = runtime.workers.compactMap { $0 as? Worker }
        #expect(workers.count == 2)
        for w in workers {
            while w.threadID == 0 { usleep(100) }
            #expect(try cpusAllowed(thread: w.threadID) == "\(cpu)", "worker \(w.plugin.name)")
        }
        let source = AffinityNotingSource(inner: SyntheticSource(count: 20_000))
        runtime.start(source: source)
        runtime.waitUntilDrained()
        #expect(source.seen.withLock { $0 } == CPUAffinity([cpu]))
        // One CPU for the producer and two consumers (which then do not spin): nothing lost.
        for s in runtime.pluginStats {
            #expect(s.events == 20_000, "\(s.name)")
            #expect(s.laps == 0 && s.missed == 0)
        }
        _ = runtime.stop(deadline: .seconds(5))
    }

    @Test("not pinned (the default): threads keep the process's CPUs")
    func unpinnedByDefault() throws {
        let allowed = CPUAffinity.allowed
        let dir = try TestSupport.pluginDir([(TestSupport.plugin("pbtest-recorder"), "librecorder.so")])
        var options = RuntimeOptions()
        options.pluginConfiguration = ["recorder": ["output": "\(dir)/out"]]
        let runtime = try Runtime(options: options, logger: TestSupport.logger)
        try runtime.addLibraries(in: [dir])
        runtime.startWorkers()
        let w = try #require(runtime.workers.first as? Worker)
        while w.threadID == 0 { usleep(100) }
        #expect(try cpusAllowed(thread: w.threadID) == allowed.description)
        _ = runtime.stop(deadline: .seconds(5))
    }
}

@Suite("Event ring memory")
struct RingMemoryTests {
    @Test("a new ring is backed in full at creation, so no publish takes a page fault")
    func prefaulted() throws {
        let ring = try EventRing(slotCount: 1024)
        #expect(try Self.fullyResident(ring))
        #expect(ring.isPrefaulted)
    }

    /// Whether every page of the ring's memfd is backed: a second mapping of it has its pages
    /// resident only if the ring's were allocated.
    static func fullyResident(_ ring: EventRing) throws -> Bool {
        var st = stat()
        #expect(fstat(ring.fd, &st) == 0)
        let size = Int(st.st_size)
        let p = try #require(mmap(nil, size, PROT_READ, MAP_SHARED, ring.fd, 0))
        #expect(p != MAP_FAILED)
        defer { munmap(p, size) }
        return pbs_resident_pages(p, size) == (size + Int(getpagesize()) - 1) / Int(getpagesize())
    }

    @Test("a ring backed in the background (the daemon's) is resident in full once it says so, and works meanwhile")
    func prefaultedInBackground() throws {
        let ring = try EventRing(slotCount: 4096, prefault: .background)
        // Publishing and reading while the pages are being backed.
        let producer = ring.makeProducer()
        let consumer = ring.makeConsumer(name: "c")
        for _ in 0..<100 { producer.publish(fillChecked) }
        let buffer = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: 100)
        defer { buffer.deallocate() }
        #expect(consumer.poll(max: 100, into: buffer) == .events(100))
        #expect((0..<100).allSatisfy { isIntact(buffer[$0]!) })
        #expect(consumer.commit())
        var waited = 0
        while !ring.isPrefaulted && waited < 10_000 { usleep(1_000); waited += 1 }
        #expect(ring.isPrefaulted)
        #expect(try Self.fullyResident(ring))
    }
}
