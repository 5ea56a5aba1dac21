import Foundation
import PlugboardCore
import PlugboardReplay
import Testing

/// The header promises "any C99 or C++ compiler": these build plugins and translation
/// units with the system compilers against `SDK/include` alone, as a plugin author would.
@Suite("C++ plugins and the header's language modes")
struct CxxPluginTests {
    static let include = "\(TestSupport.packageRoot)/SDK/include"

    /// A C++ plugin written the way plugin-guide.md documents it: `PB_PLUGIN_ENTRY` and a
    /// static table, nothing declared `extern "C"` by hand. It writes each event in the
    /// recorder's format so its output can be compared with the C recorder's.
    static let documentedPlugin = #"""
        #include <plugboard.h>
        #include <cstdio>
        #include <string>

        namespace {
        const pb_host_api *g_api = nullptr;

        struct State { std::FILE *out; };

        pb_status init(pb_host *h, const pb_config *, void **s) {
            if (!PB_HAS_FIELD(g_api, pb_host_api, config_get)) return PB_ERR_ABI;
            const char *path = g_api->config_get(h, "output");
            if (!path) return PB_ERR_CONFIG;
            State *st = new State{std::fopen(path, "w")};
            if (!st->out) { delete st; return PB_ERR_CONFIG; }
            *s = st;
            return PB_OK;
        }

        pb_status events(void *s, const pb_event *const *ev, uint32_t n) {
            std::FILE *f = static_cast<State *>(s)->out;
            for (uint32_t i = 0; i < n; i++) {
                const pb_event *e = ev[i];
                std::string ifs;
                char buf[8];
                for (unsigned k = 0; k < e->interfaces_len; k++) {
                    std::snprintf(buf, sizeof buf, "%s%02x%02x%02x", k ? "," : "", e->interfaces[k].iface_class,
                                  e->interfaces[k].iface_subclass, e->interfaces[k].iface_protocol);
                    ifs += buf;
                }
                std::fprintf(f, "%llu %s flags=%u seqnum=%llu bus=%u dev=%u id=%04x:%04x bcd=%04x class=%02x/%02x/%02x speed=%u nif=%u ifs=%s",
                    (unsigned long long)e->sequence, pb_action_name(e->action), e->flags, (unsigned long long)e->kernel_seqnum,
                    e->busnum, e->devnum, e->vendor_id, e->product_id, e->bcd_device, e->device_class, e->device_subclass,
                    e->device_protocol, e->speed_kbps, e->num_interfaces, ifs.c_str());
                std::fprintf(f, " syspath=%s devnode=%s serial=%s manufacturer=%s product=%s driver=%s\n",
                    pb_event_string(e, e->syspath), pb_event_string(e, e->devnode), pb_event_string(e, e->serial),
                    pb_event_string(e, e->manufacturer), pb_event_string(e, e->product), pb_event_string(e, e->driver));
            }
            return PB_OK;
        }

        void shutdown(void *s) {
            State *st = static_cast<State *>(s);
            std::fprintf(st->out, "SHUTDOWN\n");
            std::fclose(st->out);
            delete st;
        }

        const pb_plugin_api api = {sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR), "cxx", "1.0.0",
                                   init, events, nullptr, nullptr, nullptr, shutdown};
        }  // namespace

        PB_PLUGIN_ENTRY(in, out) {
            if (in != nullptr) g_api = in->host_api;
            return pb_negotiate_default(in, out, &api);
        }
        """#

    /// Compiles `source` (C++) into `lib<name>.so` in a fresh directory; returns the directory.
    static func buildCxx(_ source: String, name: String, extra: [String] = []) throws -> String {
        let dir = try TestSupport.tempDir("cxx")
        try source.write(toFile: "\(dir)/\(name).cpp", atomically: true, encoding: .utf8)
        let args = ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-fvisibility=hidden",
                    "-I", include] + extra + ["-o", "\(dir)/lib\(name).so", "\(dir)/\(name).cpp"]
        let r = try TestSupport.run("/usr/bin/c++", args)
        guard r.status == 0 else { throw TestFailure("c++ failed: \(r.output)") }
        return dir
    }

    @Test("a C++ plugin written as documented loads and sees the same fields as the C recorder")
    func documentedCxxPluginLoads() throws {
        let dir = try Self.buildCxx(Self.documentedPlugin, name: "cxx")
        let session = "\(TestSupport.packageRoot)/demo/session.jsonl"
        let cxxOut = "\(dir)/cxx.out"
        let rt = try TestSupport.runToEnd(pluginDirs: [dir], source: ReplaySource(path: session, pace: 0),
                                          config: ["cxx": ["output": cxxOut]])
        #expect(rt.failures.map(\.description) == [])
        #expect(rt.pluginStats.map(\.name) == ["cxx"])

        let recDir = try TestSupport.pluginDir([(TestSupport.plugin("pbtest-recorder"), "librecorder.so")])
        let recOut = "\(recDir)/recorder.out"
        _ = try TestSupport.runToEnd(pluginDirs: [recDir], source: ReplaySource(path: session, pace: 0),
                                     config: ["recorder": ["output": recOut]])
        let cxxLines = TestSupport.lines(cxxOut), recLines = TestSupport.lines(recOut)
        #expect(cxxLines.count >= 9, "every event of demo/session.jsonl, then SHUTDOWN")
        #expect(cxxLines.last == "SHUTDOWN")
        #expect(cxxLines == recLines)
        // A spot check against the session file itself, independent of the C recorder.
        #expect(cxxLines.first?.hasPrefix("1 add flags=4 seqnum=1001 bus=1 dev=1 id=1d6b:0002 bcd=0601 class=09/00/00 speed=480000 nif=1 ifs=090000 syspath=/sys/devices/pci0000:00/0000:00:14.0/usb1 ") == true)
    }

    @Test("a plugin whose entry point was compiled as C++ is refused naming the mangled symbol")
    func mangledEntryPointIsExplained() throws {
        // Written by hand, without PB_PLUGIN_ENTRY: the C++ compiler mangles the name.
        let source = #"""
            #include <plugboard.h>
            static const pb_plugin_api api = {sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR),
                                              "mangled", "1.0.0", nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
            PB_EXPORT pb_status pb_plugin_entry(const pb_negotiate_in *in, pb_negotiate_out *out) {
                return pb_negotiate_default(in, out, &api);
            }
            """#
        let dir = try Self.buildCxx(source, name: "mangled")
        let path = "\(dir)/libmangled.so"
        #expect {
            _ = try PluginLoader.open(path)
        } throws: { error in
            guard let e = error as? PluginLoadError else { return false }
            let text = e.description
            return e.code == "entry-point-mangled" && text.contains("libmangled.so")
                && text.contains("compiled as C++")
                && text.contains("_Z15pb_plugin_entryPK15pb_negotiate_inP16pb_negotiate_out")
                && text.contains("extern \"C\"")
        }
    }

    /// One translation unit, valid as C and as C++, that uses every macro of the header.
    static let everyMacro = #"""
        #include <plugboard.h>
        #include <string.h>

        PB_STATIC_ASSERT(PB_ABI_VERSION(1, 2) == 0x10002u, abi_version_packs);
        PB_STATIC_ASSERT(PB_EVENT_MAX_SIZE >= sizeof(pb_event) + PB_STRING_MAX, slot_holds_a_string);
        PB_STATIC_ASSERT(PB_MAX_INTERFACES == 32u, interfaces);
        PB_STATIC_ASSERT(PB_ACTION_PRESENT == PB_ACTION_RESYNC && PB_FLAG_SYNTHESISED == PB_EVENT_RESYNC, aliases);

        PB_HOST_API_DECLARE;

        static const int codes[] = {PB_OK, PB_ERR_GENERIC, PB_ERR_ABI, PB_ERR_CONFIG, PB_ERR_NOMEM, PB_ERR_INVALID,
                                    PB_ERR_UNSUPPORTED, PB_ERR_FULL, PB_ERR_NOT_FOUND,
                                    PB_ACTION_UNKNOWN, PB_ACTION_ADD, PB_ACTION_REMOVE, PB_ACTION_CHANGE,
                                    PB_ACTION_BIND, PB_ACTION_UNBIND, PB_ACTION_RESYNC,
                                    PB_LOG_TRACE, PB_LOG_DEBUG, PB_LOG_INFO, PB_LOG_WARNING, PB_LOG_ERROR};
        static const unsigned flags = PB_EVENT_TRUNCATED | PB_EVENT_RESYNC | PB_EVENT_COLDPLUG | PB_EVENT_FROM_TABLE
                                      | PB_FLAG_TRUNCATED | PB_FLAG_SYNTHESISED | PB_FLAG_COLDPLUG | PB_FLAG_FROM_TABLE
                                      | PB_ACTION_PRESENT;

        static pb_status on_events(void *state, const pb_event *const *events, uint32_t count) {
            (void)state;
            for (uint32_t i = 0; i < count; i++)
                if (strcmp(pb_action_name(events[i]->action), "") == 0 || pb_event_string(events[i], events[i]->serial) == NULL)
                    return PB_ERR_INVALID;
            if (pb_api != NULL) pb_api->log(NULL, PB_LOG_DEBUG, "seen");
            return PB_OK;
        }

        static const pb_plugin_api api = {sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR), "every-macro",
                                          "1.0.0", NULL, on_events, NULL, NULL, NULL, NULL};

        /* Pointers the compiler knows are non-NULL: the macro must not compare them with NULL
           (-Wnonnull-compare, -Waddress). */
        #if defined(__GNUC__)
        __attribute__((nonnull)) static int has_entries(const pb_config *c) { return PB_HAS_FIELD(c, pb_config, entries); }
        #else
        static int has_entries(const pb_config *c) { return PB_HAS_FIELD(c, pb_config, entries); }
        #endif
        #ifdef __cplusplus
        static int has_entries_ref(const pb_config &c) { return PB_HAS_FIELD(&c, pb_config, entries); }
        #else
        static int has_entries_ref(const pb_config *c) { return PB_HAS_FIELD(c, pb_config, entries); }
        #endif

        PB_EXPORT int pb_every_macro_check(const pb_host_api *host);
        PB_EXPORT int pb_every_macro_check(const pb_host_api *host) {
            pb_negotiate_out local;
            pb_config config;
            memset(&local, 0, sizeof local);
            memset(&config, 0, sizeof config);
            local.size = (uint32_t)sizeof local;
            config.size = (uint32_t)sizeof config;
            /* The address of a local is never NULL: the macro must not compare it with NULL. */
            int n = PB_HAS_FIELD(&local, pb_negotiate_out, plugin_api) + PB_HAS_FIELD(&config, pb_config, entries)
                    + PB_HAS_FIELD(host, pb_host_api, monotonic_ns) + has_entries(&config);
        #ifdef __cplusplus
            n += has_entries_ref(config);
        #else
            n += has_entries_ref(&config);
        #endif
            return n + (int)(sizeof codes / sizeof codes[0]) + (int)flags + (int)strlen(PB_ENTRY_SYMBOL);
        }

        PB_PLUGIN_ENTRY(in, out) {
            PB_HOST_API_INIT(in);
            return pb_negotiate_default(in, out, &api);
        }
        """#

    @Test("the header compiles warning-free as C99, C11, C++11 and C++17, every macro used",
          arguments: [("c", "c99"), ("c", "c11"), ("c++", "c++11"), ("c++", "c++17")])
    func headerCompilesInEveryLanguageMode(language: String, standard: String) throws {
        let dir = try TestSupport.tempDir("hdr")
        let file = "\(dir)/every.\(language == "c" ? "c" : "cpp")"
        try Self.everyMacro.write(toFile: file, atomically: true, encoding: .utf8)
        var args = ["-std=\(standard)", "-Wall", "-Wextra", "-Werror", "-pedantic", "-pedantic-errors",
                    "-shared", "-fPIC", "-I", Self.include, "-o", "\(dir)/libevery.so", file]
        args.insert("-Werror=nonnull-compare", at: 0)
        let r = try TestSupport.run(language == "c" ? "/usr/bin/cc" : "/usr/bin/c++", args)
        #expect(r.status == 0, "\(standard): \(r.output)")
        guard r.status == 0 else { return }
        // The entry point is exported under its C name in both languages.
        let nm = try TestSupport.run("/usr/bin/nm", ["-D", "--defined-only", "\(dir)/libevery.so"])
        #expect(nm.output.split(separator: "\n").contains { $0.hasSuffix(" T pb_plugin_entry") }, "\(standard): \(nm.output)")
        // PB_HOST_API_DECLARE's variable stays private to the plugin (two plugins never share one).
        #expect(!nm.output.contains("pb_api"), "\(standard): \(nm.output)")
    }
}
