/* Test plugin for `plugboard call`: functions declared in its manifest's [exports]. */
#include <plugboard.h>
#include <stdbool.h>
#include <stdio.h>

PB_EXPORT int32_t pbtest_add(int32_t a, int32_t b) { return a + b; }
PB_EXPORT double pbtest_mean3(double a, double b, double c) { return (a + b + c) / 3.0; }
PB_EXPORT const char *pbtest_greet(const char *name) {
    static char buf[128];
    snprintf(buf, sizeof buf, "hello, %s", name);
    return buf;
}
PB_EXPORT uint64_t pbtest_shift(uint64_t v, uint8_t by) { return v << by; }
PB_EXPORT int8_t pbtest_negate8(int8_t v) { return (int8_t)-v; }
PB_EXPORT bool pbtest_is_even(int64_t v) { return v % 2 == 0; }
PB_EXPORT float pbtest_half(float v) { return v / 2.0f; }
static int calls;
PB_EXPORT void pbtest_touch(void) { calls++; }
PB_EXPORT int pbtest_calls(void) { return calls; }
PB_EXPORT pb_status pbtest_fill(pb_event *e) { (void)e; return PB_OK; }

static pb_status on_init(pb_host *h, const pb_config *c, void **s) { (void)h; (void)c; *s = NULL; return PB_OK; }
static pb_status on_events(void *s, const pb_event *const *e, uint32_t n) { (void)s; (void)e; (void)n; return PB_OK; }
static void on_shutdown(void *s) { (void)s; }
static const pb_plugin_api plugin = {
    sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR), "exports", "1.0.0",
    on_init, on_events, NULL, NULL, NULL, on_shutdown,
};
PB_PLUGIN_ENTRY(in, out) { return pb_negotiate_default(in, out, &plugin); }
