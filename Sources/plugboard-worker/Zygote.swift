import CPlugboard
import CPlugboardSupport
import Logging
import PlugboardCore
import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

/// The fork server's side of a worker's start (`plugboard-worker --zygote`; `ForkServer` is the
/// daemon's side; docs/architecture.md, "Starting a worker process").
enum Zygote {
    /// What every copy would otherwise do first, done once here: the ambient and bounding
    /// capability sets emptied, and the Swift runtime's type metadata for the worker's own
    /// start-up path instantiated (a copy finds it ready instead of building it again, which
    /// was most of a copied worker's start before its plugin's `dlopen`).
    ///
    /// The warm-up runs on a thread of its own, joined before the first copy: a Swift `Mutex`
    /// caches the locking thread's id in thread-local storage, and the copies run on this
    /// process's main thread, which must not carry the zygote's id into them.
    static func prepare() {
        if pbs_drop_inherited_capabilities() == 0 { pbs_mark_inherited_capabilities_dropped() }
        // pthread_join only, on this thread: no Dispatch, no Swift Mutex.
        if pbs_run_on_thread({ Zygote.warmUp() }) != 0 { return }
    }

    static func warmUp() {
        do {
            let q = try SharedQueue.create(capacity: 64 * 1024)
            let producer = try SharedQueue.Producer(attaching: q.memoryFile, wakeup: q.consumer.wakeup)
            let ring = try EventRing(slotCount: 8)
            let ringRO = try FileDescriptor.open("/proc/self/fd/\(ring.fd)", .readOnly)
            let attached = try EventRing(attaching: ringRO)
            let control = try WorkerControl.create(name: "warm-up")
            let page = try WorkerControl.attach(control.file)
            let consumer = attached.makeConsumer(name: "warm-up", sleepWord: page.sleepingWord, startingAt: 0)
            page.cursor = consumer.cursor
            consumer.deregister()
            let pair = try SocketPair.stream()
            let runner = WorkerRunner(channel: WireChannel(fd: pair.0), ringFD: ringRO, controlFD: control.file, queue: producer)
            var setup = WorkerSetup(pluginPath: "/warm-up", expectedName: "warm-up", configuration: ["k": "v"], batchSize: 64)
            setup.skip = [1]
            try WireChannel(fd: pair.1).send(.setup, setup.encode())
            if let (_, payload) = try? runner.channel.receive() { _ = try? WorkerSetup.decode(payload) }
            let logger = Logger(label: "plugboard-worker") { _ in SwiftLogNoOpLogHandler() }
            let context = PluginContext(name: "warm-up", configuration: ["k": "v"], outputQueue: OutputQueue(maxRecords: 1),
                                        deviceTable: runner.devices, logger: logger, remote: runner)
            _ = context.name
            _ = try? ELFImage.inspect(path: "/warm-up/does-not-exist.so")
            runner.note(PB_LOG_DEBUG, "warm-up")
            try? pair.0.close()
            try? pair.1.close()
            try? ringRO.close()
            try? q.memoryFile.close()
            _ = page
        } catch {
            // Only slower copies: each builds what the warm-up would have.
        }
    }
}
