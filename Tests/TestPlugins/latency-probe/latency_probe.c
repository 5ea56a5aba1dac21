/*
 * Test plugin for latency figures (plugboard-demo-bed --measure): notes the time each events
 * callback is entered, per event, next to the event's receipt time, and writes
 * "<action> <kernel seqnum> <timestamp_ns> <callback entry ns>" lines to the file named by
 * config key `output` at shutdown (nothing is written while events flow).
 */
#include <plugboard.h>

#include <stdio.h>
#include <stdlib.h>

typedef struct rec {
    uint16_t action;
    uint64_t seqnum, stamp, entry;
} rec;

typedef struct probe {
    FILE *out;
    rec *recs;
    size_t n, cap;
} probe;

static const pb_host_api *g_api;

static pb_status init(pb_host *h, const pb_config *c, void **s) {
    (void)c;
    const char *path = g_api->config_get(h, "output");
    if (!path) { g_api->log(h, PB_LOG_ERROR, "config key 'output' is required (--plugin-config latency-probe.output=FILE)"); return PB_ERR_CONFIG; }
    probe *p = (probe *)calloc(1, sizeof *p);
    if (!p) return PB_ERR_NOMEM;
    p->out = fopen(path, "w");
    p->cap = 1u << 20;
    p->recs = (rec *)malloc(p->cap * sizeof(rec));
    if (!p->out || !p->recs) { g_api->log(h, PB_LOG_ERROR, "cannot open the output file"); free(p->recs); free(p); return PB_ERR_CONFIG; }
    *s = p;
    return PB_OK;
}

static pb_status events(void *s, const pb_event *const *ev, uint32_t n) {
    uint64_t entry = g_api->monotonic_ns();
    probe *p = (probe *)s;
    for (uint32_t i = 0; i < n && p->n < p->cap; i++) {
        rec r = {ev[i]->action, ev[i]->kernel_seqnum, ev[i]->timestamp_ns, entry};
        p->recs[p->n++] = r;
    }
    return PB_OK;
}

static void shutdown_(void *s) {
    probe *p = (probe *)s;
    for (size_t i = 0; i < p->n; i++)
        fprintf(p->out, "%s %llu %llu %llu\n", pb_action_name(p->recs[i].action), (unsigned long long)p->recs[i].seqnum,
                (unsigned long long)p->recs[i].stamp, (unsigned long long)p->recs[i].entry);
    fclose(p->out);
    free(p->recs);
    free(p);
}

static const pb_plugin_api api = {sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR), "latency-probe", "0.1.0",
                                  init, events, 0, 0, 0, shutdown_};
PB_PLUGIN_ENTRY(in, out) {
    pb_status s = pb_negotiate_default(in, out, &api);
    if (s == PB_OK) g_api = in->host_api;
    return s;
}
