/*
 * Test plugin: writes every field of every event it receives, one line each,
 * to the file named by config key `output`, so tests can compare what a plugin
 * saw with what was sent. Config `delay_us` makes each batch slow (for lap
 * tests); `publish` = "1" publishes each event's sequence through the host API.
 * `init_wait_file` makes init wait until that file exists (a plugin still initialising);
 * `shutdown_delay_us` makes shutdown sleep (a plugin stuck in shutdown).
 * Resyncs are written as "RESYNC <count>" followed by the device records.
 * `batch_log` = "1" writes "BATCH <n>" before each batch of n events (the batch sizes it was handed).
 * `dump_config` = "1" writes "CONFIG key=value" for each pb_config entry at init, in
 * the order init received them (tests of the [config] order).
 */
#include <plugboard.h>

#ifndef RECORDER_NAME
#define RECORDER_NAME "recorder"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

typedef struct rec {
    pb_host *host;
    FILE *out;
    long delay_us;
    long shutdown_delay_us;
    int publish;
    int dump_table;
    int batch_log;
} rec;

static const pb_host_api *g_api;

static pb_status init(pb_host *h, const pb_config *c, void **s) {
    (void)c;
    rec *r = (rec *)calloc(1, sizeof *r);
    if (!r) return PB_ERR_NOMEM;
    r->host = h;
    const char *path = g_api->config_get(h, "output");
    if (!path) { g_api->log(h, PB_LOG_ERROR, "config key 'output' is required"); free(r); return PB_ERR_CONFIG; }
    r->out = fopen(path, "w");
    if (!r->out) { free(r); return PB_ERR_CONFIG; }
    const char *dc = g_api->config_get(h, "dump_config");
    if (dc && strcmp(dc, "1") == 0 && c != NULL) {
        for (uint32_t i = 0; i < c->count; i++) fprintf(r->out, "CONFIG %s=%s\n", c->entries[i].key, c->entries[i].value);
        fflush(r->out);
    }
    const char *d = g_api->config_get(h, "delay_us");
    r->delay_us = d ? atol(d) : 0;
    const char *p = g_api->config_get(h, "publish");
    r->publish = p && strcmp(p, "1") == 0;
    const char *bl = g_api->config_get(h, "batch_log");
    r->batch_log = bl && strcmp(bl, "1") == 0;
    const char *t = g_api->config_get(h, "dump_table");
    r->dump_table = t && strcmp(t, "1") == 0;
    const char *sd = g_api->config_get(h, "shutdown_delay_us");
    r->shutdown_delay_us = sd ? atol(sd) : 0;
    const char *w = g_api->config_get(h, "init_wait_file");
    struct stat st;
    while (w && stat(w, &st) != 0) sleep_us(1000);
    *s = r;
    return PB_OK;
}

static void write_event(FILE *f, const pb_event *e) {
    fprintf(f, "%llu %s flags=%u seqnum=%llu bus=%u dev=%u id=%04x:%04x bcd=%04x class=%02x/%02x/%02x speed=%u nif=%u ifs=",
            (unsigned long long)e->sequence, pb_action_name(e->action), e->flags, (unsigned long long)e->kernel_seqnum,
            e->busnum, e->devnum, e->vendor_id, e->product_id, e->bcd_device, e->device_class, e->device_subclass,
            e->device_protocol, e->speed_kbps, e->num_interfaces);
    for (unsigned i = 0; i < e->interfaces_len; i++)
        fprintf(f, "%s%02x%02x%02x", i ? "," : "", e->interfaces[i].iface_class, e->interfaces[i].iface_subclass,
                e->interfaces[i].iface_protocol);
    fprintf(f, " syspath=%s devnode=%s serial=%s manufacturer=%s product=%s driver=%s\n", pb_event_string(e, e->syspath),
            pb_event_string(e, e->devnode), pb_event_string(e, e->serial), pb_event_string(e, e->manufacturer),
            pb_event_string(e, e->product), pb_event_string(e, e->driver));
}

static pb_status events(void *s, const pb_event *const *ev, uint32_t n) {
    rec *r = (rec *)s;
    g_api->counter_add(r->host, "events", n);
    g_api->gauge_set(r->host, "last_batch", (double)n);
    if (r->batch_log) fprintf(r->out, "BATCH %u\n", n);
    for (uint32_t i = 0; i < n; i++) {
        write_event(r->out, ev[i]);
        if (r->publish) {
            char buf[32];
            int len = snprintf(buf, sizeof buf, "%llu", (unsigned long long)ev[i]->sequence);
            g_api->publish(r->host, "seen", buf, (size_t)len);
        }
    }
    fflush(r->out);
    if (r->delay_us > 0) sleep_us(r->delay_us);
    return PB_OK;
}

static pb_status resync(void *s, const pb_event *const *dev, uint32_t n) {
    rec *r = (rec *)s;
    fprintf(r->out, "RESYNC %u\n", n);
    for (uint32_t i = 0; i < n; i++) write_event(r->out, dev[i]);
    fflush(r->out);
    return PB_OK;
}

static void visit(void *user, const pb_event *device) {
    FILE *f = (FILE *)user;
    fprintf(f, "TABLE ");
    write_event(f, device);
}

static void shutdown_(void *s) {
    rec *r = (rec *)s;
    if (r->shutdown_delay_us > 0) sleep_us(r->shutdown_delay_us);
    if (r->dump_table) g_api->device_table(r->host, visit, r->out);
    g_api->counter_add(r->host, "shutdowns", 1);
    fprintf(r->out, "SHUTDOWN\n");
    fclose(r->out);
    free(r);
}

static const pb_plugin_api api = {sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR), RECORDER_NAME, "0.1.0",
                                  init, events, resync, 0, 0, shutdown_};
PB_PLUGIN_ENTRY(in, out) {
    pb_status s = pb_negotiate_default(in, out, &api);
    if (s == PB_OK) g_api = in->host_api;
    return s;
}
