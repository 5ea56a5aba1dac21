/*
 * {{name}}: a Plugboard plugin in C++ (made by `plugboard new --language cpp`; edit freely).
 *
 * It counts the events it receives per action, writes one line per event to the file named by
 * its `output` configuration key ("-" or unset: the host's log), carries its counts over a hot
 * reload (save_state / restore_state) and publishes a summary when it shuts down.
 *
 * C++ rules at the boundary (docs/abi.md): the entry point is declared with PB_PLUGIN_ENTRY (it
 * is `extern "C"`, so the exported name is not mangled); no exception may leave a callback (each
 * catches everything and returns a status); the tables are plain C structs.
 */
#include <plugboard.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

PB_HOST_API_DECLARE; // pb_api: the host API table, set by PB_HOST_API_INIT in the entry point

namespace {

struct State {
    pb_host *host = nullptr;
    std::FILE *out = nullptr;                  // nullptr: log through the host
    std::array<unsigned long long, 8> counts{}; // events per action (PB_ACTION_*)
};

pb_status on_init(pb_host *host, const pb_config *, void **out) {
    State *s = new (std::nothrow) State();
    if (!s) return PB_ERR_NOMEM;
    s->host = host;
    const char *path = pb_api->config_get(host, "output");
    if (path && std::strcmp(path, "-") != 0) {
        s->out = std::fopen(path, "a");
        if (!s->out) {
            pb_api->log(host, PB_LOG_ERROR, "cannot open the output file (config key 'output')");
            delete s;
            return PB_ERR_CONFIG;
        }
    }
    *out = s;
    return PB_OK;
}

pb_status on_events(void *st, const pb_event *const *events, uint32_t count) {
    State *s = static_cast<State *>(st);
    try {
        for (uint32_t i = 0; i < count; i++) {
            const pb_event *e = events[i];
            s->counts[e->action < 8 ? e->action : 0]++;
            char line[256];
            std::snprintf(line, sizeof line, "%llu action=%u %04x:%04x %s", static_cast<unsigned long long>(e->sequence),
                          static_cast<unsigned>(e->action), static_cast<unsigned>(e->vendor_id),
                          static_cast<unsigned>(e->product_id), pb_event_string(e, e->syspath));
            if (s->out) std::fprintf(s->out, "%s\n", line);
            else pb_api->log(s->host, PB_LOG_INFO, line);
        }
        if (s->out) std::fflush(s->out);
        return PB_OK;
    } catch (...) {
        return PB_ERR_GENERIC; // never let an exception cross into the host
    }
}

// Hot reload (plugboard run --watch): the counts survive a rebuild.
pb_status on_save_state(void *st, void *buf, size_t cap, size_t *len) {
    State *s = static_cast<State *>(st);
    *len = sizeof s->counts;
    if (cap < *len) return PB_ERR_FULL;
    std::memcpy(buf, s->counts.data(), sizeof s->counts);
    return PB_OK;
}

pb_status on_restore_state(void *st, const void *data, size_t len) {
    State *s = static_cast<State *>(st);
    if (len != sizeof s->counts) return PB_ERR_INVALID; // another build's format: start afresh
    std::memcpy(s->counts.data(), data, len);
    return PB_OK;
}

void on_shutdown(void *st) {
    State *s = static_cast<State *>(st);
    unsigned long long total = 0;
    for (unsigned long long c : s->counts) total += c;
    try {
        std::string msg = "{\"events\":" + std::to_string(total) + "}";
        pb_api->publish(s->host, "summary", msg.data(), msg.size());
    } catch (...) {
    }
    if (s->out) std::fclose(s->out);
    delete s;
}

const pb_plugin_api plugin = {
    sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR), "{{name}}", "0.1.0",
    on_init, on_events, nullptr, on_save_state, on_restore_state, on_shutdown,
};

} // namespace

PB_PLUGIN_ENTRY(in, out) {
    PB_HOST_API_INIT(in); // init and every later callback may call pb_api
    return pb_negotiate_default(in, out, &plugin);
}
