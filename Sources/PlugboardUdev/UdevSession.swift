import CPlugboardSupport
import CUdev
import Logging
import PlugboardCore
import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

/// The state of one run of the udev source; lives on the source thread only.
///
/// Here: the session's state, its start and the monitor loop (receive, errors, stop). The rest,
/// one idea per file: `UdevSession+Events.swift` (what one uevent publishes),
/// `UdevSession+Resync.swift` (overflow recovery, enumeration, the device-table diff) and
/// `UdevSession+Fill.swift` (an event's fields from a `udev_device`).
final class UdevSession {
    let source: UdevSource
    let options: UdevSourceOptions
    let counters: UdevSourceCounters
    let context: SourceContext
    let logger: Logger
    let mode: UdevMode
    let udev: UdevContext
    var monitor: UdevMonitor
    /// One event-sized buffer for the rare cases that must look at an event before publishing
    /// it (an add at a syspath already present, resync diffs). Allocated once.
    let scratch: UnsafeMutableRawPointer
    /// Room for decoding udev's `\xNN`-escaped strings. Allocated once.
    let decodeBuffer: UnsafeMutableRawBufferPointer
    /// The buffer each uevent is read and parsed into (`pbs_uevent_receive`). Allocated once.
    let uevent: OpaquePointer
    var consecutiveErrors = 0
    /// Events published since the last wake-up of the consumers, within one read batch.
    var unwoken = 0
    /// True when an event was published without waking the consumers since the last wake-up:
    /// the batch's end must wake them. (A second wake right after the per-event one is not free:
    /// a worker process woken a moment ago still shows as sleeping until it runs, so it would
    /// cost another futex call per event.)
    var owesWake = false
    /// True until the first event of a read batch is published.
    var firstOfBatch = true
    var lastOverflowNs: UInt64 = 0
    var backoffMs = 0

    init(source: UdevSource, context: SourceContext) throws {
        self.source = source
        options = source.options
        counters = source.counters
        self.context = context
        logger = context.logger
        mode = source.resolvedMode
        udev = try UdevContext()
        monitor = try UdevMonitor(context: udev, group: mode == .udev ? "udev" : "kernel",
                                  receiveBufferBytes: options.receiveBufferBytes)
        scratch = UnsafeMutableRawPointer.allocate(byteCount: EventLayout.maxSize, alignment: 64)
        decodeBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024, alignment: 8)
        guard let u = pbs_uevent_create() else {
            scratch.deallocate()
            decodeBuffer.deallocate()
            throw UdevError.make("udev.monitor", reason: "cannot allocate the uevent buffer: out of memory")
        }
        uevent = u
    }

    deinit {
        scratch.deallocate()
        decodeBuffer.deallocate()
        pbs_uevent_destroy(uevent)
    }

    /// Reads the next uevent from the monitor's socket into `uevent` (`pbs_uevent_receive`:
    /// libudev's checks without its per-message device object; docs/udev.md, "Reading uevents").
    @inline(__always) func receiveUevent() -> Int32 {
        if let faults = source.faults, faults.take(faults.receiveErrors) {
            errno = faults.receiveErrno.load(ordering: .relaxed)
            return PBS_UEVENT_ERROR
        }
        return pbs_uevent_receive(monitor.fd, uevent)
    }

    func run() throws {
        try monitor.enableReceiving()
        counters.modeValue.store(mode == .udev ? 1 : 2, ordering: .releasing)
        logMode()
        logReceiveBuffer()
        // The monitor receives before the enumeration starts, so a device plugged in during
        // the enumeration is seen at least once (twice is handled: see `handleAdd`).
        if options.coldplug { try publishPresentDevices(flags: .coldplug) }
        counters.ready.store(true, ordering: .releasing)
        try loop()
    }

    private func logMode() {
        switch (options.mode, mode) {
        case (.auto, .udev):
            logger.info("udev source: mode udev (udevd runs: \(options.udevControlPath) exists); attributes from udev properties")
        case (.auto, _):
            logger.notice("udev source: mode kernel (no \(options.udevControlPath): udevd is not running here); reading vid/pid/serial from sysfs attributes")
        default:
            logger.info("udev source: mode \(mode) (forced); \(mode == .udev ? "attributes from udev properties" : "attributes from sysfs")")
        }
    }

    private func logReceiveBuffer() {
        let granted = monitor.effectiveReceiveBuffer
        counters.effectiveReceiveBuffer.store(granted, ordering: .relaxed)
        let asked = options.receiveBufferBytes
        let meta: Logger.Metadata = ["requested_bytes": "\(asked)", "so_rcvbuf_bytes": "\(granted)"]
        if asked > 0 && granted >= 0 && granted < asked {
            logger.warning("""
                udev source: receive buffer is \(mib(granted)) (SO_RCVBUF), less than the \(mib(asked)) requested; \
                larger bursts overflow and are recovered by resync (fix: run as root / with CAP_NET_ADMIN, \
                or raise net.core.rmem_max)
                """, metadata: meta)
        } else {
            logger.info("udev source: receive buffer \(mib(granted)) (SO_RCVBUF as the kernel reports it, twice the \(mib(asked)) requested)",
                        metadata: meta)
        }
    }

    // MARK: the monitor loop

    private func loop() throws {
        var fds = [pollfd(fd: monitor.fd, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: context.stopFD, events: Int16(POLLIN), revents: 0)]
        while true {
            if context.shouldStop { return drainOnStop() }
            var revents: Int16
            if let faults = source.faults, faults.take(faults.pollErrors) {
                revents = Int16(POLLERR)
            } else {
                fds[0].fd = monitor.fd
                do { try Poll.wait(&fds, timeoutMilliseconds: -1) } catch {
                    throw UdevError.make("udev.poll", reason: "poll on the uevent socket failed: \(error.reason)")
                }
                if fds[1].revents != 0 { return drainOnStop() }
                revents = fds[0].revents
            }
            if revents & Int16(POLLNVAL | POLLHUP) != 0 {
                try reopenMonitor(reason: "the uevent socket was closed (poll \(revents))")
            } else if revents & Int16(POLLERR) != 0 {
                try recoverFromOverflow(reason: "POLLERR")
            } else if revents & Int16(POLLIN) != 0 {
                try readBatch()
            }
        }
    }

    /// Reads up to `options.batch` messages. The first event of a batch wakes sleeping consumers
    /// at once (an idle system's latency is one event's), later ones only every
    /// `wakeEvery` events, and then only consumers whose batch is due (`wakeNow`), and at the
    /// end of the batch: under a burst, a consumer woken per event
    /// costs a futex wake, two context switches and its own poll per event, which is what made
    /// CPU per event grow with the plugins (docs/benchmarks.md, "udev intake").
    private func readBatch() throws {
        unwoken = 0
        firstOfBatch = true
        defer {
            if owesWake { context.producer.flush() }
            owesWake = false
            unwoken = 0
        }
        for _ in 0..<max(1, options.batch) {
            let status = receiveUevent()
            let receipt = pbs_monotonic_ns()
            switch status {
            case PBS_UEVENT_OK:
                consecutiveErrors = 0
                counters.received.add(1, ordering: .relaxed)
                handle(ReceivedUevent(raw: uevent), receipt: receipt)
            case PBS_UEVENT_FILTERED:
                continue  // another subsystem (only under umockdev: the kernel's BPF filter drops them)
            case PBS_UEVENT_REFUSED:
                handleRefusal()
            case PBS_UEVENT_NONE:
                return
            default:
                let err = errno
                if err == EAGAIN || err == EWOULDBLOCK || err == 0 { return }
                if err == EINTR { continue }
                try handleReceiveError(err)
                return
            }
        }
    }

    /// A message refused as libudev would refuse it (an untrusted sender, a malformed message):
    /// it was consumed, so reading on cannot spin; counted and logged at debug level. It says
    /// nothing about the socket, which stays.
    private func handleRefusal() {
        counters.refusedMessages.add(1, ordering: .relaxed)
        logger.debug("udev source: uevent refused: \(pbs_uevent_refusal(uevent).map { String(cString: $0) } ?? "unknown")")
    }

    private func handleReceiveError(_ err: Int32) throws {
        if err == ENOBUFS {
            try recoverFromOverflow(reason: "ENOBUFS")
            return
        }
        // recvmsg failed with something else: an error that repeats without any success means
        // the socket itself is broken.
        consecutiveErrors += 1
        logger.debug("udev source: reading the uevent socket failed: \(errnoText(err))")
        if consecutiveErrors >= 64 {
            try reopenMonitor(reason: "64 receive errors in a row, last: \(errnoText(err))")
        }
    }

    /// Most events published in one batch before the consumers are woken again.
    static let wakeEvery = 16

    /// How the event about to be published wakes sleeping consumers (see `readBatch`): the
    /// batch's first at once; every `wakeEvery`th after it only a consumer whose batch is due
    /// (`RingProducer.flushIfDue`: more of this burst is on its way); the rest not, and the
    /// batch's end wakes everyone.
    @inline(__always) func wakeNow() -> SourceContext.Wake {
        defer {
            unwoken = unwoken == Self.wakeEvery - 1 ? 0 : unwoken + 1
            firstOfBatch = false
        }
        if firstOfBatch {
            owesWake = false
            return .now
        }
        owesWake = true
        return unwoken == 0 ? .ifDue : .later
    }

    /// Reads what is already queued when a stop is requested (bounded in time), so events
    /// sent before the stop reach the plugins.
    private func drainOnStop() {
        let end = pbs_monotonic_ns() + UInt64(max(0, options.drainOnStopMilliseconds)) * 1_000_000
        while pbs_monotonic_ns() < end {
            let status = pbs_uevent_receive(monitor.fd, uevent)
            if status == PBS_UEVENT_REFUSED { handleRefusal() }
            if status == PBS_UEVENT_FILTERED || status == PBS_UEVENT_REFUSED { continue }
            if status == PBS_UEVENT_ERROR && errno == EINTR { continue }
            guard status == PBS_UEVENT_OK else { break }
            let receipt = pbs_monotonic_ns()
            counters.received.add(1, ordering: .relaxed)
            handle(ReceivedUevent(raw: uevent), receipt: receipt)
        }
        context.producer.flush()
    }
}

/// "8 MiB", "212992 bytes", "unknown": a receive buffer size for log lines.
func mib(_ bytes: Int) -> String {
    bytes < 0 ? "unknown" : bytes % (1 << 20) == 0 ? "\(bytes >> 20) MiB" : "\(bytes) bytes"
}
