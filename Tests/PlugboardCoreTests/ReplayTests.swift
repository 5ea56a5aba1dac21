import CPlugboard
import Foundation
import PlugboardCore
import PlugboardReplay
import Testing

@Suite("Replay source and runtime")
struct ReplayTests {
    static let session = [
        #"{"action":"add","flags":["coldplug"],"seqnum":7,"busnum":3,"devnum":12,"vendor_id":"0781","product_id":"5581","bcd_device":"0100","device_class":"ef","device_subclass":"02","device_protocol":"01","speed_kbps":5000000,"num_interfaces":3,"interfaces":["080650","030101","ff4201"],"syspath":"/sys/devices/pci0000:00/0000:00:14.0/usb3/3-2","devnode":"/dev/bus/usb/003/012","serial":"4C53 \"quoted\" ünïcode","manufacturer":"SanDisk","product":"Ultra Fit","driver":"usb"}"#,
        #"{"action":"change","seqnum":8,"busnum":3,"devnum":12,"vendor_id":"0781","product_id":"5581","speed_kbps":1500,"syspath":"/sys/devices/pci0000:00/0000:00:14.0/usb3/3-2","product":"Ultra Fit"}"#,
        #"{"action":"bind","seqnum":9,"vendor_id":"046d","product_id":"c52b","syspath":"/sys/devices/pci0000:00/0000:00:14.0/usb3/3-3","driver":"usbhid"}"#,
        #"{"action":"unbind","seqnum":10,"vendor_id":"046d","product_id":"c52b","syspath":"/sys/devices/pci0000:00/0000:00:14.0/usb3/3-3"}"#,
        #"{"action":"remove","seqnum":11,"busnum":3,"devnum":12,"syspath":"/sys/devices/pci0000:00/0000:00:14.0/usb3/3-2"}"#,
    ]

    /// What the recorder plugin must have written for the replayed session: computed here
    /// from the JSON independently of the C side.
    static let expected = [
        "1 add flags=4 seqnum=7 bus=3 dev=12 id=0781:5581 bcd=0100 class=ef/02/01 speed=5000000 nif=3 ifs=080650,030101,ff4201 syspath=/sys/devices/pci0000:00/0000:00:14.0/usb3/3-2 devnode=/dev/bus/usb/003/012 serial=4C53 \"quoted\" ünïcode manufacturer=SanDisk product=Ultra Fit driver=usb",
        "2 change flags=0 seqnum=8 bus=3 dev=12 id=0781:5581 bcd=0000 class=00/00/00 speed=1500 nif=0 ifs= syspath=/sys/devices/pci0000:00/0000:00:14.0/usb3/3-2 devnode= serial= manufacturer= product=Ultra Fit driver=",
        "3 bind flags=0 seqnum=9 bus=0 dev=0 id=046d:c52b bcd=0000 class=00/00/00 speed=0 nif=0 ifs= syspath=/sys/devices/pci0000:00/0000:00:14.0/usb3/3-3 devnode= serial= manufacturer= product= driver=usbhid",
        "4 unbind flags=0 seqnum=10 bus=0 dev=0 id=046d:c52b bcd=0000 class=00/00/00 speed=0 nif=0 ifs= syspath=/sys/devices/pci0000:00/0000:00:14.0/usb3/3-3 devnode= serial= manufacturer= product= driver=",
        // The remove carries the last-known attributes (from the change) and is flagged from_table (8).
        "5 remove flags=8 seqnum=11 bus=3 dev=12 id=0781:5581 bcd=0000 class=00/00/00 speed=1500 nif=0 ifs= syspath=/sys/devices/pci0000:00/0000:00:14.0/usb3/3-2 devnode= serial= manufacturer= product=Ultra Fit driver=",
    ]

    @Test("a replayed session reaches each plugin with every field intact")
    func replayFidelity() throws {
        let dir = try TestSupport.pluginDir([
            (TestSupport.plugin("pbtest-recorder"), "librec1.so"),
        ])
        // A second recorder under another name, to show every plugin gets the same events.
        let dir2 = try TestSupport.pluginDir([(TestSupport.plugin("pbtest-recorder"), "librec2.so")])
        let replay = try TestSupport.replayFile(Self.session)
        let out1 = "\(dir)/out", out2 = "\(dir2)/out"
        // Both files export the plugin name "recorder": run them in two runtimes.
        for (d, out) in [(dir, out1), (dir2, out2)] {
            let rt = try TestSupport.runToEnd(pluginDirs: [d], source: ReplaySource(path: replay, pace: 0),
                                              config: ["recorder": ["output": out]])
            #expect(rt.failures.isEmpty)
        }
        for out in [out1, out2] {
            let lines = TestSupport.lines(out)
            #expect(Array(lines.dropLast()) == Self.expected)
            #expect(lines.last == "SHUTDOWN")
        }
    }

    @Test("an event encoded as monitor --json prints it decodes to the same fields (a recorded session replays)")
    func monitorJSONRoundTrip() throws {
        for line in Self.session {
            let record = try EventJSON.decode(line: line, file: "session", line: 1)
            let buf = UnsafeMutableRawPointer.allocate(byteCount: EventLayout.maxSize, alignment: 64)
            defer { buf.deallocate() }
            var w = EventWriter(at: buf, sequence: 42)
            record.write(into: &w)
            let json = EventJSON.encode(UnsafePointer(buf.assumingMemoryBound(to: pb_event.self)))
            var again = try EventJSON.decode(line: json, file: "monitor", line: 1)
            again.delayMilliseconds = record.delayMilliseconds  // not part of an event
            // monitor prints every field: absent ones as zero, empty, or (host-assigned) the host's.
            var expected = again
            for (field, value) in record.values { expected[field] = value }
            #expect(again == expected, "\(json)")
            #expect(again.number(.sequence) == 42)
            if record[.interfaces] == nil { #expect(again[.interfaces] == .interfaces([])) }
        }
    }

    @Test("a recording with the Redis stream's old field names (vid, kseq, bus...) still loads")
    func oldNamesLoad() throws {
        let old = #"{"action":"add","kseq":7,"bus":3,"dev":12,"vid":"0781","pid":"5581","bcd":"0100","class":"ef","subclass":"02","protocol":"01","num_ifaces":3,"ifaces":["080650","030101","ff4201"],"speed_kbps":5000000,"flags":["coldplug"],"syspath":"/sys/devices/pci0000:00/0000:00:14.0/usb3/3-2","devnode":"/dev/bus/usb/003/012","serial":"4C53 \"quoted\" ünïcode","manufacturer":"SanDisk","product":"Ultra Fit","driver":"usb"}"#
        let path = try TestSupport.replayFile([old])
        let fromOld = try ReplaySource(path: path).records
        let fromNew = try ReplaySource(path: try TestSupport.replayFile([Self.session[0]])).records
        #expect(fromOld == fromNew)
    }

    @Test("the device table follows the session: present devices after add, gone after remove")
    func deviceTableFollowsReplay() throws {
        let dir = try TestSupport.tempDir()
        let replay = try TestSupport.replayFile(Self.session)
        let rt = try TestSupport.runToEnd(pluginDirs: [dir], source: ReplaySource(path: replay, pace: 0))
        #expect(rt.deviceTable.syspaths == ["/sys/devices/pci0000:00/0000:00:14.0/usb3/3-3"])
    }

    @Test("bad replay lines are rejected with file, line, field and fix", arguments: [
        (#"{"action":"add"}"#, "syspath"),
        (#"{"action":"plug","syspath":"/s"}"#, "unknown action 'plug'"),
        (#"{"action":"add","syspath":"/s","vendor_id":"zz12"}"#, "vendor_id"),
        (#"{"action":"add","syspath":"/s","busnum":70000}"#, "busnum"),
        (#"{"action":"add","syspath":"/s","vendorid":"1234"}"#, "did you mean 'vendor_id'"),
        (#"{"action":"add","syspath":"/s","interfaces":["0806"]}"#, "interfaces"),
        (#"not json"#, "not valid JSON"),
        (#"[1,2]"#, "expected a JSON object"),
    ])
    func badLines(line: String, fragment: String) throws {
        let path = try TestSupport.replayFile([#"{"action":"add","syspath":"/ok"}"#, line])
        #expect {
            try ReplaySource(path: path)
        } throws: { e in
            let s = "\(e)"
            return s.contains("\(path):2") && s.contains(fragment) && s.contains("fix:")
        }
    }

    @Test("a plugin that falls a whole ring behind gets a lap, a resync with the device table, and the others miss nothing")
    func lappedPluginResyncs() throws {
        let dir = try TestSupport.pluginDir([
            (TestSupport.plugin("pbtest-recorder"), "librecorder.so"), (TestSupport.plugin("pbtest-slow"), "libslow.so"),
        ])
        let fastOut = "\(dir)/fast.out", slowOut = "\(dir)/slow.out"
        var options = RuntimeOptions()
        options.ringSlots = 16
        options.batchSize = 4
        options.pluginConfiguration = ["recorder": ["output": fastOut], "slow": ["output": slowOut, "delay_us": "5000"]]
        let runtime = try Runtime(options: options, logger: TestSupport.logger)
        try runtime.addLibraries(in: [dir])
        #expect(runtime.startWorkers() == 2)
        let total = 1000
        runtime.start(source: PacedSource(count: total, pacedTo: "recorder", runtime: runtime))
        runtime.waitUntilDrained()
        let fast = try #require(runtime.pluginStats.first { $0.name == "recorder" })
        let slow = try #require(runtime.pluginStats.first { $0.name == "slow" })
        #expect(fast.events == UInt64(total) && fast.laps == 0 && fast.missed == 0)
        #expect(slow.laps >= 1 && slow.resyncs == slow.laps)
        #expect(slow.events + slow.missed == UInt64(total), "every event is delivered or counted as missed")
        // The fast plugin saw every sequence in order.
        let seqs = TestSupport.lines(fastOut).dropLast().compactMap { UInt64($0.split(separator: " ")[0]) }
        #expect(seqs == Array(1...UInt64(total)))
        // The slow one got resyncs listing the devices present (8 distinct syspaths).
        let resyncLines = TestSupport.lines(slowOut).filter { $0.hasPrefix("RESYNC ") }
        #expect(!resyncLines.isEmpty)
        #expect(resyncLines.allSatisfy { $0 == "RESYNC 8" }, "\(resyncLines)")
    }
}

/// Publishes `count` device events (adds for distinct devices) waiting only for one named
/// consumer, as a live source would never wait for the others.
struct PacedSource: EventSource {
    let count: Int
    let pacedTo: String
    let runtime: Runtime
    var name: String { "paced" }
    var isFinite: Bool { false }  // no flow control: behave like udev

    func run(_ context: SourceContext) throws {
        for i in 0..<count {
            while runtime.ring.consumerLags.first(where: { $0.name == pacedTo })?.lag ?? 0 > 0 { usleep(50) }
            context.publishDeviceEvent { w in
                w.action = .add
                w.event.pointee.vendor_id = 0x1234
                w.event.pointee.product_id = UInt16(i)
                w.setString(.syspath, "/sys/devices/paced/\(i % 8)")
            }
        }
    }
}
