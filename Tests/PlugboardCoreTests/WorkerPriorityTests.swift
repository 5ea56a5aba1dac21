import Foundation
import Logging
import Synchronization
import PlugboardCore
import PlugboardTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Field `n` (1-based, as proc(5) counts) of /proc/.../stat: counted after the command's ")",
/// which may itself hold spaces.
func procStatField(_ path: String, _ n: Int) -> String? {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8), let close = text.lastIndex(of: ")") else { return nil }
    let fields = text[text.index(after: close)...].split(separator: " ")
    return n - 3 < fields.count ? String(fields[n - 3]) : nil
}

/// `Cpus_allowed_list` of /proc/PID/status.
func cpusAllowed(_ pid: Int32) -> String? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    return text.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") }
        .map { $0.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces) }
}

@Suite("Worker priority: [worker] nice and cpu_affinity, read back from /proc")
struct WorkerPriorityTests {
    /// The last CPU this process may use (a 1-CPU list that differs from "all").
    static var oneCPU: CPUAffinity { CPUAffinity([CPUAffinity.allowed.cpus.last ?? 0]) }

    @Test("a worker process runs at the manifest's nice, on its CPUs, set before the plugin loaded")
    func processPriority() throws {
        let dir = try TestSupport.tempDir("prio")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var options = RuntimeOptions()
        options.ringSlots = 64
        options.processPolicy = ProcessPolicy(workerExecutable: PackagePaths.product("plugboard-worker"))
        let rt = try Runtime(options: options, logger: TestSupport.logger)
        let path = try ProcessWorkerCoreTests.recorder(named: "prio", in: dir)
        var spec = ProcessPluginSpec(path: path, name: "prio", version: "1", configuration: ["output": "\(dir)/out.txt"],
                                     batchSize: 8, deadline: nil, manifest: [])
        spec.priority = WorkerPriority(nice: 7, cpus: Self.oneCPU)
        #expect(rt.addProcessPlugin(spec))
        #expect(rt.startWorkers() == 1, "\(rt.failures.map(\.description))")
        let w = try #require(rt.workers.first as? ProcessWorker)
        #expect(procStatField("/proc/\(w.pid)/stat", 19) == "7", "nice, field 19 of /proc/\(w.pid)/stat")
        #expect(cpusAllowed(w.pid) == Self.oneCPU.description)
        // The daemon itself is untouched.
        #expect(procStatField("/proc/self/stat", 19) == "0")
        _ = rt.stop(deadline: .seconds(5))
    }

    @Test("a worker thread runs at the manifest's nice on its own CPUs; the daemon's other threads do not")
    func threadPriority() throws {
        let dir = try TestSupport.tempDir("prio")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var options = RuntimeOptions()
        options.ringSlots = 64
        let rt = try Runtime(options: options, logger: TestSupport.logger)
        let path = try ProcessWorkerCoreTests.recorder(named: "prio-thread", in: dir)
        #expect(rt.addPlugin(try PluginLoader.open(path), configuration: ["output": "\(dir)/out.txt"],
                             priority: WorkerPriority(nice: 5, cpus: Self.oneCPU)))
        #expect(rt.startWorkers() == 1)
        let w = try #require(rt.workers.first as? Worker)
        let tid = w.threadID
        #expect(procStatField("/proc/self/task/\(tid)/stat", 19) == "5")
        #expect(cpusAllowed(getpid()) != nil)
        let status = try String(contentsOfFile: "/proc/self/task/\(tid)/status", encoding: .utf8)
        #expect(status.contains("Cpus_allowed_list:\t\(Self.oneCPU.description)\n"), "\(status)")
        #expect(procStatField("/proc/self/stat", 19) == "0", "the main thread keeps its nice")
        _ = rt.stop(deadline: .seconds(5))
    }

    @Test("a negative nice is applied with CAP_SYS_NICE; without it the plugin runs at 0 and the host logs a warning naming the capability and the fix")
    func negativeNice() throws {
        let dir = try TestSupport.tempDir("prio")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let worker = PackagePaths.product("plugboard-worker")
        // Root holds CAP_SYS_NICE; the same worker started through setpriv without it in its
        // bounding set (so not after exec either) stands for a daemon that was not granted it.
        let withoutCap = "\(dir)/worker-without-cap-sys-nice"
        try "#!/bin/sh\nexec /usr/bin/setpriv --bounding-set=-sys_nice -- \(worker) \"$@\"\n"
            .write(toFile: withoutCap, atomically: true, encoding: .utf8)
        chmod(withoutCap, 0o755)
        var cases: [(executable: String, applied: Bool)] = [(withoutCap, false)]
        if geteuid() == 0 { cases.append((worker, true)) }
        for c in cases {
            let lines = Mutex<[String]>([])
            var handler = TestSupport.TraceHandler()
            handler.sink = { line in lines.withLock { $0.append(line) } }
            let logger = Logger(label: "test") { _ in handler }
            var options = RuntimeOptions()
            options.processPolicy = ProcessPolicy(workerExecutable: c.executable)
            let rt = try Runtime(options: options, logger: logger)
            var spec = ProcessPluginSpec(path: try ProcessWorkerCoreTests.recorder(named: "prio-neg", in: dir), name: "prio-neg",
                                         version: "1", configuration: ["output": "\(dir)/out.txt"], batchSize: 8, deadline: nil, manifest: [])
            spec.priority = WorkerPriority(nice: -3)
            #expect(rt.addProcessPlugin(spec))
            #expect(rt.startWorkers() == 1, "the plugin runs either way: \(rt.failures.map(\.description))")
            let w = try #require(rt.workers.first as? ProcessWorker)
            #expect(procStatField("/proc/\(w.pid)/stat", 19) == (c.applied ? "-3" : "0"), "\(c.executable)")
            _ = rt.stop(deadline: .seconds(5))
            let warning = lines.withLock { $0 }.first { $0.contains("worker priority not applied") }
            if c.applied {
                #expect(warning == nil, "\(warning ?? "")")
            } else {
                #expect(warning?.contains("nice -3") == true && warning?.contains("CAP_SYS_NICE") == true
                        && warning?.contains("fix:") == true, "\(lines.withLock { $0 })")
            }
        }
    }
}
