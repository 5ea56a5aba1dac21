/*
 * Test plugin for `plugboard ctl reload` and its canary, compiled by ControlTests in variants
 * (not a package target): each build publishes one record per event on topic "seen",
 * "<sequence> <action> n=<events counted so far>", and carries its count across a reload or a
 * canary snapshot (save_state / restore_state). Its version is -DCANARY_VERSION.
 *   -DCANARY_DIFFERENT   every fifth event's record ends in " v2" (a behaviour change)
 *   -DCANARY_DEBUG       also publishes "debug <sequence>" on topic "debug" (allowed by --allow-diff debug)
 *   -DCANARY_CRASH       crashes on the first event it gets (a broken build)
 *   -DCANARY_FLOOD       also publishes 1,000,000 "flood" records on every 4000th event, far more than
 *                        a worker's host-call queue holds: some are refused (PB_ERR_FULL)
 * Config `output`: a file each event's sequence is appended to (exactly-once checks), and
 *   "COUNT <n>" at shutdown (the count it carried).
 * Config `crash_file`: while that file exists, the plugin crashes on every event (quarantine).
 * Config `crash_at`: the plugin crashes on the event of that sequence, every time (a poison event).
 * Config `crash_after_ms`: each worker process crashes at its first event that many ms after its
 *   first event, having appended "FIRST <ns>" and "CRASH <ns>" (CLOCK_MONOTONIC) to `output`
 *   (bench-ops: restart times).
 * Export `canary_add(int32_t, int32_t)`; `canary_crash()` crashes (ctl call tests).
 */
#include <plugboard.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#ifndef CANARY_VERSION
#define CANARY_VERSION "1.0.0"
#endif

static const pb_host_api *g_api;

typedef struct st { pb_host *host; unsigned long long count; FILE *out; const char *crash_file; unsigned long long crash_at;
                   unsigned long long crash_after_ns, first_ns; } st;

static unsigned long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static pb_status init(pb_host *h, const pb_config *c, void **s) {
    (void)c;
    st *x = calloc(1, sizeof *x);
    if (!x) return PB_ERR_NOMEM;
    x->host = h;
    const char *o = g_api->config_get(h, "output");
    if (o && *o) x->out = fopen(o, "a");
    x->crash_file = g_api->config_get(h, "crash_file");
    const char *ca = g_api->config_get(h, "crash_at");
    x->crash_at = ca ? strtoull(ca, NULL, 10) : 0;
    const char *cm = g_api->config_get(h, "crash_after_ms");
    x->crash_after_ns = cm ? strtoull(cm, NULL, 10) * 1000000ull : 0;
    *s = x;
    return PB_OK;
}

static pb_status events(void *s, const pb_event *const *ev, uint32_t n) {
    st *x = s;
    struct stat sb;
    if (x->crash_after_ns) {
        unsigned long long t = now_ns();
        if (!x->first_ns) {
            x->first_ns = t;
            if (x->out) { fprintf(x->out, "FIRST %llu\n", t); fflush(x->out); }
        } else if (t - x->first_ns >= x->crash_after_ns) {
            if (x->out) { fprintf(x->out, "CRASH %llu\n", now_ns()); fflush(x->out); }
            raise(SIGSEGV);
        }
        return PB_OK;
    }
    for (uint32_t i = 0; i < n; i++) {
#ifdef CANARY_CRASH
        raise(SIGSEGV);
#endif
        if (x->crash_file && *x->crash_file && stat(x->crash_file, &sb) == 0) raise(SIGSEGV);
        if (x->crash_at && ev[i]->sequence == x->crash_at) raise(SIGSEGV);
        x->count++;
        char buf[96];
        int len = snprintf(buf, sizeof buf, "%llu %s n=%llu", (unsigned long long)ev[i]->sequence,
                           pb_action_name(ev[i]->action), x->count);
#ifdef CANARY_DIFFERENT
        if (ev[i]->sequence % 5 == 0) len += snprintf(buf + len, sizeof buf - (size_t)len, " v2");
#endif
        g_api->publish(x->host, "seen", buf, (size_t)len);
#ifdef CANARY_FLOOD
        if (ev[i]->sequence % 4000 == 0)
            for (int k = 0; k < 1000000; k++) g_api->publish(x->host, "flood", buf, (size_t)len);
#endif
#ifdef CANARY_DEBUG
        len = snprintf(buf, sizeof buf, "debug %llu", (unsigned long long)ev[i]->sequence);
        g_api->publish(x->host, "debug", buf, (size_t)len);
#endif
        if (x->out) fprintf(x->out, "%llu\n", (unsigned long long)ev[i]->sequence);
    }
    if (x->out) fflush(x->out);
    return PB_OK;
}

static pb_status save_state(void *s, void *buf, size_t cap, size_t *len) {
    st *x = s;
    *len = sizeof x->count;
    if (cap < *len) return PB_ERR_FULL;
    memcpy(buf, &x->count, sizeof x->count);
    return PB_OK;
}

static pb_status restore_state(void *s, const void *data, size_t len) {
    st *x = s;
    if (len != sizeof x->count) return PB_ERR_INVALID;
    memcpy(&x->count, data, sizeof x->count);
    return PB_OK;
}

static void shutdown_(void *s) {
    st *x = s;
    if (x->out) {
        fprintf(x->out, "COUNT %llu\n", x->count);
        fclose(x->out);
    }
    free(x);
}

__attribute__((visibility("default"))) int32_t canary_add(int32_t a, int32_t b) { return a + b; }
__attribute__((visibility("default"))) int32_t canary_crash(void) { raise(SIGSEGV); return 0; }

static const pb_plugin_api api = {sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR), "canary", CANARY_VERSION,
                                  init, events, 0, save_state, restore_state, shutdown_};
PB_PLUGIN_ENTRY(in, out) {
    pb_status s = pb_negotiate_default(in, out, &api);
    if (s == PB_OK) g_api = in->host_api;
    return s;
}
