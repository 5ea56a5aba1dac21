/*
 * The smallest useful Plugboard plugin: counts events and publishes the count
 * at shutdown. Needs nothing but plugboard.h:
 *
 *   cc -std=c99 -Wall -Wextra -shared -fPIC -fvisibility=hidden \
 *      -I path/to/SDK/include minimal_plugin.c -o libminimal.so
 */
#include <plugboard.h>

#include <stdio.h>
#include <stdlib.h>

PB_HOST_API_DECLARE; /* pb_api: the host API table, set by PB_HOST_API_INIT in the entry point */

typedef struct state {
    pb_host *host;
    unsigned long long events;
} state;

static pb_status on_init(pb_host *host, const pb_config *config, void **out) {
    (void)config;
    state *s = (state *)calloc(1, sizeof *s);
    if (!s) return PB_ERR_NOMEM;
    s->host = host;
    *out = s;
    pb_api->log(host, PB_LOG_INFO, "minimal plugin ready");
    return PB_OK;
}

static pb_status on_events(void *st, const pb_event *const *events, uint32_t count) {
    state *s = (state *)st;
    (void)events;
    s->events += count;
    return PB_OK;
}

static void on_shutdown(void *st) {
    state *s = (state *)st;
    char msg[64];
    int n = snprintf(msg, sizeof msg, "%llu", s->events);
    pb_api->publish(s->host, "count", msg, (size_t)n);
    free(s);
}

static const pb_plugin_api plugin = {
    sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR), "minimal", "1.0.0",
    on_init, on_events, NULL, NULL, NULL, on_shutdown,
};

PB_PLUGIN_ENTRY(in, out) {
    PB_HOST_API_INIT(in); /* init and every later callback may call pb_api */
    return pb_negotiate_default(in, out, &plugin);
}
