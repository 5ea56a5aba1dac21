/*
 * Test plugin "misbehave": a plugin with one deliberate bug, chosen by configuration, for
 * tests that show a plugin's bug never takes down the host nor changes what other plugins
 * receive. Every key is read once, in init, from the pb_config init is given (falling back
 * to the host API's config_get). A bad value refuses the load with PB_ERR_CONFIG and an
 * error log, so a typo in a test shows up as a load failure, never as a silent "none".
 *
 * Keys:
 *   mode         What goes wrong (default "none"):
 *                  none            nothing: a well-behaved control (with publish = "1").
 *                  segfault        a store to address 16 (a real SIGSEGV, not raise()).
 *                  abort           abort() (SIGABRT).
 *                  exit            exit(3): atexit handlers of the whole process run.
 *                  stack-overflow  unbounded non-tail recursion with a 1 KiB frame, until the
 *                                  guard page is hit (SIGSEGV on the thread's stack).
 *                  spin            an infinite busy loop (100% of a core, never returns).
 *                  sleep           pause() in a loop: never returns, uses no CPU.
 *                  write-event     writes into the read-only event memory it was handed, in
 *                                  every event of the batch: sequence becomes ~sequence,
 *                                  vendor_id 0xdead, and the first byte of syspath (or, when
 *                                  absent, the first byte after the header) becomes 'X'.
 *                                  In a process that maps the ring read-only this faults.
 *                                  Needs where = "events".
 *                  write-maps      reads /proc/self/maps and inverts the first byte of every
 *                                  mapping whose path contains "memfd:" or "plugboard", except
 *                                  its own image: writable mappings first (they are changed),
 *                                  then read-only and inaccessible ones (plain stores: the
 *                                  first one faults with SIGSEGV). Logs the target counts first.
 *                  dlclose-self    dlopen()s its own image by the path dladdr() gives, then
 *                                  dlclose()s it twice: the host's reference is dropped, the
 *                                  code it is running is unmapped, and the return faults.
 *                  thread-outlives starts a detached pthread in init (whatever `where` says)
 *                                  that adds one to a static variable every millisecond,
 *                                  forever: still running after shutdown returns, and when
 *                                  the host unloads the library it runs in unmapped code.
 *                  forge-log       logs what would forge the host's log: a message with a newline
 *                                  followed by a fake host line and an ESC sequence, one with a
 *                                  right-to-left override, one with a typed backslash-n, and one
 *                                  of 10,000 bytes.
 *                  forge-stderr    writes a newline, a fake host line and an ESC sequence straight
 *                                  to its standard error (write(2), not the host API), then a
 *                                  last line without a newline to standard output.
 *                  stdout-flood    writes `log_count` (default 5000) lines "out N" to standard output.
 *                  hog             allocates 1 MiB blocks and touches every page, without end and
 *                                  never freeing; when malloc fails (an address-space limit) it
 *                                  calls abort(), as the Swift runtime and most C++ code do.
 *                  log-flood       logs `log_count` (default 5000) info messages "flood N" in one go.
 *                  publish-sizes   publishes one record of each size in `publish_sizes` (a comma
 *                                  list of byte counts) to topic "big" (or, with `topic_bytes`, a
 *                                  topic of that many 't's), each filled with its size's last
 *                                  digit, and logs "publish SIZE bytes: STATUS" for each.
 *   where        When: "init", "events" (default) or "shutdown". "events" is within the
 *                events callback, on the batch selected by at_sequence / every.
 *   at_sequence  With where = "events": misbehave on the batch that contains the event with
 *                this pb_event.sequence (decimal, default 1000).
 *   every        "1": with where = "events", misbehave on every batch (crash loops).
 *   publish      "1": the events callback first publishes each event's sequence (decimal
 *                text) to topic "seen" through the host API, before any misbehaviour, so a
 *                test can see what ran up to the bug.
 *
 * Build check: cc -std=c11 -Wall -Wextra -shared -fPIC -fvisibility=hidden -I SDK/include
 */
#define _GNU_SOURCE /* dladdr, pause, nanosleep under -std=c11 */
#include <plugboard.h>

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef enum mode {
    MODE_NONE, MODE_SEGFAULT, MODE_ABORT, MODE_EXIT, MODE_STACK_OVERFLOW, MODE_SPIN, MODE_SLEEP,
    MODE_WRITE_EVENT, MODE_WRITE_MAPS, MODE_DLCLOSE_SELF, MODE_THREAD_OUTLIVES,
    MODE_FORGE_LOG, MODE_LOG_FLOOD, MODE_PUBLISH_SIZES, MODE_FORGE_STDERR, MODE_STDOUT_FLOOD,
    MODE_HOG,
} mode;

static const char *const mode_names[] = {
    "none", "segfault", "abort", "exit", "stack-overflow", "spin", "sleep",
    "write-event", "write-maps", "dlclose-self", "thread-outlives",
    "forge-log", "log-flood", "publish-sizes", "forge-stderr", "stdout-flood",
    "hog",
};

typedef enum where { WHERE_INIT, WHERE_EVENTS, WHERE_SHUTDOWN } where;

typedef struct misbehave {
    pb_host *host;
    mode mode;
    where where;
    uint64_t at_sequence;
    int every;
    int publish;
    unsigned long log_count;
    char publish_sizes[256];
    unsigned long topic_bytes;
} misbehave;

static const pb_host_api *g_api;

/* Volatile so that the compiler can prove nothing about them: the store in segfault() is not
 * turned into a trap instruction, the recursion in recurse() has no visible end. */
static volatile uintptr_t g_fault_address = 16;
static volatile unsigned long g_recursion_limit = 0; /* 0: none */
static volatile unsigned long g_spins;
static volatile unsigned long g_ticks; /* the outliving thread's counter */

__attribute__((format(printf, 3, 4))) static void logf_(pb_host *h, int32_t level, const char *fmt, ...) {
    char buf[PATH_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g_api->log(h, level, buf);
}

/* A configuration value: the pb_config entry for `key`, else the host API's config_get. */
static const char *config(pb_host *h, const pb_config *c, const char *key) {
    if (c != NULL && PB_HAS_FIELD(c, pb_config, entries) && c->entries != NULL) {
        for (uint32_t i = 0; i < c->count; i++)
            if (c->entries[i].key != NULL && strcmp(c->entries[i].key, key) == 0) return c->entries[i].value;
    }
    return g_api->config_get(h, key);
}

static void segfault(void) {
    *(volatile unsigned char *)g_fault_address = 1;
}

__attribute__((noinline)) static unsigned long recurse(unsigned long depth) {
    volatile char frame[1024];
    frame[0] = (char)depth;
    frame[sizeof frame - 1] = (char)(depth >> 8);
    unsigned long below = 0;
    if (g_recursion_limit == 0 || depth < g_recursion_limit) below = recurse(depth + 1);
    /* Uses the frame after the call: not a tail call, so no loop. */
    return below + (unsigned long)frame[0] + (unsigned long)frame[sizeof frame - 1];
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void write_event(const pb_event *const *events, uint32_t count) {
    for (uint32_t i = 0; i < count; i++) {
        pb_event *e = (pb_event *)(uintptr_t)events[i];
        e->sequence = ~e->sequence;
        e->vendor_id = 0xdead;
        if (e->syspath.offset != 0 && e->syspath.offset < e->total_size) {
            ((char *)e)[e->syspath.offset] = 'X';
        } else if (e->size < e->total_size) {
            ((char *)e)[e->size] = 'X';
        }
    }
}

static const pb_plugin_api api;

/* The path of this plugin's own image (as dladdr reports it for its plugin table), or "". */
static const char *own_path(void) {
    Dl_info info;
    if (dladdr((const void *)&api, &info) == 0 || info.dli_fname == NULL) return "";
    return info.dli_fname;
}

typedef struct target {
    uintptr_t start;
    int writable;
} target;

static void write_maps(pb_host *h) {
    static target targets[1024];
    size_t n = 0, writable = 0;
    const char *self = own_path();
    char self_real[PATH_MAX] = "";
    if (realpath(self, self_real) == NULL) self_real[0] = '\0';

    FILE *maps = fopen("/proc/self/maps", "r");
    if (maps == NULL) {
        g_api->log(h, PB_LOG_ERROR, "write-maps: cannot open /proc/self/maps");
        return;
    }
    char line[PATH_MAX + 128];
    while (fgets(line, sizeof line, maps) != NULL && n < sizeof targets / sizeof targets[0]) {
        unsigned long start = 0, end = 0;
        char perms[8] = "";
        int path_at = 0;
        /* start-end perms offset dev inode path */
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &start, &end, perms, &path_at) < 3 || path_at == 0) continue;
        char *path = line + path_at;
        path[strcspn(path, "\n")] = '\0';
        if (strstr(path, "memfd:") == NULL && strstr(path, "plugboard") == NULL) continue;
        if (strcmp(path, self) == 0 || (self_real[0] != '\0' && strcmp(path, self_real) == 0)) continue;
        targets[n].start = (uintptr_t)start;
        targets[n].writable = perms[1] == 'w';
        writable += (size_t)targets[n].writable;
        n++;
    }
    fclose(maps);
    logf_(h, PB_LOG_WARNING, "write-maps: writing %zu mappings, %zu of them writable", n, writable);

    /* Writable ones first, so that everything corruptible is corrupted before the fault. */
    for (int pass = 1; pass >= 0; pass--)
        for (size_t i = 0; i < n; i++)
            if (targets[i].writable == pass) {
                volatile unsigned char *p = (volatile unsigned char *)targets[i].start;
                *p = (unsigned char)~*p;
            }
}

static void dlclose_self(pb_host *h) {
    const char *self = own_path();
    void *again = dlopen(self, RTLD_NOW);
    if (again == NULL) {
        logf_(h, PB_LOG_ERROR, "dlclose-self: dlopen(\"%s\") failed: %s", self, dlerror());
        return;
    }
    dlclose(again);
    dlclose(again); /* the host's reference: the image may be unmapped under us now */
}

static void *outlive(void *arg) {
    (void)arg;
    for (;;) {
        g_ticks++;
        sleep_ms(1);
    }
    return NULL;
}

static void forge_log(pb_host *h) {
    g_api->log(h, PB_LOG_INFO, "innocent\ncritical plugboard: [PlugboardCore] forged line\x1b[2J");
    g_api->log(h, PB_LOG_WARNING, "rtl \xe2\x80\xae gnp.exe");
    g_api->log(h, PB_LOG_INFO, "typed \\n backslash");
    static char big[10001];
    memset(big, 'A', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    g_api->log(h, PB_LOG_INFO, big);
}

static void forge_stderr(void) {
    static const char err[] = "innocent\ncritical plugboard: [PlugboardCore] forged by stderr\x1b[2J\n";
    static const char out[] = "stdout without a newline";
    ssize_t w = write(2, err, sizeof err - 1);
    w += write(1, out, sizeof out - 1);
    (void)w;
}

static void log_flood(pb_host *h, unsigned long count) {
    for (unsigned long i = 0; i < count; i++) logf_(h, PB_LOG_INFO, "flood %lu", i);
}

static void publish_sizes(misbehave *m) {
    char topic[4097] = "big";
    if (m->topic_bytes > 0) {
        size_t n = m->topic_bytes < sizeof topic - 1 ? m->topic_bytes : sizeof topic - 1;
        memset(topic, 't', n);
        topic[n] = '\0';
    }
    const char *p = m->publish_sizes;
    while (*p != '\0') {
        char *end = NULL;
        unsigned long size = strtoul(p, &end, 10);
        if (end == p) break;
        char *data = (char *)malloc(size > 0 ? size : 1);
        if (data == NULL) return;
        memset(data, '0' + (int)(size % 10), size);
        pb_status s = g_api->publish(m->host, topic, data, size);
        free(data);
        logf_(m->host, PB_LOG_WARNING, "publish %lu bytes: %d", size, (int)s);
        p = *end == ',' ? end + 1 : end;
    }
}

/* The last block the hog mode allocated (kept reachable: the allocations are not optimised out). */
static void *volatile g_hog;

/* Does the bug (for every mode but thread-outlives, which starts in init). */
static void misbehave_now(misbehave *m, const pb_event *const *events, uint32_t count) {
    switch (m->mode) {
    case MODE_NONE: break;
    case MODE_SEGFAULT: segfault(); break;
    case MODE_ABORT: abort();
    case MODE_EXIT: exit(3);
    case MODE_STACK_OVERFLOW: (void)recurse(0); break;
    case MODE_SPIN: for (;;) g_spins++;
    case MODE_SLEEP: for (;;) pause();
    case MODE_WRITE_EVENT: write_event(events, count); break;
    case MODE_WRITE_MAPS: write_maps(m->host); break;
    case MODE_DLCLOSE_SELF: dlclose_self(m->host); break;
    case MODE_THREAD_OUTLIVES: break;
    case MODE_FORGE_LOG: forge_log(m->host); break;
    case MODE_LOG_FLOOD: log_flood(m->host, m->log_count); break;
    case MODE_PUBLISH_SIZES: publish_sizes(m); break;
    case MODE_FORGE_STDERR: forge_stderr(); break;
    case MODE_HOG:
        for (;;) {
            char *p = malloc(1 << 20);
            if (p == NULL) abort();
            memset(p, 1, 1 << 20);
            g_hog = p;
        }
    case MODE_STDOUT_FLOOD:
        for (unsigned long i = 0; i < m->log_count; i++) printf("out %lu\n", i);
        fflush(stdout);
        break;
    }
}

static pb_status refuse(pb_host *h, const char *key, const char *value) {
    logf_(h, PB_LOG_ERROR, "bad value for config key '%s': \"%s\"", key, value ? value : "(missing)");
    return PB_ERR_CONFIG;
}

static pb_status init(pb_host *h, const pb_config *c, void **s) {
    misbehave m = {h, MODE_NONE, WHERE_EVENTS, 1000, 0, 0, 5000, "", 0};

    const char *v = config(h, c, "mode");
    if (v != NULL) {
        size_t i = 0;
        while (i < sizeof mode_names / sizeof mode_names[0] && strcmp(v, mode_names[i]) != 0) i++;
        if (i == sizeof mode_names / sizeof mode_names[0]) return refuse(h, "mode", v);
        m.mode = (mode)i;
    }
    v = config(h, c, "where");
    if (v != NULL) {
        if (strcmp(v, "init") == 0) m.where = WHERE_INIT;
        else if (strcmp(v, "events") == 0) m.where = WHERE_EVENTS;
        else if (strcmp(v, "shutdown") == 0) m.where = WHERE_SHUTDOWN;
        else return refuse(h, "where", v);
    }
    v = config(h, c, "at_sequence");
    if (v != NULL) {
        char *end = NULL;
        unsigned long long n = strtoull(v, &end, 10);
        if (*v == '\0' || *v == '-' || end == NULL || *end != '\0') return refuse(h, "at_sequence", v);
        m.at_sequence = (uint64_t)n;
    }
    v = config(h, c, "every");
    m.every = v != NULL && strcmp(v, "1") == 0;
    v = config(h, c, "publish");
    m.publish = v != NULL && strcmp(v, "1") == 0;
    v = config(h, c, "log_count");
    if (v != NULL) m.log_count = strtoul(v, NULL, 10);
    v = config(h, c, "publish_sizes");
    if (v != NULL) snprintf(m.publish_sizes, sizeof m.publish_sizes, "%s", v);
    v = config(h, c, "topic_bytes");
    if (v != NULL) m.topic_bytes = strtoul(v, NULL, 10);
    if (m.mode == MODE_WRITE_EVENT && m.where != WHERE_EVENTS) return refuse(h, "where (write-event needs events)", config(h, c, "where"));

    misbehave *state = (misbehave *)malloc(sizeof *state);
    if (state == NULL) return PB_ERR_NOMEM;
    *state = m;

    if (m.mode == MODE_THREAD_OUTLIVES) {
        pthread_t t;
        if (pthread_create(&t, NULL, outlive, NULL) != 0) {
            free(state);
            return PB_ERR_GENERIC;
        }
        pthread_detach(t);
    } else if (m.where == WHERE_INIT) {
        misbehave_now(state, NULL, 0);
    }
    *s = state;
    return PB_OK;
}

static pb_status events(void *s, const pb_event *const *ev, uint32_t n) {
    misbehave *m = (misbehave *)s;
    int now = m->where == WHERE_EVENTS && m->every;
    for (uint32_t i = 0; i < n; i++) {
        if (ev[i]->sequence == m->at_sequence) now = m->where == WHERE_EVENTS;
        if (m->publish) {
            char buf[32];
            int len = snprintf(buf, sizeof buf, "%llu", (unsigned long long)ev[i]->sequence);
            g_api->publish(m->host, "seen", buf, (size_t)len);
        }
    }
    if (now) misbehave_now(m, ev, n);
    return PB_OK;
}

static void shutdown_(void *s) {
    misbehave *m = (misbehave *)s;
    if (m->where == WHERE_SHUTDOWN && m->mode != MODE_THREAD_OUTLIVES) misbehave_now(m, NULL, 0);
    free(m);
}

static const pb_plugin_api api = {sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR), "misbehave", "0.1.0",
                                  init, events, NULL, NULL, NULL, shutdown_};
PB_PLUGIN_ENTRY(in, out) {
    pb_status s = pb_negotiate_default(in, out, &api);
    if (s == PB_OK) g_api = in->host_api;
    return s;
}
