import CPlugboard
import Foundation
import PlugboardCore
import Testing

/// plugboard.h documents what the host does with each `save_state` answer: it offers 4096 bytes
/// first, retries with exactly `*len` bytes after PB_ERR_FULL with a larger `*len`, gives up after
/// 8 calls, and carries nothing over for any other answer. A plugin built here answers as told by
/// its `mode` configuration and publishes the capacities it was offered.
@Suite("save_state as plugboard.h documents it")
struct SaveStateContractTests {
    static let source = #"""
        #include <plugboard.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>

        PB_HOST_API_DECLARE;

        typedef struct { pb_host *host; char mode[32]; size_t need; char caps[256]; } state;

        static pb_status on_init(pb_host *h, const pb_config *c, void **out) {
            (void)c;
            state *s = (state *)calloc(1, sizeof *s);
            if (!s) return PB_ERR_NOMEM;
            s->host = h;
            const char *m = pb_api->config_get(h, "mode");
            snprintf(s->mode, sizeof s->mode, "%s", m ? m : "");
            const char *n = pb_api->config_get(h, "need");
            s->need = n ? (size_t)strtoul(n, NULL, 10) : 0;
            *out = s;
            return PB_OK;
        }

        static pb_status on_events(void *st, const pb_event *const *e, uint32_t n) { (void)st; (void)e; (void)n; return PB_OK; }

        static pb_status on_save(void *st, void *buf, size_t cap, size_t *len) {
            state *s = (state *)st;
            size_t used = strlen(s->caps);
            snprintf(s->caps + used, sizeof s->caps - used, "%s%zu", used ? "," : "", cap);
            if (strcmp(s->mode, "need") == 0) {
                *len = s->need;
                if (cap < s->need) return PB_ERR_FULL;
                memset(buf, 0xab, s->need);
                return PB_OK;
            }
            if (strcmp(s->mode, "full-same") == 0) { *len = cap; return PB_ERR_FULL; }
            if (strcmp(s->mode, "grow") == 0) { *len = cap + 1; return PB_ERR_FULL; }
            return PB_ERR_GENERIC;
        }

        static pb_status on_restore(void *st, const void *d, size_t len) { (void)st; (void)d; (void)len; return PB_OK; }

        static void on_shutdown(void *st) {
            state *s = (state *)st;
            pb_api->publish(s->host, "caps", s->caps, strlen(s->caps));
            free(s);
        }

        static const pb_plugin_api plugin = {sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR),
                                             "saver", "1.0.0", on_init, on_events, NULL, on_save, on_restore, on_shutdown};

        PB_PLUGIN_ENTRY(in, out) {
            PB_HOST_API_INIT(in);
            return pb_negotiate_default(in, out, &plugin);
        }
        """#

    /// (mode, need, bytes carried over or nil, capacities offered in order)
    @Test("the host's answer to each save_state reply", arguments: [
        ("need", "100", 100, "4096"),                     // fits the first offer
        ("need", "10000", 10000, "4096,10000"),           // PB_ERR_FULL, *len larger: one retry with exactly *len
        ("full-same", "0", nil, "4096"),                  // PB_ERR_FULL without a larger *len: nothing carried over
        ("grow", "0", nil, "4096,4097,4098,4099,4100,4101,4102,4103"), // still full after 8 calls: gives up
        ("error", "0", nil, "4096"),                      // any other status: nothing carried over
    ] as [(String, String, Int?, String)])
    func saveStateReplies(mode: String, need: String, carried: Int?, offered: String) throws {
        let dir = try TestSupport.tempDir("save")
        try Self.source.write(toFile: "\(dir)/saver.c", atomically: true, encoding: .utf8)
        let cc = try TestSupport.run("/usr/bin/cc", ["-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-fvisibility=hidden",
                                                     "-I", "\(TestSupport.packageRoot)/SDK/include", "-o", "\(dir)/libsaver.so", "\(dir)/saver.c"])
        try #require(cc.status == 0, "\(cc.output)")
        let queue = OutputQueue()
        let plugin = try PluginLoader.open("\(dir)/libsaver.so")
        let context = PluginContext(name: plugin.name, configuration: ["mode": mode, "need": need], outputQueue: queue,
                                    deviceTable: DeviceTable(), logger: TestSupport.logger)
        try plugin.initialize(context: context)
        let saved = plugin.saveState()
        #expect(saved?.count == carried, "\(mode) \(need)")
        if let saved, carried != nil { #expect(saved.allSatisfy { $0 == 0xab }, "the plugin's bytes, as written") }
        plugin.shutdown()
        let caps = queue.drain().first { $0.topic == "caps" }.map { String(decoding: $0.payload, as: UTF8.self) }
        #expect(caps == offered, "capacities offered to save_state")
    }
}
