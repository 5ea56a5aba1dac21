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

/// Worker processes started as copies of the fork server (`plugboard-worker --zygote`).
///
/// Each test runs its own fork server: `ForkServer` keeps one per worker executable, so a test
/// gives the worker a path of its own (a symbolic link), and killing that fork server cannot
/// disturb another test's workers.
@Suite("Fork server: workers are copies of one zygote, the host's own children, as locked down as spawned ones")
struct ForkServerTests {
    /// A path of its own for the real plugboard-worker.
    static func privateWorker(in dir: String) throws -> String {
        let link = "\(dir)/plugboard-worker"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: ProcessWorkerCoreTests.worker)
        return link
    }

    /// Log lines of the runtimes made with `log:`, for the operator-facing messages.
    final class Lines: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func append(_ line: String) { lock.withLock { lines.append(line) } }
        var text: String { lock.withLock { lines.joined(separator: "\n") } }
    }

    static func runtime(worker: String, forkServer: Bool = true, log: Lines? = nil) throws -> Runtime {
        var options = RuntimeOptions()
        options.ringSlots = 256
        options.outputQueueRecords = 20_000
        var policy = ProcessPolicy(workerExecutable: worker)
        policy.restartBackoff = .milliseconds(5)
        policy.forkServer = forkServer
        options.processPolicy = policy
        let logger = log.map { lines in Logger(label: "fork-server-test") { _ in TestSupport.TraceHandler(sink: { lines.append($0) }) } }
        return try Runtime(options: options, logger: logger ?? TestSupport.logger)
    }

    static func add(_ rt: Runtime, _ name: String, dir: String) throws {
        let path = try ProcessWorkerCoreTests.recorder(named: name, in: dir)
        #expect(rt.addProcessPlugin(ProcessPluginSpec(path: path, name: name, version: "1", configuration: ["output": "\(dir)/\(name).txt"],
                                                      batchSize: 16, deadline: nil, manifest: [])))
    }

    /// Fields of /proc/PID/stat after the command: [0] state, [1] ppid, [2] pgrp.
    static func stat(_ pid: Int32) -> [Substring] {
        guard let bytes = try? FileDescriptor.readContents(of: "/proc/\(pid)/stat") else { return [] }
        let text = String(decoding: bytes, as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return [] }
        return text[text.index(after: close)...].split(separator: " ")
    }

    static func commandLine(_ pid: Int32) -> String {
        let bytes = (try? FileDescriptor.readContents(of: "/proc/\(pid)/cmdline")) ?? []
        var text = String(decoding: bytes, as: UTF8.self)
        // A retitled process's argument area keeps its zero padding: the kernel shows all of it.
        while text.hasSuffix("\u{0}\u{0}") { text.removeLast() }
        return text
    }

    static func links(_ pid: Int32) -> [String] {
        ((try? descriptors(pid)) ?? []).map { fd in
            var buf = [CChar](repeating: 0, count: 512)
            let n = readlink("/proc/\(pid)/fd/\(fd)", &buf, 511)
            return "\(fd)=" + (n > 0 ? String(decoding: buf[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?")
        }
    }

    static func descriptors(_ pid: Int32) throws -> [Int] {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").compactMap(Int.init).sorted()
    }

    static func status(_ pid: Int32, _ field: String) -> String? {
        guard let bytes = try? FileDescriptor.readContents(of: "/proc/\(pid)/status") else { return nil }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix(field + ":") }
            .map { $0.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces) }
    }

    static func until(_ timeout: Duration, _ condition: () -> Bool) -> Bool {
        let end = ContinuousClock.now + timeout
        while ContinuousClock.now < end {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    /// Gone, or a zombie (its parent has not reaped it yet).
    static func ended(_ pid: Int32) -> Bool {
        let s = stat(pid)
        return s.isEmpty || s[0] == "Z"
    }

    @Test("workers are the host's own children (CLONE_PARENT), a process group each, titled with the plugin, holding only their eight descriptors; the fork server holds its socket only")
    func copiesAreTheHostsChildren() throws {
        let dir = try TestSupport.tempDir("zygote")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let worker = try Self.privateWorker(in: dir)
        let rt = try Self.runtime(worker: worker)
        try Self.add(rt, "rec-a", dir: dir)
        try Self.add(rt, "rec-b", dir: dir)
        #expect(rt.startWorkers() == 2, "\(rt.failures.map(\.description))")
        let zygote = try #require(ForkServer.shared(for: worker).pid, "a fork server was started for \(worker)")
        #expect(Self.stat(zygote)[1] == "\(getpid())")
        #expect(try Self.descriptors(zygote) == [0, 1, 2, 3], "stdin, /dev/null twice, its socket")
        #expect(Self.status(zygote, "Threads") == "1", "single-threaded when it clones")
        #expect(Self.commandLine(zygote).hasPrefix("\(worker)\u{0}--zygote\u{0}"))
        var pids: [Int32] = []
        for name in ["rec-a", "rec-b"] {
            let w = try #require(rt.workers.first { $0.name == name } as? ProcessWorker)
            let pid = w.pid
            pids.append(pid)
            #expect(pid > 0 && pid != zygote)
            let s = Self.stat(pid)
            #expect(s[1] == "\(getpid())", "the host's child, not the zygote's: \(s)")
            #expect(s[2] == "\(pid)", "a process group of its own: \(s)")
            #expect(Self.commandLine(pid) == "\(worker) \(name)\u{0}", "ps and pgrep -f show the plugin: \(Self.commandLine(pid).debugDescription)")
            // Eight from the host, plus the recorder's own output file, opened by its init.
            let own = Self.links(pid).filter { !$0.hasSuffix("/\(name).txt") }
            #expect(own.map { $0.prefix { $0 != "=" } } == ["0", "1", "2", "3", "4", "5", "6", "7"],
                    "nothing of the zygote's or another worker's: \(own)")
            #expect(own.dropFirst(4).first?.hasSuffix("plugboard-ring (deleted)") == true, "\(own)")
            #expect(Self.status(pid, "NoNewPrivs") == "1")
            // Foundation's load was most of a spawned worker's start; no code the worker links
            // may bring it back (PreviousRing's date formatting once did).
            let maps = String(decoding: (try? FileDescriptor.readContents(of: "/proc/\(pid)/maps")) ?? [], as: UTF8.self)
            #expect(maps.contains("plugboard-worker") && !maps.contains("libFoundation"), "no Foundation in the worker")
            if geteuid() == 0 { #expect(Self.status(pid, "CapBnd") == "0000000000000000") }
        }
        rt.start(source: SyntheticSource(count: 3000))
        rt.waitUntilDrained()
        for name in ["rec-a", "rec-b"] {
            let lines = try String(contentsOfFile: "\(dir)/\(name).txt", encoding: .utf8).split(separator: "\n")
            #expect(lines.count == 3001, "every event and SHUTDOWN in \(name)")
        }
        // Reaped by the host like any child: the pids are gone, not zombies.
        for pid in pids { #expect(Self.until(.seconds(10)) { Self.stat(pid).isEmpty }, "\(pid) reaped") }
    }

    @Test("a SIGKILLed fork server is replaced at the next start; the workers it made keep running")
    func killedZygoteIsReplaced() throws {
        let dir = try TestSupport.tempDir("zygote-kill")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let worker = try Self.privateWorker(in: dir)
        let first = try Self.runtime(worker: worker)
        try Self.add(first, "rec-a", dir: dir)
        #expect(first.startWorkers() == 1, "\(first.failures.map(\.description))")
        let server = ForkServer.shared(for: worker)
        let zygote = try #require(server.pid)
        let a = try #require(first.workers.first as? ProcessWorker).pid
        kill(zygote, SIGKILL)
        #expect(Self.until(.seconds(10)) { Self.ended(zygote) })

        let log = Lines()
        let second = try Self.runtime(worker: worker, log: log)
        try Self.add(second, "rec-b", dir: dir)
        #expect(second.startWorkers() == 1, "\(second.failures.map(\.description))")
        let replacement = try #require(server.pid)
        #expect(replacement != zygote)
        #expect(server.status.started == 2 && server.status.lastFailure?.contains("had ended before a request") == true,
                "\(server.status)")
        // The operator is told, in the log, that it died and was replaced.
        #expect(log.text.contains("warning fork server \(worker) --zygote (pid \(zygote)) had ended before a request; a new one starts with the next worker"),
                "\(log.text)")
        #expect(log.text.contains("info fork server started") && log.text.contains("pid=\(replacement)"), "\(log.text)")
        let b = try #require(second.workers.first as? ProcessWorker).pid
        #expect(Self.stat(b)[1] == "\(getpid())")
        #expect(!Self.ended(a), "rec-a's worker outlived the zygote it was copied from")

        first.start(source: SyntheticSource(count: 2000))
        second.start(source: SyntheticSource(count: 1000))
        first.waitUntilDrained()
        second.waitUntilDrained()
        #expect(try String(contentsOfFile: "\(dir)/rec-a.txt", encoding: .utf8).split(separator: "\n").count == 2001)
        #expect(try String(contentsOfFile: "\(dir)/rec-b.txt", encoding: .utf8).split(separator: "\n").count == 1001)
    }

    @Test("with plugins.fork_server = false each worker is spawned: no fork server, the executable and the plugin's name as its arguments")
    func spawnedWithoutForkServer() throws {
        let dir = try TestSupport.tempDir("zygote-off")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let worker = try Self.privateWorker(in: dir)
        let rt = try Self.runtime(worker: worker, forkServer: false)
        try Self.add(rt, "rec-a", dir: dir)
        #expect(rt.startWorkers() == 1, "\(rt.failures.map(\.description))")
        let pid = try #require(rt.workers.first as? ProcessWorker).pid
        #expect(Self.commandLine(pid) == "\(worker)\u{0}rec-a\u{0}")
        #expect(ForkServer.shared(for: worker).pid == nil && ForkServer.shared(for: worker).status.started == 0)
        rt.start(source: SyntheticSource(count: 500))
        rt.waitUntilDrained()
        #expect(try String(contentsOfFile: "\(dir)/rec-a.txt", encoding: .utf8).split(separator: "\n").count == 501)
    }

    @Test("a worker executable that is not a fork server (it never greets) is killed after 2 s and its workers are spawned, as without one")
    func notAForkServer() throws {
        let dir = try TestSupport.tempDir("zygote-none")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A wrapper an operator might install: it knows nothing of --zygote and sits there.
        let wrapper = "\(dir)/worker-wrapper"
        try "#!/bin/sh\n[ \"$1\" = --zygote ] && echo $$ > '\(dir)/silent.pid' && exec sleep 60\nexec '\(ProcessWorkerCoreTests.worker)' \"$@\"\n"
            .write(toFile: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper, 0o755)
        let log = Lines()
        let rt = try Self.runtime(worker: wrapper, log: log)
        try Self.add(rt, "rec-a", dir: dir)
        try Self.add(rt, "rec-b", dir: dir)
        #expect(rt.startWorkers() == 2, "\(rt.failures.map(\.description))")
        let server = ForkServer.shared(for: wrapper)
        #expect(server.pid == nil && server.status.started == 1, "one attempt, then never again: \(server.status)")
        #expect(server.status.lastFailure?.contains("did not greet") == true, "\(server.status)")
        #expect(log.text.contains("did not greet") && log.text.contains("workers are spawned from now on"), "\(log.text)")
        let silent = Int32(try String(contentsOfFile: "\(dir)/silent.pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(silent > 0 && Self.stat(silent).isEmpty, "the silent one was killed and reaped")
        rt.start(source: SyntheticSource(count: 500))
        rt.waitUntilDrained()
        for name in ["rec-a", "rec-b"] {
            #expect(try String(contentsOfFile: "\(dir)/\(name).txt", encoding: .utf8).split(separator: "\n").count == 501)
        }
    }

    @Test("a fork server that dies or hangs after taking a request: that start is made again with new descriptors by a new fork server, the broken one is killed",
          arguments: ["exit", "hang"])
    func brokenMidRequest(mode: String) throws {
        let dir = try TestSupport.tempDir("zygote-\(mode)")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The first fork server greets, takes the first request (its descriptors arrive and are
        // closed) and then exits or sits there; the next one is the real fork server.
        let wrapper = "\(dir)/worker-wrapper"
        let broken = mode == "exit" ? "exit 0" : "exec sleep 60"
        try """
            #!/bin/sh
            if [ "$1" = --zygote ] && [ ! -e '\(dir)/broken.pid' ]; then
              echo $$ > '\(dir)/broken.pid'
              printf 'plugboard-zygote 1' >&3
              dd bs=4096 count=1 <&3 of=/dev/null 2>/dev/null
              \(broken)
            fi
            exec '\(ProcessWorkerCoreTests.worker)' "$@"

            """.write(toFile: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper, 0o755)
        let log = Lines()
        let rt = try Self.runtime(worker: wrapper, log: log)
        try Self.add(rt, "rec-a", dir: dir)
        #expect(rt.startWorkers() == 1, "\(rt.failures.map(\.description))")
        let server = ForkServer.shared(for: wrapper)
        let reason = mode == "exit" ? "ended while starting a worker" : "did not answer within 2 s"
        #expect(server.status.started == 2 && server.status.lastFailure?.contains(reason) == true, "\(server.status)")
        #expect(log.text.contains("warning fork server \(wrapper) --zygote") && log.text.contains(reason), "\(log.text)")
        let brokenPid = Int32(try String(contentsOfFile: "\(dir)/broken.pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(brokenPid > 0 && Self.until(.seconds(10)) { Self.stat(brokenPid).isEmpty }, "the broken fork server was killed and reaped")
        // The worker the second one made is the host's child and gets every event.
        let pid = try #require(rt.workers.first as? ProcessWorker).pid
        #expect(Self.stat(pid)[1] == "\(getpid())")
        rt.start(source: SyntheticSource(count: 500))
        rt.waitUntilDrained()
        #expect(try String(contentsOfFile: "\(dir)/rec-a.txt", encoding: .utf8).split(separator: "\n").count == 501)
    }
}
