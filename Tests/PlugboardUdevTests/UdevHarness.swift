import Foundation
import Logging
import PlugboardCore
import PlugboardTestbed
import Testing

@testable import PlugboardUdev
import PlugboardTestSupport

/// One event as the real recorder plugin (libpbtest-recorder.so) wrote it.
struct RecordedEvent: CustomStringConvertible {
    var sequence: UInt64
    var action: String
    var seqnum: UInt64
    /// Every other field, exactly as the recorder printed them ("flags=0 bus=1 dev=2 ... driver=usb").
    var fields: String

    var description: String { "\(sequence) \(action) seqnum=\(seqnum) \(fields)" }

    /// The value of `key=` (strings run to the next known key).
    func value(_ key: String) -> String? {
        let keys = ["flags", "bus", "dev", "id", "bcd", "class", "speed", "nif", "ifs", "syspath", "devnode", "serial",
                    "manufacturer", "product", "driver"]
        guard let r = fields.range(of: (fields.hasPrefix(key + "=") ? "" : " ") + key + "=") else { return nil }
        let rest = fields[r.upperBound...]
        let next = keys.compactMap { rest.range(of: " \($0)=")?.lowerBound }.min() ?? rest.endIndex
        return String(rest[..<next])
    }
}

/// The expected recorder line of a simulated device (every field), given action flags.
func expectedFields(_ d: SimulatedUSBDevice, syspath: String, flags: UInt16, serial: String? = nil,
                    interfaces: [(UInt8, UInt8, UInt8)]? = nil, driver: String? = nil) -> String {
    func hx(_ v: some BinaryInteger, _ n: Int) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, n - s.count)) + s
    }
    let ifs = (interfaces ?? d.interfaces).map { hx($0.0, 2) + hx($0.1, 2) + hx($0.2, 2) }.joined(separator: ",")
    let speed = Double(d.speed).map { UInt32($0 * 1000) } ?? 0
    let nif = max(d.interfaces.count, (interfaces ?? d.interfaces).count)
    return "flags=\(flags) bus=\(d.bus) dev=\(d.devnum) id=\(hx(d.vendorID, 4)):\(hx(d.productID, 4)) bcd=\(hx(d.bcdDevice, 4)) "
        + "class=\(hx(d.deviceClass, 2))/\(hx(d.deviceSubclass, 2))/\(hx(d.deviceProtocol, 2)) speed=\(speed) nif=\(nif) ifs=\(ifs) "
        + "syspath=\(syspath) devnode=\(d.devnode) serial=\(serial ?? d.serial.map { String(decoding: $0, as: UTF8.self) } ?? "") "
        + "manufacturer=\(d.manufacturer.map { String(decoding: $0, as: UTF8.self) } ?? "") "
        + "product=\(d.product.map { String(decoding: $0, as: UTF8.self) } ?? "") driver=\(driver ?? d.driver)"
}

let flagTruncated: UInt16 = 1, flagResync: UInt16 = 2, flagColdplug: UInt16 = 4, flagFromTable: UInt16 = 8

/// A real runtime (ring, worker, the recorder .so) fed by a real `UdevSource` reading a umockdev testbed.
final class UdevHarness {
    let bed: Testbed
    let runtime: Runtime
    let source: UdevSource
    let counters = UdevSourceCounters()
    let faults = UdevFaultInjection()
    let output: String
    private var stopped = false

    /// Creates the testbed, lets `setup` add the devices present at start (coldplug), then
    /// starts the runtime with the recorder plugin and the udev source, and waits until the
    /// source is ready (monitor receiving, enumeration published).
    init(mode: UdevMode = .udev, controlPath: String? = nil, ringSlots: Int = 4096, coldplug: Bool = true,
         setup: (Testbed) throws -> Void = { _ in }) throws {
        bed = try Testbed()
        try setup(bed)
        output = NSTemporaryDirectory() + "pb-udev-\(UUID().uuidString).log"
        var logger = Logger(label: "udev-test")
        logger.logLevel = .error
        var options = RuntimeOptions()
        options.ringSlots = ringSlots
        runtime = try Runtime(options: options, logger: logger)
        let plugin = try PluginLoader.open(try TestPaths.plugin("pbtest-recorder"))
        runtime.addPlugin(plugin, configuration: ["output": output])
        #expect(runtime.startWorkers() == 1, "the recorder plugin must start")
        var so = UdevSourceOptions()
        so.mode = mode
        so.coldplug = coldplug
        if let controlPath { so.udevControlPath = controlPath }
        source = UdevSource(options: so, counters: counters, faults: faults)
        runtime.start(source: source)
        try waitUntil("the udev source is ready") { self.counters.ready.load(ordering: .acquiring) || self.runtime.sourceError != nil }
        if let e = runtime.sourceError { throw TestbedError("udev source failed: \(e)") }
    }

    deinit { stop() }

    /// The fixture most tests start from: a root hub with a flash drive on it, the source running,
    /// and both devices already delivered as coldplug adds.
    static func hubWithDrive() throws -> (UdevHarness, hub: String, drive: String) {
        var hub = "", drive = ""
        let h = try UdevHarness { bed in
            hub = try bed.addRootHub()
            drive = try bed.add(flashDrive(), parent: hub)
        }
        do { _ = try h.waitForEvents(2) } catch {
            h.stop()
            throw error
        }
        return (h, hub, drive)
    }

    func stop() {
        guard !stopped else { return }
        stopped = true
        _ = runtime.stop(deadline: .seconds(5))
        try? FileManager.default.removeItem(atPath: output)
    }

    /// Everything the recorder wrote so far (events only).
    var events: [RecordedEvent] {
        guard let data = FileManager.default.contents(atPath: output) else { return [] }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ", maxSplits: 3)
            guard parts.count == 4, let seq = UInt64(parts[0]), parts[2].hasPrefix("flags=") else { return nil }
            var rest = String(parts[3])
            guard let s = rest.range(of: "seqnum=") else { return nil }
            let tail = rest[s.upperBound...]
            let end = tail.firstIndex(of: " ") ?? tail.endIndex
            let seqnum = UInt64(tail[..<end]) ?? 0
            rest = String(parts[2]) + " " + String(tail[end...].dropFirst())
            return RecordedEvent(sequence: seq, action: String(parts[1]), seqnum: seqnum, fields: rest)
        }
    }

    /// Waits until the recorder wrote `count` events (or more); returns them.
    @discardableResult
    func waitForEvents(_ count: Int, timeout: Double = 15) throws -> [RecordedEvent] {
        var got: [RecordedEvent] = []
        try waitUntil("\(count) events reach the plugin", timeout: timeout) {
            got = self.events
            return got.count >= count
        }
        return got
    }

    /// Waits until the source has read `n` uevents in all.
    func waitForReceived(_ n: UInt64, timeout: Double = 15) throws {
        try waitUntil("the source received \(n) uevents", timeout: timeout) {
            self.counters.received.load(ordering: .relaxed) >= n
        }
    }

    /// The counters, for failure messages.
    var diagnostics: String {
        let c = counters
        let stats = runtime.pluginStats.first.map { "plugin events \($0.events) laps \($0.laps) lag \($0.lag) state \($0.state)" } ?? "no plugin"
        return "received \(c.received.load(ordering: .relaxed)), published \(runtime.sourceContext?.published.load(ordering: .relaxed) ?? 0), "
            + "recorded \(events.count), overflows \(c.overflows.load(ordering: .relaxed)), unknown removes \(c.unknownRemoves.load(ordering: .relaxed)), "
            + "duplicate adds \(c.duplicateAdds.load(ordering: .relaxed)), source error \(runtime.sourceError ?? "none"), \(stats)"
    }

    /// Syspaths of the usb_devices in the testbed's sysfs now (what a fresh enumeration sees).
    var sysfsDevices: Set<String> {
        let root = bed.sysDir
        var out = Set<String>()
        guard let it = FileManager.default.enumerator(atPath: root + "/devices") else { return out }
        while let rel = it.nextObject() as? String {
            guard rel.hasSuffix("/uevent") || rel == "uevent" else { continue }
            let dir = rel.hasSuffix("/uevent") ? String(rel.dropLast(7)) : ""
            guard let text = try? String(contentsOfFile: root + "/devices/" + rel, encoding: .utf8),
                  text.contains("DEVTYPE=usb_device") else { continue }
            out.insert("/sys/devices/" + dir)
        }
        return out
    }
}

/// Polls `condition` every 5 ms until it holds or `timeout` seconds pass.
func waitUntil(_ what: String, timeout: Double = 15, _ condition: () -> Bool) throws {
    let end = Date().addingTimeInterval(timeout)
    while !condition() {
        if Date() > end { throw TestbedError("timed out after \(timeout) s waiting until \(what)") }
        usleep(5000)
    }
}

/// Where the package's build products are (next to the test bundle).
enum TestPaths {
    static var buildDirectory: String { PackagePaths.products }

    static func plugin(_ name: String) throws -> String {
        let path = PackagePaths.plugin(name)
        guard FileManager.default.fileExists(atPath: path) else {
            throw TestbedError("\(path) is missing: build the package first (swift build), then run the tests")
        }
        return path
    }
}
