import Foundation
import Logging
import PlugboardCore
import Synchronization
import Testing

/// A C plugin, "hot", built by the system cc from the header alone in two versions: it writes
/// "v<version> <sequence> <count>" per event, carries its count through save/restore_state and
/// writes "v<version> shutdown <count>" when shut down.
private enum HotPlugin {
    static let source = """
        #include <plugboard.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        static const pb_host_api *host_api;
        typedef struct { FILE *out; unsigned long long count; } st;
        static pb_status on_init(pb_host *host, const pb_config *config, void **out) {
            (void)config;
        #ifdef FAIL_INIT
            host_api->log(host, PB_LOG_ERROR, "this build refuses to start");
            (void)out;
            return PB_ERR_CONFIG;
        #else
            const char *path = host_api->config_get(host, "output");
            st *s = calloc(1, sizeof *s);
            if (!s || !path || !(s->out = fopen(path, "a"))) return PB_ERR_CONFIG;
            *out = s;
            return PB_OK;
        #endif
        }
        static pb_status on_events(void *p, const pb_event *const *events, uint32_t count) {
            st *s = p;
            for (uint32_t i = 0; i < count; i++) {
                s->count++;
                fprintf(s->out, "v%s %llu %llu\\n", VERSION, (unsigned long long)events[i]->sequence, s->count);
            }
            fflush(s->out);
            return PB_OK;
        }
        static pb_status save(void *p, void *buf, size_t cap, size_t *len) {
            st *s = p;
            *len = sizeof s->count;
            if (cap < *len) return PB_ERR_FULL;
            memcpy(buf, &s->count, sizeof s->count);
            return PB_OK;
        }
        static pb_status restore(void *p, const void *data, size_t len) {
            st *s = p;
            if (len != sizeof s->count) return PB_ERR_INVALID;
            memcpy(&s->count, data, len);
            return PB_OK;
        }
        static void on_shutdown(void *p) {
            st *s = p;
            fprintf(s->out, "v%s shutdown %llu\\n", VERSION, s->count);
            fclose(s->out);
            free(s);
        }
        static const pb_plugin_api plugin = {
            sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR), NAME, VERSION,
            on_init, on_events, NULL, save, restore, on_shutdown,
        };
        PB_PLUGIN_ENTRY(in, out) {
            pb_status status = pb_negotiate_default(in, out, &plugin);
            if (status == PB_OK) host_api = in->host_api;
            return status;
        }
        """

    /// Builds version `version` into `path`.
    static func build(_ path: String, version: String, name: String = "hot", failInit: Bool = false) throws {
        let dir = try TestSupport.tempDir("hot-src")
        try source.write(toFile: "\(dir)/hot.c", atomically: true, encoding: .utf8)
        var args = ["-std=c99", "-Wall", "-Wextra", "-shared", "-fPIC", "-I", "\(TestSupport.packageRoot)/SDK/include",
                    "-DVERSION=\"\(version)\"", "-DNAME=\"\(name)\"", "\(dir)/hot.c", "-o", path]
        if failInit { args.insert("-DFAIL_INIT", at: 0) }
        let r = try TestSupport.run("/usr/bin/cc", args)
        guard r.status == 0 else { throw TestFailure("cc failed: \(r.output)") }
    }
}

/// Keeps every log line at every level, so log statements (and their metadata) are evaluated.
private final class LogLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    var all: [String] { lock.withLock { lines } }
    func append(_ s: String) { lock.withLock { lines.append(s) } }
    var logger: Logger {
        Logger(label: "hot-reload-test") { _ in TestSupport.TraceHandler(sink: { [self] in self.append($0) }) }
    }
}


@Suite("Hot reload", .serialized)
struct HotReloadTests {
    /// Every log line of the runtimes these tests start (all levels: every statement runs).
    private let log = LogLines()

    /// A running runtime with "hot" v1 from `dir`, fed by a `FeedSource`.
    private func start(_ dir: String, output: String) throws -> (Runtime, FeedSource) {
        var options = RuntimeOptions()
        options.pluginConfiguration = ["hot": ["output": output]]
        let runtime = try Runtime(options: options, logger: log.logger)
        try runtime.addLibraries(in: [dir])
        runtime.startWorkers()
        let feed = FeedSource()
        runtime.start(source: feed)
        return (runtime, feed)
    }

    private func waitForLines(_ path: String, _ n: Int) -> [String] {
        let deadline = Date().addingTimeInterval(20)
        var lines = TestSupport.lines(path)
        while lines.filter({ !$0.contains("shutdown") }).count < n && Date() < deadline {
            usleep(2000)
            lines = TestSupport.lines(path)
        }
        return lines
    }

    @Test("a new build replaces the running one mid-stream: every event once, in order, and the state carried over")
    func reloadKeepsEveryEventAndTheState() throws {
        let dir = try TestSupport.tempDir("hot")
        try HotPlugin.build("\(dir)/libhot.so", version: "1")
        let v2 = try TestSupport.tempDir("hot-v2") + "/libhot.so"
        try HotPlugin.build(v2, version: "2")
        let out = "\(dir)/out"
        let (runtime, feed) = try start(dir, output: out)
        // Events keep coming, one every 50 µs, while the plugin is replaced.
        feed.pace.store(50, ordering: .relaxed)
        feed.wanted.store(6000, ordering: .releasing)
        _ = waitForLines(out, 500)
        let replaced = try runtime.reload(pluginNamed: "hot", from: v2)
        #expect(replaced.version == "2")
        let lines = waitForLines(out, 6000)
        _ = runtime.stop(deadline: .seconds(5))

        let events = lines.filter { !$0.contains("shutdown") }.map { $0.split(separator: " ") }
        #expect(events.count == 6000)
        #expect(events.map { UInt64($0[1])! } == Array(1...6000), "every event once, in order, across the swap")
        #expect(events.map { UInt64($0[2])! } == Array(1...6000), "v2's count goes on from v1's (save/restore_state)")
        let v1 = events.filter { $0[0] == "v1" }.count
        #expect(v1 >= 500 && v1 < 6000, "v1 saw the first \(v1), v2 the rest")
        #expect(events.dropFirst(v1).allSatisfy { $0[0] == "v2" })
        #expect(lines.contains("v1 shutdown \(v1)"), "the old build was shut down after its last event")
        let stats = try #require(runtime.pluginStats.first)
        #expect(stats.version == "2" && stats.events == 6000, "\(stats)")
        #expect(log.all.contains { $0.contains("plugin reloaded") && $0.contains("from_version=1") && $0.contains("state=transferred")
            && $0.contains("to_version=2") }, "\(log.all.filter { $0.contains("reload") })")
    }

    @Test("a replacement that cannot run is refused with the file and the reason, and the running build keeps going",
          arguments: ["not-elf", "init-fails", "renamed"])
    func aBadReplacementLeavesTheRunningOne(kind: String) throws {
        let dir = try TestSupport.tempDir("hot")
        try HotPlugin.build("\(dir)/libhot.so", version: "1")
        let bad = try TestSupport.tempDir("hot-bad") + "/libhot.so"
        switch kind {
        case "not-elf": try "not a shared object".write(toFile: bad, atomically: true, encoding: .utf8)
        case "init-fails": try HotPlugin.build(bad, version: "2", failInit: true)
        default: try HotPlugin.build(bad, version: "2", name: "cold")
        }
        let out = "\(dir)/out"
        let (runtime, feed) = try start(dir, output: out)
        feed.wanted.store(100, ordering: .releasing)
        _ = waitForLines(out, 100)
        #expect {
            try runtime.reload(pluginNamed: "hot", from: bad)
        } throws: { e in
            let m = "\(e)"
            let reason = ["not-elf": "not an ELF", "init-fails": "init", "renamed": "named 'cold', not 'hot'"][kind]!
            return m.contains(bad) && m.contains(reason)
        }
        feed.wanted.store(200, ordering: .releasing)
        let lines = waitForLines(out, 200)
        _ = runtime.stop(deadline: .seconds(5))
        let events = lines.filter { !$0.contains("shutdown") }
        #expect(events.count == 200 && events.allSatisfy { $0.hasPrefix("v1 ") }, "v1 got every event: \(events.suffix(2))")
        #expect(runtime.pluginStats.first?.version == "1")
    }

    @Test("the watcher reloads a plugin whose .so is replaced in its directory (rename into place) at once, without the quiet period")
    func watcherReloadsOnReplace() throws {
        let dir = try TestSupport.tempDir("hot")
        try HotPlugin.build("\(dir)/libhot.so", version: "1")
        let out = "\(dir)/out"
        let (runtime, feed) = try start(dir, output: out)
        // A quiet period far longer than this test may wait: only a reload that skips it passes.
        let watcher = try PluginWatcher(runtime: runtime, directories: [dir], settle: .seconds(600), logger: log.logger)
        feed.wanted.store(100, ordering: .releasing)
        _ = waitForLines(out, 100)
        // As an installer does it: build beside, rename over.
        try HotPlugin.build("\(dir)/.libhot.so.new", version: "2")
        #expect(rename("\(dir)/.libhot.so.new", "\(dir)/libhot.so") == 0)
        let deadline = Date().addingTimeInterval(20)
        // The watcher counts a reload once `reload` returned, just after the new worker took over.
        while (runtime.pluginStats.first?.version != "2" || watcher.counts.reloads.load(ordering: .relaxed) != 1)
            && Date() < deadline { usleep(5000) }
        #expect(runtime.pluginStats.first?.version == "2")
        #expect(watcher.counts.reloads.load(ordering: .relaxed) == 1)
        feed.wanted.store(200, ordering: .releasing)
        let lines = waitForLines(out, 200)
        watcher.stop()
        _ = runtime.stop(deadline: .seconds(5))
        let events = lines.filter { !$0.contains("shutdown") }.map { $0.split(separator: " ") }
        #expect(events.map { UInt64($0[1])! } == Array(1...200))
        #expect(events.last?[0] == "v2")
    }
}
