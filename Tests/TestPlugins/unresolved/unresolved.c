/* Test plugin: depends on a symbol no library provides, so dlopen(RTLD_NOW) fails. */
#include <plugboard.h>
extern int pb_test_symbol_nobody_defines(int);
static pb_status ev(void *s, const pb_event *const *e, uint32_t n) { (void)s; (void)e; return pb_test_symbol_nobody_defines((int)n); }
static const pb_plugin_api api = {sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR), "unresolved", "0.1.0", 0, ev, 0, 0, 0, 0};
PB_PLUGIN_ENTRY(in, out) { return pb_negotiate_default(in, out, &api); }
