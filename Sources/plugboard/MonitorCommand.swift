import ArgumentParser
import CPlugboard
import Foundation
import Logging
import PlugboardCore
import PlugboardDaemon
import PlugboardHost
import PlugboardSystem
import PlugboardUdev
import Synchronization

/// `plugboard monitor`: prints USB events as a plugin would receive them, like `udevadm monitor`.
/// It is the host of `run` with one more sink, a printer, and never publishes to Redis.
struct MonitorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "monitor",
        abstract: "Print live USB device events exactly as plugins receive them.",
        discussion: """
            The host of `plugboard run` (same configuration, same plugins, same settings) with a printer
            as one more ring consumer; it never publishes to Redis (a second publisher would compete with
            the daemon's for one stream). The default source is udev (enumeration first, flagged coldplug,
            then live events); --source replay:FILE prints a recorded session. Each event: receipt time
            (CLOCK_MONOTONIC seconds), action, vid:pid, product, syspath, then serial and flags. --json
            prints one object per line with every pb_event field (the replay format, docs/replay-format.md).
            --properties adds the udev properties each event was built from. Stop with Ctrl-C (SIGINT) or
            SIGTERM; a finite source ends by itself.
            """)

    @Flag(help: "One JSON object per line with every pb_event field.")
    var json = false

    @Flag(help: "Also print the udev properties of the uevent (or sysfs device) behind each event.")
    var properties = false

    @OptionGroup var host: HostOptions

    @OptionGroup var udev: UdevOptions

    func run() async throws {
        let logger = CLI.makeLogger(level: host.logLevel ?? "notice", format: host.logFormat)
        var (_, settings) = try host.load(extra: udev.overrides, logger: logger)
        settings.redis = nil
        // The running daemon owns the state files; monitor neither publishes nor recovers.
        settings.stateDirectory = nil
        settings.ringDirectory = nil
        let stash = properties ? PropertyStash() : nil
        let printer = EventPrinter(json: json, stash: stash)
        var observer: (@Sendable (UInt64, UdevDeviceView?) -> Void)? = nil
        if let stash { observer = { seq, dev in stash.put(seq, dev?.properties ?? []) } }
        let assembled: HostAssembly
        do {
            assembled = try HostAssembly(settings: settings, sinks: [printer], udevObserver: observer, logger: logger)
        } catch { throw CLI.Failure("\(error)") }
        printer.counters = assembled.udevCounters
        let report: ShutdownReport
        do {
            report = try await Daemon.run(host: assembled, options: Daemon.Options(logger: logger, stopWhenSourceEnds: true),
                                          version: PlugboardCoreVersion.string)
        } catch { throw CLI.Failure("\(error)") }
        if let e = assembled.runtime.sourceError { throw CLI.Failure("event source failed: \(e)") }
        if !report.completed { Daemon.exit(with: report) }
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

/// `monitor`'s sink: prints each event from its own ring consumer on a thread of its own.
final class EventPrinter: EventSink {
    let json: Bool
    let stash: PropertyStash?
    private let thread = Mutex<NativeThread?>(nil)
    private let udevCounters = Mutex<UdevSourceCounters?>(nil)

    init(json: Bool, stash: PropertyStash?) {
        self.json = json
        self.stash = stash
    }

    var name: String { "monitor" }

    /// The udev source's counters, for the one-line announcement once its mode is known.
    var counters: UdevSourceCounters? {
        get { udevCounters.withLock { $0 } }
        set { udevCounters.withLock { $0 = newValue } }
    }

    func start(events consumer: RingConsumer, pluginOutput: OutputQueue) throws {
        let t = NativeThread(name: "pb-monitor") { [self] in printEvents(from: consumer) }
        thread.withLock { $0 = t }
    }

    func stop(until deadline: ContinuousClock.Instant) -> String? {
        guard let t = thread.withLock({ $0 }) else { return nil }
        return t.join(timeout: max(.zero, deadline - .now)) ? nil : "monitor (still printing)"
    }

    private func printEvents(from consumer: RingConsumer) {
        var announced = false
        let batch = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: 64)
        defer { batch.deallocate() }
        loop: while true {
            if !announced, let counters, let mode = counters.mode {
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
                    out += json ? EventJSON.encode(e) : MonitorCommand.line(e)
                    out += "\n"
                    if let stash {
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
        consumer.deregister()
    }
}

/// Properties of published events, keyed by sequence, from the source thread to the printer.
final class PropertyStash: Sendable {
    private let entries = Mutex<[UInt64: [(String, String)]]>([:])

    func put(_ seq: UInt64, _ props: [(String, String)]) { entries.withLock { $0[seq] = props } }

    /// The properties of `seq`; waits briefly, since the source stores them just after publishing.
    func take(_ seq: UInt64) -> [(String, String)] {
        for _ in 0..<2000 {
            if let p = entries.withLock({ $0.removeValue(forKey: seq) }) { return p }
            sleepThread(for: .microseconds(50))
        }
        return []
    }
}
