/* Test plugin: negotiates fine, then refuses in init with PB_ERR_CONFIG after logging why. */
#include <plugboard.h>
static const pb_host_api *g_api;
static pb_status init(pb_host *h, const pb_config *c, void **s) {
    (void)c; (void)s;
    g_api->log(h, PB_LOG_ERROR, "missing required config key 'endpoint'");
    return PB_ERR_CONFIG;
}
static pb_status ev(void *s, const pb_event *const *e, uint32_t n) { (void)s; (void)e; (void)n; return PB_OK; }
static const pb_plugin_api api = {sizeof(pb_plugin_api), PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR), "init-fails", "0.1.0", init, ev, 0, 0, 0, 0};
PB_PLUGIN_ENTRY(in, out) {
    pb_status s = pb_negotiate_default(in, out, &api);
    if (s == PB_OK) g_api = in->host_api;
    return s;
}
