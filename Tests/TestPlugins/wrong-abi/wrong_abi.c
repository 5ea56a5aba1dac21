/* Test plugin: speaks ABI major 2, which a v1 host must refuse. */
#include <plugboard.h>
static pb_status ev(void *s, const pb_event *const *e, uint32_t n) { (void)s; (void)e; (void)n; return PB_OK; }
static const pb_plugin_api api = {sizeof(pb_plugin_api), PB_ABI_VERSION(2, 0), "wrong-abi", "0.1.0", 0, ev, 0, 0, 0, 0};
PB_PLUGIN_ENTRY(in, out) {
    (void)in;
    out->plugin_major = 2;
    out->plugin_minor = 0;
    out->plugin_api = &api;
    return PB_OK;
}
