/*
 * usb-logger: prints one line per USB event, in the spirit of `udevadm monitor`.
 *
 *   PLUGIN [  12.345678] add      1d6b:0002 "xHCI Host Controller" /devices/pci0000:00/.../usb1 (bus 1 dev 1)
 *
 * Configuration: `output` = path of a file to append to (default: standard output).
 */
#include <plugboard.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct logger {
    pb_host *host;
    const pb_host_api *api;
    FILE *out;
    int owns_out;
    unsigned long long lines;
} logger;

PB_HOST_API_DECLARE; /* pb_api: the host API table, set by PB_HOST_API_INIT in the entry point */

static pb_status logger_init(pb_host *host, const pb_config *config, void **state) {
    (void)config;
    logger *l = (logger *)calloc(1, sizeof *l);
    if (!l) return PB_ERR_NOMEM;
    l->host = host;
    l->api = pb_api;
    l->out = stdout;
    const char *path = pb_api->config_get(host, "output");
    if (path && *path && strcmp(path, "-") != 0) {
        l->out = fopen(path, "a");
        if (!l->out) {
            char msg[512];
            snprintf(msg, sizeof msg, "cannot open output file '%s' (config key 'output'): check the path and its permissions", path);
            pb_api->log(host, PB_LOG_ERROR, msg);
            free(l);
            return PB_ERR_CONFIG;
        }
        l->owns_out = 1;
    }
    *state = l;
    return PB_OK;
}

static void print_event(logger *l, const pb_event *e, const char *tag) {
    double t = (double)e->timestamp_ns / 1e9;
    fprintf(l->out, "%-6s [%12.6f] %-8s %04x:%04x \"%s\" %s (bus %u dev %u)%s%s\n", tag, t,
            pb_action_name(e->action), e->vendor_id, e->product_id, pb_event_string(e, e->product),
            pb_event_string(e, e->syspath), e->busnum, e->devnum,
            (e->flags & PB_EVENT_RESYNC) ? " [resync]" : "", (e->flags & PB_EVENT_TRUNCATED) ? " [truncated]" : "");
}

static pb_status logger_events(void *state, const pb_event *const *events, uint32_t count) {
    logger *l = (logger *)state;
    for (uint32_t i = 0; i < count; i++) print_event(l, events[i], "PLUGIN");
    fflush(l->out);
    l->lines += count;
    l->api->counter_add(l->host, "lines", count);
    return PB_OK;
}

static pb_status logger_resync(void *state, const pb_event *const *devices, uint32_t count) {
    logger *l = (logger *)state;
    fprintf(l->out, "RESYNC %u devices present\n", count);
    for (uint32_t i = 0; i < count; i++) print_event(l, devices[i], "TABLE");
    fflush(l->out);
    return PB_OK;
}

static void logger_shutdown(void *state) {
    logger *l = (logger *)state;
    if (l->owns_out) fclose(l->out);
    free(l);
}

static const pb_plugin_api plugin = {
    sizeof(pb_plugin_api),
    PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR),
    "usb-logger",
    "1.0.0",
    logger_init,
    logger_events,
    logger_resync,
    NULL,
    NULL,
    logger_shutdown,
};

PB_PLUGIN_ENTRY(in, out) {
    PB_HOST_API_INIT(in); /* init and every later callback may call pb_api */
    return pb_negotiate_default(in, out, &plugin);
}
