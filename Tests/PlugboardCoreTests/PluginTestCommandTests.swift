import Foundation
import Testing

/// `plugboard test` (the real binary) on a real plugin compiled here, packed with `plugboard pack`,
/// against a real replay session, with expected files written by hand.
@Suite("plugboard test (a plugin against a recorded session, expected files)")
struct PluginTestCommandTests {
    static var plugboard: String { "\(TestSupport.productsDir)/plugboard" }

    /// Publishes "ACTION VVVV:PPPP[ from_table]" on topic ACTION per event, then, at shutdown, a
    /// record whose bytes need escaping; logs at debug in init and at warning (with a tab) in shutdown.
    static let source = #"""
        #include <plugboard.h>
        #include <stdio.h>

        PB_HOST_API_DECLARE;

        typedef struct { pb_host *host; unsigned n; } state;
        static state the_state;

        static pb_status on_init(pb_host *h, const pb_config *c, void **s) {
            (void)c;
            the_state.host = h;
            *s = &the_state;
            pb_api->log(h, PB_LOG_DEBUG, "ready");
            return PB_OK;
        }

        static pb_status on_events(void *s, const pb_event *const *ev, uint32_t n) {
            state *p = (state *)s;
            for (uint32_t i = 0; i < n; i++) {
                const pb_event *e = ev[i];
                char buf[64];
                int len = snprintf(buf, sizeof buf, "%s %04x:%04x%s", pb_action_name(e->action), e->vendor_id,
                                   e->product_id, (e->flags & PB_FLAG_FROM_TABLE) ? " from_table" : "");
                pb_api->publish(p->host, pb_action_name(e->action), buf, (size_t)len);
                p->n++;
            }
            return PB_OK;
        }

        static void on_shutdown(void *s) {
            state *p = (state *)s;
            char m[64];
            snprintf(m, sizeof m, "saw %u events\tdone", p->n);
            pb_api->log(p->host, PB_LOG_WARNING, m);
            pb_api->publish(p->host, "bytes", "a\nb\\\x01", 5);
        }

        static const pb_plugin_api plugin = {sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR),
                                             "rec", "1.0.0", on_init, on_events, NULL, NULL, NULL, on_shutdown};

        PB_PLUGIN_ENTRY(in, out) {
            PB_HOST_API_INIT(in);
            return pb_negotiate_default(in, out, &plugin);
        }
        """#

    static let manifest = """
        [plugin]
        name = "rec"
        version = "1.0.0"
        library = "librec.so"
        abi = "1.0"

        [[match]]
        subsystem = "usb"
        """

    static let session = """
        # a keyboard plugged in and out (the remove is completed from the device table), then a flash drive
        {"action":"add","seqnum":1,"busnum":1,"devnum":3,"vendor_id":"046d","product_id":"c31c","syspath":"/sys/devices/usb1/1-1"}
        {"action":"remove","seqnum":2,"syspath":"/sys/devices/usb1/1-1","delay_ms":20}

        {"action":"add","seqnum":3,"busnum":1,"devnum":4,"vendor_id":"0781","product_id":"5581","syspath":"/sys/devices/usb1/1-2"}
        """

    static let expectedPublished = """
        rec add add 046d:c31c
        rec remove remove 046d:c31c from_table
        rec add add 0781:5581
        rec bytes a\\nb\\\\\\x01

        """

    static let expectedLog = """
        rec debug ready
        rec warning saw 3 events\\tdone

        """

    /// A directory with librec.so, rec.pbm and session.jsonl (no expected files yet).
    static func plugin() throws -> String {
        let dir = try TestSupport.tempDir("pbtest")
        try source.write(toFile: "\(dir)/rec.c", atomically: true, encoding: .utf8)
        try manifest.write(toFile: "\(dir)/plugin.toml", atomically: true, encoding: .utf8)
        try session.write(toFile: "\(dir)/session.jsonl", atomically: true, encoding: .utf8)
        let cc = try TestSupport.run("/usr/bin/cc", ["-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                                                     "-fvisibility=hidden", "-I", "\(TestSupport.packageRoot)/SDK/include",
                                                     "-o", "\(dir)/librec.so", "\(dir)/rec.c"])
        guard cc.status == 0 else { throw TestFailure("cc failed: \(cc.output)") }
        let pack = try TestSupport.run(plugboard, ["pack", "\(dir)/plugin.toml", "--library", "\(dir)/librec.so",
                                                   "-o", "\(dir)/rec.pbm"])
        guard pack.status == 0 else { throw TestFailure("pack failed: \(pack.output)") }
        return dir
    }

    static func writeExpected(_ dir: String, published: String = expectedPublished, log: String = expectedLog) throws {
        try FileManager.default.createDirectory(atPath: "\(dir)/session.expected", withIntermediateDirectories: true)
        try published.write(toFile: "\(dir)/session.expected/published.txt", atomically: true, encoding: .utf8)
        try log.write(toFile: "\(dir)/session.expected/log.txt", atomically: true, encoding: .utf8)
    }

    @Test("output that matches the expected files passes, for the directory and for the .so alone")
    func matchingOutputPasses() throws {
        let dir = try Self.plugin()
        try Self.writeExpected(dir)
        let byDir = try TestSupport.run(Self.plugboard, ["test", dir])
        #expect(byDir.status == 0, "\(byDir.output)")
        #expect(byDir.output.contains("ok: rec against \(dir)/session.jsonl: 4 records, 2 log lines as expected"), "\(byDir.output)")
        // The .so alone: its manifest beside it, the session and expected files found beside it too.
        let bySo = try TestSupport.run(Self.plugboard, ["test", "librec.so"], cwd: dir)
        #expect(bySo.status == 0, "\(bySo.output)")
    }

    @Test("a difference fails with exit 1 and a unified diff naming the expected file; nothing is rewritten")
    func differenceFailsWithDiff() throws {
        let dir = try Self.plugin()
        let wrong = Self.expectedPublished.replacingOccurrences(of: "rec add add 0781:5581", with: "rec add add 0781:5567")
        try Self.writeExpected(dir, published: wrong)
        let r = try TestSupport.run(Self.plugboard, ["test", dir])
        #expect(r.status == 1, "\(r.output)")
        let published = "\(dir)/session.expected/published.txt"
        #expect(r.output.contains("--- \(published)\n+++ \(published) (this run)\n@@ -1,4 +1,4 @@\n"
            + " rec add add 046d:c31c\n rec remove remove 046d:c31c from_table\n-rec add add 0781:5567\n+rec add add 0781:5581\n"
            + " rec bytes a\\nb\\\\\\x01\n"), "\(r.output)")
        #expect(!r.output.contains("log.txt"), "the log matched, so it is not diffed: \(r.output)")
        #expect(r.output.contains("FAILED: rec against \(dir)/session.jsonl differs from \(dir)/session.expected (if the change is intended: rerun with --update)"))
        #expect(try String(contentsOfFile: published, encoding: .utf8) == wrong, "a failing test leaves the expected file alone")
    }

    @Test("without expected files the test cannot run (exit 2, fix: --update); --update writes them and the next run passes")
    func updateWritesExpectedFiles() throws {
        let dir = try Self.plugin()
        let missing = try TestSupport.run(Self.plugboard, ["test", dir])
        #expect(missing.status == 2, "\(missing.output)")
        #expect(missing.output.contains("\(dir)/session.expected/published.txt: no expected file (fix: run `plugboard test \(dir) --update` once"),
                "\(missing.output)")

        let update = try TestSupport.run(Self.plugboard, ["test", dir, "--update"])
        #expect(update.status == 0, "\(update.output)")
        #expect(try String(contentsOfFile: "\(dir)/session.expected/published.txt", encoding: .utf8) == Self.expectedPublished)
        #expect(try String(contentsOfFile: "\(dir)/session.expected/log.txt", encoding: .utf8) == Self.expectedLog)

        let again = try TestSupport.run(Self.plugboard, ["test", dir])
        #expect(again.status == 0, "\(again.output)")

        // --expect DIR puts them elsewhere.
        let elsewhere = try TestSupport.tempDir("expect")
        let other = try TestSupport.run(Self.plugboard, ["test", dir, "--expect", "\(elsewhere)/x", "--update"])
        #expect(other.status == 0, "\(other.output)")
        #expect(TestSupport.lines("\(elsewhere)/x/log.txt") == ["rec debug ready", "rec warning saw 3 events\\tdone"])
    }

    @Test("a plugin the host refuses stops the test with exit 2 and the loader's reason")
    func refusedPluginCannotRun() throws {
        let dir = try Self.plugin()
        try Self.writeExpected(dir)
        // Not an ELF file any more: the manifest still names it.
        try "not a library".write(toFile: "\(dir)/librec.so", atomically: true, encoding: .utf8)
        let r = try TestSupport.run(Self.plugboard, ["test", dir])
        #expect(r.status == 2, "\(r.output)")
        #expect(r.output.contains("plugboard test: "), "\(r.output)")
        #expect(r.output.contains("librec.so"), "\(r.output)")
    }

    @Test("a bad session line is reported with the session's own file and line")
    func badSessionNamesTheFile() throws {
        let dir = try Self.plugin()
        try Self.writeExpected(dir)
        try (Self.session + "\n{\"action\":\"plug\",\"syspath\":\"/sys/x\"}\n").write(toFile: "\(dir)/session.jsonl", atomically: true, encoding: .utf8)
        let r = try TestSupport.run(Self.plugboard, ["test", dir])
        #expect(r.status == 2, "\(r.output)")
        #expect(r.output.contains("\(dir)/session.jsonl:6: action: unknown action 'plug'"), "\(r.output)")
    }
}
