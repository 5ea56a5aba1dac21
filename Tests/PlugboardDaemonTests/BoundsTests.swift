import Foundation
import Testing

/// The batch ceiling and the host's memory bounds, on the real `plugboard serve` with manifests:
/// each bound set small by configuration, hit, shown on /metrics and logged once with its fix
/// (docs/operations.md, "Memory and batching").
@Suite("Batch ceiling and memory bounds on the real daemon", .serialized)
struct BoundsTests {
    /// A recorder named `name` with a manifest asking for `[worker] batch = 64`, publishing each event.
    static func install(_ name: String, in dir: String, output: String, isolation: String) throws {
        try buildRecorderPlugin(named: name, into: dir)
        let toml = dir + "/../\(name).toml"
        try """
            [plugin]
            name = "\(name)"
            version = "1.0.0"
            library = "lib\(name).so"

            [worker]
            isolation = "\(isolation)"
            batch = 64

            [[match]]
            subsystem = "usb"

            [config]
            output = "\(output)"
            publish = "1"
            batch_log = "1"
            delay_us = "20000"
            """.write(toFile: toml, atomically: true, encoding: .utf8)
        let r = try runProcess(productBinary("plugboard")!, ["pack", toml, "--library", dir + "/lib\(name).so", "-o", dir + "/\(name).pbm"], env: [:])
        guard r.status == 0 else { throw TestFailure("pack failed: \(r.stderr)") }
    }

    /// `count` adds of distinct devices, 1 ms apart.
    static func replay(_ path: String, count: Int) throws {
        let lines = (0..<count).map { i in
            #"{"action":"add","seqnum":\#(100 + i),"busnum":1,"devnum":\#(i + 2),"vendor_id":"0781","product_id":"5581","syspath":"/sys/devices/pci0000:00/0000:00:14.0/usb1/1-\#(i + 1)","devnode":"/dev/bus/usb/001/\#(i + 2)","product":"Ultra","serial":"S\#(i)","driver":"usb","delay_ms":1}"#
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Lines of `text` containing `needle`.
    static func count(_ needle: String, in text: String) -> Int {
        text.split(separator: "\n").filter { $0.contains(needle) }.count
    }

    @Test("performance.batch_size caps a manifest's larger batch; a full device table, output queue and manifest LRU are each counted on /metrics and logged once")
    func boundsOnTheRealDaemon() throws {
        let dir = TempDir()
        let plugins = dir.path + "/plugins"
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        try Self.install("bt0", in: plugins, output: dir.path + "/bt0.txt", isolation: "thread")
        try Self.install("bt1", in: plugins, output: dir.path + "/bt1.txt", isolation: "process")
        try Self.replay(dir.path + "/devices.jsonl", count: 40)
        let d = try DaemonProcess(arguments: [
            "--listen", "127.0.0.1:0", "--set", "plugins.manifests=true", "--set", "plugins.dirs=\(plugins)",
            "--set", "plugins.registry_cache=none", "--set", "source=replay:\(dir.path)/devices.jsonl",
            "--set", "performance.batch_size=4", "--set", "performance.max_devices=2",
            "--set", "plugins.output_queue_records=16", "--set", "plugins.cache_size=1",
            // The recorder in the worker process writes into this root-only temporary directory.
            "--set", "plugins.worker_user=root",
        ])
        let port = try d.port()
        var page = ""
        try d.waitFor("both plugins to get the 40 events") {
            page = try httpGetBlocking(port: port, path: "/metrics").body
            return page.contains("plugboard_plugin_events_total{plugin=\"bt0\"} 40")
                && page.contains("plugboard_plugin_events_total{plugin=\"bt1\"} 40")
        }
        d.signal(SIGTERM)
        #expect(d.waitForExit() == 0)
        let log = d.stderr

        // The ceiling: min(performance.batch_size = 4, [worker] batch = 64), in both isolation modes.
        for p in ["bt0", "bt1"] {
            #expect(page.contains("plugboard_plugin_batch_ceiling{plugin=\"\(p)\"} 4"), "\(p)")
            let text = (try? String(contentsOfFile: dir.path + "/\(p).txt", encoding: .utf8)) ?? ""
            let seen = text.split(separator: "\n").compactMap { $0.hasPrefix("BATCH ") ? Int($0.dropFirst(6)) : nil }
            #expect(seen.reduce(0, +) == 40 && (seen.max() ?? 0) <= 4, "\(p): \(seen)")
            #expect(page.contains("plugboard_plugin_batch_size_count{plugin=\"\(p)\"} \(seen.count)"), "\(p)")
            #expect(page.contains("plugboard_plugin_batch_size_max{plugin=\"\(p)\"} \(seen.max() ?? 0)"), "\(p)")
        }

        // Device table: 2 held, the other 38 devices refused into it (their events reached the plugins).
        #expect(metricValue(page, "plugboard_device_table_capacity") == 2)
        #expect(metricValue(page, "plugboard_devices_present") == 2)
        #expect(metricValue(page, "plugboard_device_table_refused_total") == 38)
        #expect(Self.count("device table full", in: log) == 1, "\(log)")
        #expect(log.contains("fix: raise performance.max_devices"))

        // Output queue: 80 publishes, nothing drains it without Redis: 16 held, 64 refused.
        #expect(metricValue(page, "plugboard_output_queue_capacity_records") == 16)
        #expect(metricValue(page, "plugboard_output_queue_records") == 16)
        #expect(metricValue(page, "plugboard_output_queue_full_total") == 64)
        #expect(Self.count("plugin output queue full", in: log) == 1, "\(log)")
        #expect(log.contains("raise plugins.output_queue_records"))

        // Manifest LRU: two manifests, room for one.
        #expect(metricValue(page, "plugboard_manifest_cache_capacity") == 1)
        #expect(metricValue(page, "plugboard_manifest_cache_entries") == 1)
        #expect(metricValue(page, "plugboard_manifest_cache_evictions_total") == 1)
        #expect(Self.count("manifest cache full", in: log) == 1, "\(log)")
        #expect(log.contains("fix: raise plugins.cache_size"))
    }
}
