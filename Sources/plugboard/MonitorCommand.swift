import ArgumentParser
import CPlugboard
import Foundation
import Logging
import PlugboardCore
import PlugboardUdev
import Synchronization

/// `plugboard monitor`: prints USB events as a plugin would receive them, like `udevadm monitor`.
struct MonitorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "monitor",
        abstract: "Print live USB device events exactly as plugins receive them.",
        discussion: """
            Runs the udev source (enumeration first, flagged coldplug, then live events) and prints
            each event: receipt time (CLOCK_MONOTONIC seconds), action, vid:pid, product, syspath,
            then serial and flags. --json prints one object per line with every pb_event field
            (the replay format, docs/replay-format.md). --properties adds the udev properties each
            event was built from. Stop with Ctrl-C (SIGINT) or SIGTERM.
            """)

    @Flag(help: "One JSON object per line with every pb_event field.")
    var json = false

    @Flag(help: "Also print the udev properties of the uevent (or sysfs device) behind each event.")
    var properties = false

    @OptionGroup var udev: UdevOptions

    @Option(help: "Log level (logs go to standard error): trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "notice"

    func validate() throws {
        try udev.validate()
        if Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
    }

    func run() throws {
        let logger = CLI.makeLogger(level: logLevel)
        let ring = try EventRing(slotCount: 4096)
        let producer = ring.makeProducer()
        let consumer = ring.makeConsumer(name: "monitor")
        let context = SourceContext(producer: producer, deviceTable: DeviceTable(), logger: logger)
        let stash = PropertyStash()
        let counters = UdevSourceCounters()
        var tap: (@Sendable (UInt64, UdevDeviceView?) -> Void)? = nil
        if properties {
            tap = { seq, dev in stash.put(seq, dev?.properties ?? []) }
        }
        let source = UdevSource(options: udev.sourceOptions, counters: counters, onEvent: tap)
        let failure = FailureBox()
        let thread = NativeThread(name: "pb-source") {
            do { try source.run(context) } catch { failure.message.withLock { $0 = "\(error)" } }
            producer.close()
        }
        let signals = SignalWatcher(signals: [SIGINT, SIGTERM])
        var stopping = false
        var announced = false
        let batch = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: 64)
        defer { batch.deallocate() }
        loop: while true {
            if !stopping && signals.count > 0 {
                stopping = true
                context.requestStop()
            }
            if !announced, let mode = counters.mode {
                announced = true
                let buffer = counters.effectiveReceiveBuffer.load(ordering: .relaxed)
                FileHandle.standardError.write(Data(
                    "plugboard monitor: USB events (mode \(mode), receive buffer \(buffer >> 20) MiB as SO_RCVBUF reports it); Ctrl-C to stop\n".utf8))
            }
            switch consumer.poll(max: 64, into: batch) {
            case .events(let n):
                var out = ""
                for i in 0..<n {
                    let e = batch[i]!
                    out += json ? EventJSON.encode(e) : Self.line(e)
                    out += "\n"
                    if properties {
                        for (k, v) in stash.take(e.pointee.sequence) { out += "    \(k)=\(v)\n" }
                    }
                }
                if consumer.commit() {
                    FileHandle.standardOutput.write(Data(out.utf8))
                } else {
                    FileHandle.standardError.write(Data("plugboard monitor: events were overwritten while printing\n".utf8))
                }
            case .lapped(let missed):
                FileHandle.standardError.write(Data("plugboard monitor: fell behind, \(missed) events not shown\n".utf8))
            case .empty:
                consumer.wait(timeoutNanoseconds: 50_000_000)
            case .finished:
                break loop
            }
        }
        _ = thread.join(timeout: Duration.seconds(2))
        if let f = failure.message.withLock({ $0 }) { throw CLI.Failure("udev source failed: \(f)") }
    }

    /// `[   1234.567890] add      046d:c52b "USB Receiver" /sys/devices/... serial=... [coldplug]`
    static func line(_ e: UnsafePointer<pb_event>) -> String {
        let t = String(format: "[%12.6f]", Double(e.pointee.timestamp_ns) / 1e9)
        let action = e.action.name.padding(toLength: 8, withPad: " ", startingAt: 0)
        var s = "\(t) \(action) \(String(format: "%04x:%04x", e.pointee.vendor_id, e.pointee.product_id)) "
        s += EventJSON.quote(e.string(.product)) + " " + e.string(.syspath)
        let serial = e.string(.serial)
        if !serial.isEmpty { s += " serial=" + EventJSON.quote(serial) }
        let flags = EventFlags.names.filter { e.flags.contains($0.0) }.map(\.1)
        if !flags.isEmpty { s += " [" + flags.joined(separator: ",") + "]" }
        return s
    }
}

/// The source thread's error, for the main thread.
final class FailureBox: Sendable {
    let message = Mutex<String?>(nil)
}

/// Properties of published events, keyed by sequence, from the source thread to the printer.
final class PropertyStash: Sendable {
    private let entries = Mutex<[UInt64: [(String, String)]]>([:])

    func put(_ seq: UInt64, _ props: [(String, String)]) { entries.withLock { $0[seq] = props } }

    /// The properties of `seq`; waits briefly, since the source stores them just after publishing.
    func take(_ seq: UInt64) -> [(String, String)] {
        for _ in 0..<2000 {
            if let p = entries.withLock({ $0.removeValue(forKey: seq) }) { return p }
            usleep(50)
        }
        return []
    }
}
