/*
 * device-counter: counts events per vendor:product and, at shutdown, publishes
 * a JSON summary through the host API (topic "summary") and logs it.
 * Keeps its table across a hot reload through save_state/restore_state.
 */
#include <plugboard.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TABLE_SIZE 4096u /* open addressing; distinct vid:pid pairs beyond this are counted as "other" */

typedef struct entry {
    uint32_t key; /* vid << 16 | pid, plus 1 << 32 never used: 0 with used == 0 means empty */
    uint32_t used;
    uint64_t adds, removes, others;
} entry;

typedef struct counter {
    pb_host *host;
    uint64_t events, overflow;
    entry table[TABLE_SIZE];
} counter;

PB_HOST_API_DECLARE; /* pb_api: the host API table, set by PB_HOST_API_INIT in the entry point */

static entry *slot_for(counter *c, uint32_t key) {
    uint32_t h = (key * 2654435761u) & (TABLE_SIZE - 1);
    for (uint32_t probe = 0; probe < TABLE_SIZE; probe++) {
        entry *e = &c->table[(h + probe) & (TABLE_SIZE - 1)];
        if (!e->used) { e->used = 1; e->key = key; return e; }
        if (e->key == key) return e;
    }
    return NULL;
}

static pb_status counter_init(pb_host *host, const pb_config *config, void **state) {
    (void)config;
    counter *c = (counter *)calloc(1, sizeof *c);
    if (!c) return PB_ERR_NOMEM;
    c->host = host;
    *state = c;
    return PB_OK;
}

static pb_status counter_events(void *state, const pb_event *const *events, uint32_t count) {
    counter *c = (counter *)state;
    for (uint32_t i = 0; i < count; i++) {
        const pb_event *ev = events[i];
        entry *e = slot_for(c, ((uint32_t)ev->vendor_id << 16) | ev->product_id);
        c->events++;
        if (!e) { c->overflow++; continue; }
        if (ev->action == PB_ACTION_ADD) e->adds++;
        else if (ev->action == PB_ACTION_REMOVE) e->removes++;
        else e->others++;
    }
    return PB_OK;
}

static pb_status counter_save(void *state, void *buf, size_t cap, size_t *len) {
    *len = sizeof(counter);
    if (cap < sizeof(counter)) return PB_ERR_FULL;
    memcpy(buf, state, sizeof(counter));
    return PB_OK;
}

static pb_status counter_restore(void *state, const void *data, size_t len) {
    counter *c = (counter *)state;
    if (len != sizeof(counter)) return PB_ERR_INVALID;
    pb_host *host = c->host;
    memcpy(c, data, sizeof(counter));
    c->host = host;
    return PB_OK;
}

static void counter_shutdown(void *state) {
    counter *c = (counter *)state;
    size_t cap = 256 + 96 * (size_t)TABLE_SIZE, n = 0;
    char *json = (char *)malloc(cap);
    if (json) {
        n += (size_t)snprintf(json + n, cap - n, "{\"events\":%llu,\"devices\":[", (unsigned long long)c->events);
        int first = 1;
        for (uint32_t i = 0; i < TABLE_SIZE; i++) {
            entry *e = &c->table[i];
            if (!e->used) continue;
            n += (size_t)snprintf(json + n, cap - n, "%s{\"id\":\"%04x:%04x\",\"add\":%llu,\"remove\":%llu,\"other\":%llu}",
                                  first ? "" : ",", e->key >> 16, e->key & 0xffff, (unsigned long long)e->adds,
                                  (unsigned long long)e->removes, (unsigned long long)e->others);
            first = 0;
        }
        n += (size_t)snprintf(json + n, cap - n, "],\"overflow\":%llu}", (unsigned long long)c->overflow);
        pb_api->publish(c->host, "summary", json, n);
        char line[1024];
        snprintf(line, sizeof line, "summary: %.*s%s", (int)(n < 900 ? n : 900), json, n < 900 ? "" : "...");
        pb_api->log(c->host, PB_LOG_INFO, line);
        free(json);
    }
    free(c);
}

static const pb_plugin_api plugin = {
    sizeof(pb_plugin_api),
    PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR),
    "device-counter",
    "1.0.0",
    counter_init,
    counter_events,
    NULL,
    counter_save,
    counter_restore,
    counter_shutdown,
};

PB_PLUGIN_ENTRY(in, out) {
    PB_HOST_API_INIT(in); /* init and every later callback may call pb_api */
    return pb_negotiate_default(in, out, &plugin);
}
