/*
 * Test plugin "ctor-exit": its ELF constructor calls _exit(7), so the process that dlopen()s
 * it ends with status 7 before dlopen returns and before any Plugboard code of the plugin
 * runs. For tests that a plugin can end its process while merely being loaded (a host must
 * load untrusted plugins in a process it can afford to lose). Apart from that, a valid plugin:
 * the entry point negotiates, init/events/shutdown do nothing.
 */
#define _GNU_SOURCE /* _exit under -std=c11 */
#include <plugboard.h>

#include <unistd.h>

__attribute__((constructor)) static void exit_on_load(void) { _exit(7); }

static pb_status init(pb_host *h, const pb_config *c, void **s) {
    (void)h;
    (void)c;
    *s = NULL;
    return PB_OK;
}

static pb_status events(void *s, const pb_event *const *ev, uint32_t n) {
    (void)s;
    (void)ev;
    (void)n;
    return PB_OK;
}

static void shutdown_(void *s) { (void)s; }

static const pb_plugin_api api = {sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR), "ctor-exit", "0.1.0",
                                  init, events, NULL, NULL, NULL, shutdown_};
PB_PLUGIN_ENTRY(in, out) { return pb_negotiate_default(in, out, &api); }
