import Foundation
import PlugboardCore
import Testing

@testable import PlugboardDaemon
@testable import PlugboardHost

/// Runs `promtool ARGS` with `input` on stdin.
func promtool(_ args: [String], input: String? = nil) throws -> ProcessResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/promtool")
    p.arguments = args
    let inPipe = Pipe(), outPipe = Pipe()
    p.standardInput = inPipe
    p.standardOutput = outPipe
    p.standardError = outPipe
    try p.run()
    if let input { inPipe.fileHandleForWriting.write(Data(input.utf8)) }
    try inPipe.fileHandleForWriting.close()
    let out = outPipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return ProcessResult(status: p.terminationStatus, stdout: String(decoding: out, as: UTF8.self), stderr: "")
}

/// Metric family names declared (# TYPE) in a Prometheus text page, with their types.
func families(_ page: String) -> [String: String] {
    var out: [String: String] = [:]
    for line in page.split(separator: "\n") where line.hasPrefix("# TYPE ") {
        let f = line.split(separator: " ")
        if f.count == 4 { out[String(f[2])] = String(f[3]) }
    }
    return out
}

/// One scrape of a real daemon that ran 3000 synthetic events through two real recorder plugins.
func scrapeRealDaemon() throws -> String {
    let dir = TempDir()
    try buildRecorderPlugin(named: "m0", into: dir.path)
    try buildRecorderPlugin(named: "m1", into: dir.path)
    let d = try DaemonProcess(arguments: [
        "--source", "synthetic:3000", "--plugins", dir.path, "--listen", "127.0.0.1:0",
        "--plugin-config", "m0.output=\(dir.path)/m0.txt", "--plugin-config", "m1.output=\(dir.path)/m1.txt",
    ])
    let port = try d.port()
    var page = ""
    try d.waitFor("both plugins to process 3000 events") {
        page = try httpGetBlocking(port: port, path: "/metrics").body
        return page.contains("plugboard_plugin_events_total{plugin=\"m0\"} 3000")
            && page.contains("plugboard_plugin_events_total{plugin=\"m1\"} 3000")
    }
    d.signal(SIGTERM)
    #expect(d.waitForExit() == 0)
    return page
}

@Suite("Metrics", .serialized)
struct MetricsTests {
    @Test("/metrics of a real daemon passes promtool check metrics and has the latency histograms and quantiles")
    func realScrapeIsValid() async throws {
        try await onTestThread {
            let page = try scrapeRealDaemon()
            let check = try promtool(["check", "metrics"], input: page)
            #expect(check.status == 0, "promtool: \(check.stdout)")
            let fams = families(page)
            #expect(fams["plugboard_event_latency_seconds"] == "histogram")
            #expect(fams["plugboard_plugin_callback_duration_seconds"] == "histogram")
            #expect(fams["plugboard_event_latency_quantiles_seconds"] == "summary")
            #expect(fams["plugboard_plugin_callback_duration_quantiles_seconds"] == "summary")
            // Every event reached both plugins: 6000 latency samples; the +Inf bucket equals the count.
            #expect(metricValue(page, "plugboard_event_latency_seconds_count") == 6000)
            #expect(page.contains("plugboard_event_latency_seconds_bucket{le=\"+Inf\"} 6000"))
            #expect(page.contains("plugboard_event_latency_seconds_bucket{le=\"0.08\"}"))
            for q in ["0.5", "0.95", "0.99"] {
                #expect(page.contains("plugboard_event_latency_quantiles_seconds{quantile=\"\(q)\"}"))
                #expect(page.contains("plugboard_plugin_callback_duration_quantiles_seconds{plugin=\"m0\",quantile=\"\(q)\"}"))
            }
            #expect(metricValue(page, "plugboard_events_published_total") == 3000)
            // The synthetic source alternates add and remove over 16 devices: 1504 adds, 1496 removes.
            #expect(page.contains("plugboard_events_total{action=\"add\"} 1504"), "\(page)")
            #expect(page.contains("plugboard_events_total{action=\"remove\"} 1496"))
            #expect(page.contains("plugboard_events_total{action=\"change\"} 0"))
            // The recorder counts its events through the host API (counter_add "events").
            #expect(page.contains("plugboard_plugin_metric_total{plugin=\"m0\",name=\"events\"} 3000"), "\(page)")
            #expect(page.contains("plugboard_plugin_metric{plugin=\"m1\",name=\"last_batch\"}"))
            #expect((metricValue(page, "plugboard_resident_memory_bytes") ?? 0) > 1_000_000)
            #expect(page.contains("plugboard_plugin_load_seconds{plugin=\"m0\"}"))
            #expect(metricValue(page, "plugboard_worker_start_duration_seconds_count") == 2, "one sample per plugin")
        }
    }

    @Test("every exported family is documented in docs/operations.md with its type")
    func everyMetricDocumented() throws {
        let docs = try String(contentsOfFile: packageRoot + "/docs/operations.md", encoding: .utf8)
        let page = DaemonMetrics(version: "t").scrape(RuntimeStatus())
        for (name, type) in families(page) {
            #expect(docs.contains("`\(name)`"), "\(name) is not in docs/operations.md")
            // Its row in the metrics table (the name may also be mentioned elsewhere, e.g. in a key's row).
            let row = docs.split(separator: "\n").first { $0.hasPrefix("| `\(name)`") } ?? ""
            #expect(row.contains(type), "docs row for \(name) does not say \(type)")
        }
    }

    @Test("quantiles and Prometheus buckets agree with the core histogram's values")
    func histogramSnapshotMath() {
        let h = LatencyHistogram()
        for v in 1...1000 { h.record(UInt64(v) * 1000) }  // 1 µs ... 1 ms, uniform
        let s = HistogramSnapshot(h)
        #expect(s.count == 1000)
        let p50 = s.quantile(0.5)!, p99 = s.quantile(0.99)!
        #expect(abs(p50 - 500_000) / 500_000 < 0.07)
        #expect(abs(p99 - 990_000) / 990_000 < 0.07)
        let cumulative = s.cumulative(upperBounds: [0.0001, 0.001, 1])
        #expect(cumulative.last == 1000)
        #expect(abs(Double(cumulative[0]) - 100) <= 10)  // values <= 100 µs
        #expect(abs(Double(s.sumNanoseconds) - 500_500_000) / 500_500_000 < 0.07)
        #expect(HistogramSnapshot.empty.quantile(0.5) == nil)
    }

    @Test("plugin load times become a per-plugin gauge and a histogram")
    func loadTimes() {
        let status = RuntimeStatus(plugins: [
            PluginStatus(name: "a", version: "1", state: .running, loadTime: .milliseconds(250)),
            PluginStatus(name: "b", version: "1", state: .failed),
        ])
        let page = DaemonMetrics(version: "t").scrape(status)
        #expect(page.contains("plugboard_plugin_load_seconds{plugin=\"a\"} 0.25"))
        #expect(!page.contains("plugboard_plugin_load_seconds{plugin=\"b\"}"))
        #expect(metricValue(page, "plugboard_plugin_load_duration_seconds_count") == 1)
        #expect(metricValue(page, "plugboard_plugins_active") == 1)
    }

    @Test("the last shutdown's duration is exported from the state file")
    func lastShutdownExported() throws {
        let m = DaemonMetrics(version: "t")
        m.recordLastShutdown(ShutdownRecord(seconds: 3.5, completed: false))
        let page = m.scrape(RuntimeStatus())
        #expect(metricValue(page, "plugboard_last_shutdown_duration_seconds") == 3.5)
        #expect(metricValue(page, "plugboard_last_shutdown_completed") == 0)
    }
}

@Suite("Monitoring files")
struct MonitoringFilesTests {
    /// Every `plugboard_*` metric name in `text`, with histogram/summary sample suffixes removed.
    func queriedMetrics(_ text: String, families fams: [String: String]) -> Set<String> {
        let regex = try! NSRegularExpression(pattern: "plugboard_[a-z0-9_]+")
        var out = Set<String>()
        for m in regex.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
            var name = String(text[Range(m.range, in: text)!])
            for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
                let base = String(name.dropLast(suffix.count))
                if fams[base] == "histogram" || fams[base] == "summary" { name = base }
            }
            out.insert(name)
        }
        return out
    }

    @Test("promtool check rules accepts monitoring/alert-rules.yml")
    func rulesValid() throws {
        let r = try promtool(["check", "rules", packageRoot + "/monitoring/alert-rules.yml"])
        #expect(r.status == 0, "promtool: \(r.stdout)")
        #expect(r.stdout.contains("SUCCESS"))
    }

    @Test("promtool test rules: every alert fires on the series that should fire it and stays quiet on the others")
    func rulesUnitTests() throws {
        let r = try promtool(["test", "rules", packageRoot + "/monitoring/alert-rules.test.yml"])
        #expect(r.status == 0, "promtool: \(r.stdout) \(r.stderr)")
        #expect(r.stdout.contains("SUCCESS"))
        // Every alert in the rules file has a test.
        let rules = try String(contentsOfFile: packageRoot + "/monitoring/alert-rules.yml", encoding: .utf8)
        let tests = try String(contentsOfFile: packageRoot + "/monitoring/alert-rules.test.yml", encoding: .utf8)
        let newer = ["PlugboardEventsDropped", "PlugboardPluginOutputRefused", "PlugboardNotReady", "PlugboardAbsent",
                     "PlugboardAbsentEverywhere", "PlugboardPluginCrashing", "PlugboardPluginQuarantined"]
        for name in newer {
            #expect(rules.contains("alert: \(name)\n"), "\(name) is not in the rules")
            #expect(tests.contains("alertname: \(name)\n"), "\(name) has no unit test")
        }
    }

    @Test("the dashboard takes its data source from a template variable (file provisioning works)")
    func dashboardDatasourceVariable() throws {
        let text = try String(contentsOfFile: packageRoot + "/monitoring/grafana-dashboard.json", encoding: .utf8)
        #expect(!text.contains("DS_PROMETHEUS") && !text.contains("__inputs"), "an import-only input breaks provisioning")
        let dashboard = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let variables = ((dashboard["templating"] as? [String: Any])?["list"] as? [[String: Any]]) ?? []
        #expect(variables.contains { $0["name"] as? String == "datasource" && $0["type"] as? String == "datasource" })
        var uids: [String] = []
        func walk(_ v: Any) {
            if let d = v as? [String: Any] {
                if let ds = d["datasource"] as? [String: Any], let uid = ds["uid"] as? String { uids.append(uid) }
                d.values.forEach(walk)
            } else if let a = v as? [Any] { a.forEach(walk) }
        }
        walk(dashboard)
        #expect(!uids.isEmpty && uids.allSatisfy { $0 == "${datasource}" }, "\(Set(uids))")
    }

    @Test("every metric the dashboard and the alert rules query is one a real daemon exports")
    func queriedMetricsExist() async throws {
        try await onTestThread {
            let page = try scrapeRealDaemon()
            let fams = families(page)
            let dashboardText = try String(contentsOfFile: packageRoot + "/monitoring/grafana-dashboard.json", encoding: .utf8)
            let dashboard = try JSONSerialization.jsonObject(with: Data(dashboardText.utf8))
            var exprs: [String] = []
            func walk(_ v: Any) {
                if let d = v as? [String: Any] {
                    for (k, x) in d { if k == "expr", let s = x as? String { exprs.append(s) } else { walk(x) } }
                } else if let a = v as? [Any] { a.forEach(walk) }
            }
            walk(dashboard)
            #expect(exprs.count >= 6, "the dashboard has too few queries")
            let dashboardMetrics = queriedMetrics(exprs.joined(separator: "\n"), families: fams)
            let rules = try String(contentsOfFile: packageRoot + "/monitoring/alert-rules.yml", encoding: .utf8)
            let ruleMetrics = queriedMetrics(rules, families: fams)
            #expect(!dashboardMetrics.isEmpty && !ruleMetrics.isEmpty)
            for name in dashboardMetrics.union(ruleMetrics).sorted() {
                #expect(fams[name] != nil, "\(name) is queried but not exported")
            }
            // The panels the operators asked for.
            for needed in ["plugboard_event_latency_seconds", "plugboard_events_published_total", "plugboard_plugin_lag_events",
                           "plugboard_redis_up", "plugboard_plugin_errors_total", "plugboard_resident_memory_bytes",
                           "plugboard_plugin_crashes_total", "plugboard_plugin_quarantined"] {
                #expect(dashboardMetrics.contains(needed), "dashboard lacks \(needed)")
            }
            for needed in ["plugboard_plugin_load_seconds", "plugboard_event_latency_seconds", "plugboard_resident_memory_bytes",
                           "plugboard_last_shutdown_duration_seconds", "plugboard_redis_up", "plugboard_plugin_laps_total",
                           "plugboard_plugin_crashes_total", "plugboard_plugin_quarantined"] {
                #expect(ruleMetrics.contains(needed), "alert rules lack \(needed)")
            }
        }
    }
}
