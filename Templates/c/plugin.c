/*
 * {{name}}: a Plugboard plugin (made by `plugboard new`; edit freely).
 *
 * It counts the events it receives per action, writes one line per event to the file named by
 * its `output` configuration key ("-" or unset: the host's log), carries its counts over a hot
 * reload (save_state / restore_state) and publishes a summary when it shuts down.
 * The ABI: SDK/include/plugboard.h and docs/abi.md. The guide: docs/plugin-guide.md.
 */
#include <plugboard.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

PB_HOST_API_DECLARE; /* pb_api: the host API table, set by PB_HOST_API_INIT in the entry point */

typedef struct state {
    pb_host *host;
    FILE *out;                    /* NULL: log through the host */
    unsigned long long counts[8]; /* events per action (PB_ACTION_*) */
} state;

static pb_status on_init(pb_host *host, const pb_config *config, void **out) {
    (void)config;
    state *s = (state *)calloc(1, sizeof *s);
    if (!s) return PB_ERR_NOMEM;
    s->host = host;
    const char *path = pb_api->config_get(host, "output");
    if (path && strcmp(path, "-") != 0) {
        s->out = fopen(path, "a");
        if (!s->out) {
            pb_api->log(host, PB_LOG_ERROR, "cannot open the output file (config key 'output')");
            free(s);
            return PB_ERR_CONFIG;
        }
    }
    *out = s;
    return PB_OK;
}

static pb_status on_events(void *st, const pb_event *const *events, uint32_t count) {
    state *s = (state *)st;
    for (uint32_t i = 0; i < count; i++) {
        const pb_event *e = events[i];
        s->counts[e->action < 8 ? e->action : 0]++;
        char line[256];
        snprintf(line, sizeof line, "%llu action=%u %04x:%04x %s", (unsigned long long)e->sequence,
                 (unsigned)e->action, (unsigned)e->vendor_id, (unsigned)e->product_id, pb_event_string(e, e->syspath));
        if (s->out) fprintf(s->out, "%s\n", line);
        else pb_api->log(s->host, PB_LOG_INFO, line);
    }
    if (s->out) fflush(s->out);
    return PB_OK;
}

/* Hot reload (plugboard run --watch): the counts survive a rebuild. */
static pb_status on_save_state(void *st, void *buf, size_t cap, size_t *len) {
    state *s = (state *)st;
    *len = sizeof s->counts;
    if (cap < *len) return PB_ERR_FULL;
    memcpy(buf, s->counts, sizeof s->counts);
    return PB_OK;
}

static pb_status on_restore_state(void *st, const void *data, size_t len) {
    state *s = (state *)st;
    if (len != sizeof s->counts) return PB_ERR_INVALID; /* another build's format: start afresh */
    memcpy(s->counts, data, len);
    return PB_OK;
}

static void on_shutdown(void *st) {
    state *s = (state *)st;
    unsigned long long total = 0;
    for (int i = 0; i < 8; i++) total += s->counts[i];
    char msg[64];
    int n = snprintf(msg, sizeof msg, "{\"events\":%llu}", total);
    pb_api->publish(s->host, "summary", msg, (size_t)n);
    if (s->out) fclose(s->out);
    free(s);
}

static const pb_plugin_api plugin = {
    sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR), "{{name}}", "0.1.0",
    on_init, on_events, NULL, on_save_state, on_restore_state, on_shutdown,
};

PB_PLUGIN_ENTRY(in, out) {
    PB_HOST_API_INIT(in); /* init and every later callback may call pb_api */
    return pb_negotiate_default(in, out, &plugin);
}
