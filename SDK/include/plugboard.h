/*
 * plugboard.h — the Plugboard plugin ABI, version 1.
 *
 * This header is the whole contract between the Plugboard host and a plugin.
 * A plugin needs nothing else: build it with any C99 or C++ compiler into a
 * shared object that exports one symbol, `pb_plugin_entry`.
 *
 * Read it top to bottom: version macros, status codes, the event, the host API
 * table (what the host offers the plugin), the plugin table (what the plugin
 * offers the host), and the entry point that negotiates between the two.
 *
 * Every call below says which thread makes it, what is copied, how long each
 * pointer stays valid, what each return code means and what the host does with
 * it, and whether the callback may be NULL. In short:
 *   - The host calls pb_plugin_entry on its loading thread (start-up, or the
 *     --watch reloader), then every callback of the table on the plugin's own
 *     worker thread, one at a time, in this order: init; restore_state (only
 *     in a build replacing another in a hot reload); events and resync, any
 *     number of times; save_state (only in a build being replaced); shutdown.
 *   - Event pointers are valid only during the callback that receives them.
 *     Strings and buffers a plugin passes to the host are copied before the
 *     call returns. Host-owned pointers (the host API table, configuration)
 *     stay valid until the plugin's shutdown returns.
 *   - The host API table reaches the plugin once, in pb_plugin_entry: store it
 *     with PB_HOST_API_DECLARE / PB_HOST_API_INIT (below) and call it as pb_api.
 *
 * Rules that keep the ABI stable (see docs/abi.md):
 *   - Every struct that crosses the boundary starts with `uint32_t size`, the
 *     size of the struct as its writer knew it. A reader never touches a field
 *     that lies beyond `size` (use PB_HAS_FIELD).
 *   - Tables are append-only: new fields and functions are added at the end and
 *     bump PB_ABI_MINOR. Nothing is ever removed or reordered within a major.
 *   - Fixed-width integers, explicit padding, no bitfields, no enums in
 *     structs (their size is implementation-defined), no C++ types.
 *   - Errors are integer status codes. Never throw, longjmp or unwind across
 *     the boundary.
 */
#ifndef PLUGBOARD_H
#define PLUGBOARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Versions                                                                  */
/* ------------------------------------------------------------------------ */

/** ABI major version: a host loads only plugins with the same major. */
#define PB_ABI_MAJOR 1
/** ABI minor version: grows with each append-only addition. A host supports every older minor. */
#define PB_ABI_MINOR 1
/** Packs a major/minor pair into one integer, for comparisons. */
#define PB_ABI_VERSION(major, minor) ((((uint32_t)(major)) << 16) | ((uint32_t)(minor) & 0xffffu))

/** The one symbol a plugin exports. */
#define PB_ENTRY_SYMBOL "pb_plugin_entry"

/** Marks a symbol as exported from the plugin's shared object. */
#if defined(__GNUC__) || defined(__clang__)
#define PB_EXPORT __attribute__((visibility("default")))
#else
#define PB_EXPORT
#endif

/** Gives a name C linkage in C++ (the entry point must be exported unmangled); empty in C. */
#ifdef __cplusplus
#define PB_EXTERN_C extern "C"
#else
#define PB_EXTERN_C
#endif

/**
 * The `size` a struct's writer recorded (its first member), or 0 for NULL. A function
 * rather than `(ptr) != NULL` in the macro below, so that a pointer the compiler knows
 * is non-NULL (`&local`, a C++ reference, a `nonnull` parameter) does not trip
 * -Waddress or -Wnonnull-compare.
 */
static inline uint32_t pb_struct_size_(const void *ptr) {
    return ptr == NULL ? 0u : *(const uint32_t *)ptr;
}

/** True when a struct written with `size` bytes contains `field` entirely (false for NULL). */
#define PB_HAS_FIELD(ptr, type, field) \
    ((size_t)pb_struct_size_((const void *)(ptr)) >= offsetof(type, field) + sizeof(((type *)0)->field))

/* Compile-time assertion usable from C99 and C++ (C11 _Static_assert is not C99). */
#if defined(__cplusplus) && __cplusplus >= 201103L
#define PB_STATIC_ASSERT(cond, name) static_assert(cond, #name)
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define PB_STATIC_ASSERT(cond, name) _Static_assert(cond, #name)
#else
#define PB_STATIC_ASSERT(cond, name) typedef char pb_static_assert_##name[(cond) ? 1 : -1]
#endif

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */

/** Every call across the boundary returns one of these (0 is success, negative is an error). */
typedef int32_t pb_status;
#define PB_OK 0                /* success */
#define PB_ERR_GENERIC (-1)    /* unspecified failure; log a reason through the host API first */
#define PB_ERR_ABI (-2)        /* version refused during negotiation */
#define PB_ERR_CONFIG (-3)     /* bad or missing configuration */
#define PB_ERR_NOMEM (-4)      /* out of memory */
#define PB_ERR_INVALID (-5)    /* invalid argument */
#define PB_ERR_UNSUPPORTED (-6)/* the operation is not supported */
#define PB_ERR_FULL (-7)       /* a buffer or queue is full; nothing was written */
#define PB_ERR_NOT_FOUND (-8)  /* no such key or device */

/* ------------------------------------------------------------------------ */
/* The event                                                                 */
/* ------------------------------------------------------------------------ */

/**
 * What happened to the device (pb_event.action). One value per event.
 * Not to be confused with the pb_event.flags bits below: PB_ACTION_RESYNC is an
 * action (a device-table record: "this device is present"), PB_EVENT_RESYNC is a
 * flag (an event the host synthesised after losing uevents). Both have clearer
 * aliases, PB_ACTION_PRESENT and PB_FLAG_SYNTHESISED; the old names stay and mean
 * the same values.
 */
#define PB_ACTION_UNKNOWN 0
#define PB_ACTION_ADD 1     /* device attached (or found at start-up: see PB_EVENT_COLDPLUG) */
#define PB_ACTION_REMOVE 2  /* device detached; attributes are its last known ones */
#define PB_ACTION_CHANGE 3  /* attributes changed */
#define PB_ACTION_BIND 4    /* a driver bound to the device */
#define PB_ACTION_UNBIND 5  /* a driver unbound from the device */
#define PB_ACTION_RESYNC 6  /* a device-table record: the device is present (resync callback, device_table) */
#define PB_ACTION_PRESENT PB_ACTION_RESYNC /* the clearer name of PB_ACTION_RESYNC */

/** pb_event.flags bits (any combination; test with `e->flags & PB_FLAG_...`). */
#define PB_EVENT_TRUNCATED (1u << 0)  /* a string or the interface list did not fit and was cut */
#define PB_EVENT_RESYNC (1u << 1)     /* synthesised by the host after an overflow, not seen as a uevent */
#define PB_EVENT_COLDPLUG (1u << 2)   /* from the enumeration at start-up */
#define PB_EVENT_FROM_TABLE (1u << 3) /* attributes come from the device table (e.g. a remove the host completed) */
/* The same bits under a PB_FLAG_ prefix, so that a flag never reads like an action. */
#define PB_FLAG_TRUNCATED PB_EVENT_TRUNCATED
#define PB_FLAG_SYNTHESISED PB_EVENT_RESYNC /* the clearer name of PB_EVENT_RESYNC */
#define PB_FLAG_COLDPLUG PB_EVENT_COLDPLUG
#define PB_FLAG_FROM_TABLE PB_EVENT_FROM_TABLE

/** Largest event, header plus strings: one ring slot. */
#define PB_EVENT_MAX_SIZE 2048u
/** Longest string the host stores (bytes, excluding the NUL); longer ones are cut and flagged. */
#define PB_STRING_MAX 255u
/** Most interfaces stored per event; more are counted in num_interfaces and flagged. */
#define PB_MAX_INTERFACES 32u

/**
 * A string inside an event: `length` bytes at `offset` from the start of the
 * event, followed by a NUL. offset == 0 means absent. UTF-8 is not guaranteed:
 * the host copies the bytes udev gave it.
 */
typedef struct pb_str {
    uint16_t offset; /* bytes from the start of the pb_event; 0 = absent */
    uint16_t length; /* bytes, excluding the terminating NUL */
} pb_str;

/** One USB interface: class, subclass and protocol codes from its descriptor. */
typedef struct pb_usb_interface {
    uint8_t iface_class;    /* bInterfaceClass */
    uint8_t iface_subclass; /* bInterfaceSubClass */
    uint8_t iface_protocol; /* bInterfaceProtocol */
} pb_usb_interface;

/**
 * A USB device event. The host writes it once into a ring slot and hands the
 * plugin a pointer to it: valid only until the callback returns. Copy what you
 * keep. Strings live in the same slot, after the header (see pb_event_string).
 */
typedef struct pb_event {
    uint32_t size;            /* sizeof(pb_event) as the host wrote it: where the string area starts */
    uint32_t total_size;      /* header plus string area, bytes (<= PB_EVENT_MAX_SIZE) */
    uint64_t sequence;        /* host sequence: 1, 2, 3... without gaps for one run */
    uint64_t timestamp_ns;    /* receipt time, CLOCK_MONOTONIC, nanoseconds */
    uint64_t kernel_seqnum;   /* the kernel's SEQNUM, 0 when unknown */
    uint16_t action;          /* PB_ACTION_* */
    uint16_t flags;           /* PB_EVENT_* bits */
    uint16_t busnum;          /* USB bus number, 0 when unknown */
    uint16_t devnum;          /* USB device address on the bus, 0 when unknown */
    uint16_t vendor_id;       /* idVendor */
    uint16_t product_id;      /* idProduct */
    uint16_t bcd_device;      /* bcdDevice (device release, BCD) */
    uint8_t device_class;     /* bDeviceClass */
    uint8_t device_subclass;  /* bDeviceSubClass */
    uint8_t device_protocol;  /* bDeviceProtocol */
    uint8_t num_interfaces;   /* interfaces the device has (bNumInterfaces or counted; not alternate settings) */
    uint8_t interfaces_len;   /* entries filled in interfaces[] (<= PB_MAX_INTERFACES); may exceed num_interfaces */
    uint8_t reserved0;        /* zero */
    uint32_t speed_kbps;      /* link speed in kbit/s (Mbit/s x 1000, so 1.5 Mbit/s is exact); 0 = unknown */
    pb_str syspath;           /* /sys/devices/... */
    pb_str devnode;           /* /dev/bus/usb/BBB/DDD */
    pb_str serial;            /* serial number string */
    pb_str manufacturer;      /* manufacturer string */
    pb_str product;           /* product string */
    pb_str driver;            /* bound driver name */
    pb_usb_interface interfaces[PB_MAX_INTERFACES]; /* the first interfaces_len are valid */
} pb_event;

PB_STATIC_ASSERT(sizeof(pb_str) == 4, pb_str_size);
PB_STATIC_ASSERT(sizeof(pb_usb_interface) == 3, pb_usb_interface_size);
PB_STATIC_ASSERT(offsetof(pb_event, sequence) == 8, pb_event_sequence_offset);
PB_STATIC_ASSERT(offsetof(pb_event, timestamp_ns) == 16, pb_event_timestamp_offset);
PB_STATIC_ASSERT(offsetof(pb_event, kernel_seqnum) == 24, pb_event_seqnum_offset);
PB_STATIC_ASSERT(offsetof(pb_event, action) == 32, pb_event_action_offset);
PB_STATIC_ASSERT(offsetof(pb_event, vendor_id) == 40, pb_event_vendor_offset);
PB_STATIC_ASSERT(offsetof(pb_event, device_class) == 46, pb_event_class_offset);
PB_STATIC_ASSERT(offsetof(pb_event, speed_kbps) == 52, pb_event_speed_offset);
PB_STATIC_ASSERT(offsetof(pb_event, syspath) == 56, pb_event_syspath_offset);
PB_STATIC_ASSERT(offsetof(pb_event, driver) == 76, pb_event_driver_offset);
PB_STATIC_ASSERT(offsetof(pb_event, interfaces) == 80, pb_event_interfaces_offset);
PB_STATIC_ASSERT(sizeof(pb_event) == 176, pb_event_size);

/** The bytes of string `s` of event `e`, NUL-terminated; "" when absent. */
static inline const char *pb_event_string(const pb_event *e, pb_str s) {
    if (s.offset == 0 || (uint32_t)s.offset + s.length >= e->total_size) return "";
    return (const char *)e + s.offset;
}

/** A short lowercase name for an action ("add", "remove"...). */
static inline const char *pb_action_name(uint16_t action) {
    switch (action) {
    case PB_ACTION_ADD: return "add";
    case PB_ACTION_REMOVE: return "remove";
    case PB_ACTION_CHANGE: return "change";
    case PB_ACTION_BIND: return "bind";
    case PB_ACTION_UNBIND: return "unbind";
    case PB_ACTION_RESYNC: return "resync";
    default: return "unknown";
    }
}

/* ------------------------------------------------------------------------ */
/* The host API: what the host offers a plugin                               */
/* ------------------------------------------------------------------------ */

/** The host's handle for one loaded plugin. Opaque; pass it back to every host call. */
typedef struct pb_host pb_host;

/** Log levels for pb_host_api.log (any other value is logged as PB_LOG_ERROR). */
#define PB_LOG_TRACE 0
#define PB_LOG_DEBUG 1
#define PB_LOG_INFO 2
#define PB_LOG_WARNING 3
#define PB_LOG_ERROR 4

/** Called once per present device by pb_host_api.device_table; `device` is valid during the call only. */
typedef void (*pb_device_visitor)(void *user, const pb_event *device);

/**
 * The host API table (after SQLite's sqlite3_api_routines). The host owns it and
 * hands it to the plugin once, as pb_negotiate_in.host_api; it stays valid until
 * the plugin's shutdown returns. Keep it with PB_HOST_API_DECLARE/PB_HOST_API_INIT.
 *
 * Threads: call these from any callback (the plugin's worker thread). The 1.x host
 * also accepts calls from threads the plugin started itself (each call takes a
 * short lock), but never before init is called or after shutdown returns.
 * Append-only: a function marked "since 1.N" with N > 0 exists only when
 * PB_HAS_FIELD(pb_api, pb_host_api, fn) is true. Every 1.0 function is never NULL.
 */
typedef struct pb_host_api {
    uint32_t size;        /* since 1.0: sizeof(pb_host_api) as the host knows it */
    uint32_t abi_version; /* since 1.0: PB_ABI_VERSION of the host (the same as pb_negotiate_in's pair) */

    /**
     * Since 1.0. Writes `message` (NUL-terminated; copied before the call returns) to the host
     * log at `level` (PB_LOG_*), labelled with the plugin's name, as one record: control
     * characters are written escaped (a newline as \n), a message over 4096 bytes is cut, and
     * past the daemon's plugins.log_rate (default 100 per second) messages are dropped and
     * counted. A NULL message is ignored.
     * The last PB_LOG_WARNING/PB_LOG_ERROR message is quoted when init fails.
     */
    void (*log)(pb_host *host, int32_t level, const char *message);
    /**
     * Since 1.0. Queues `len` bytes of `data` for `topic` (NUL-terminated) on the host's bounded
     * output queue; the host's sinks publish them (Redis: stream plugboard:{HOST}:plugin:<name>;
     * `plugboard test` compares them with its expected file). Both are copied before the call
     * returns; `data` may be NULL when `len` is 0. Returns:
     *   PB_OK          queued;
     *   PB_ERR_FULL    the queue is full: the record is dropped and counted (publish_refused);
     *   PB_ERR_INVALID a NULL topic, NULL data with len > 0, a topic over 256 bytes, or a record
     *                  over the daemon's plugins.max_record_bytes (at most and by default 64 KiB;
     *                  `plugboard inspect` prints it): dropped, counted.
     * Never blocks.
     */
    pb_status (*publish)(pb_host *host, const char *topic, const void *data, size_t len);
    /** Since 1.0. Adds `delta` to the plugin's counter `name` (copied; created on first use). */
    void (*counter_add)(pb_host *host, const char *name, uint64_t delta);
    /** Since 1.0. Sets the plugin's gauge `name` (copied) to `value`. */
    void (*gauge_set)(pb_host *host, const char *name, double value);
    /** Since 1.0. Records `value` (for durations: seconds) in the plugin's histogram `name` (copied). */
    void (*histogram_observe)(pb_host *host, const char *name, double value);
    /**
     * Since 1.0. The plugin's configuration value for `key` (the manifest's [config], then
     * --plugin-config overrides), or NULL when the key is not set. The string is the host's:
     * valid until shutdown returns, never modified, never to be freed.
     */
    const char *(*config_get)(pb_host *host, const char *key);
    /**
     * Since 1.0. Calls `visit(user, device)` synchronously, on the calling thread, once per USB
     * device present now (action PB_ACTION_PRESENT, not filtered by the manifest), from a
     * consistent snapshot; `device` is valid during that visit only. The table follows the
     * source, so it may already hold devices whose add this plugin has not been handed yet.
     * Returns PB_OK, or PB_ERR_INVALID when `visit` is NULL.
     */
    pb_status (*device_table)(pb_host *host, pb_device_visitor visit, void *user);
    /** Since 1.0. CLOCK_MONOTONIC in nanoseconds: the clock of pb_event.timestamp_ns. Any thread, any time. */
    uint64_t (*monotonic_ns)(void);
} pb_host_api;

/* The layout of the host API table, pinned (pointers are one machine word). */
#define PB_WORD_ ((size_t)sizeof(void (*)(void)))
PB_STATIC_ASSERT(offsetof(pb_host_api, abi_version) == 4, pb_host_api_abi_version_offset);
PB_STATIC_ASSERT(offsetof(pb_host_api, log) == 8, pb_host_api_log_offset);
PB_STATIC_ASSERT(offsetof(pb_host_api, publish) == 8 + 1 * PB_WORD_, pb_host_api_publish_offset);
PB_STATIC_ASSERT(offsetof(pb_host_api, counter_add) == 8 + 2 * PB_WORD_, pb_host_api_counter_add_offset);
PB_STATIC_ASSERT(offsetof(pb_host_api, gauge_set) == 8 + 3 * PB_WORD_, pb_host_api_gauge_set_offset);
PB_STATIC_ASSERT(offsetof(pb_host_api, histogram_observe) == 8 + 4 * PB_WORD_, pb_host_api_histogram_offset);
PB_STATIC_ASSERT(offsetof(pb_host_api, config_get) == 8 + 5 * PB_WORD_, pb_host_api_config_get_offset);
PB_STATIC_ASSERT(offsetof(pb_host_api, device_table) == 8 + 6 * PB_WORD_, pb_host_api_device_table_offset);
PB_STATIC_ASSERT(offsetof(pb_host_api, monotonic_ns) == 8 + 7 * PB_WORD_, pb_host_api_monotonic_ns_offset);
PB_STATIC_ASSERT(sizeof(pb_host_api) == 8 + 8 * PB_WORD_, pb_host_api_size_1_0);

/* ------------------------------------------------------------------------ */
/* The plugin table: what a plugin offers the host                           */
/* ------------------------------------------------------------------------ */

/** One configuration entry (both strings NUL-terminated, owned by the host). */
typedef struct pb_config_entry {
    const char *key;   /* since 1.0 */
    const char *value; /* since 1.0 */
} pb_config_entry;

/**
 * The plugin's configuration, passed to init: the manifest's [config] in file order, then
 * keys added by --plugin-config. Owned by the host; valid and unchanged until shutdown returns.
 */
typedef struct pb_config {
    uint32_t size;                   /* since 1.0: sizeof(pb_config) as the host knows it */
    uint32_t count;                  /* since 1.0: entries in `entries` */
    const pb_config_entry *entries;  /* since 1.0: `count` entries */
} pb_config;

PB_STATIC_ASSERT(offsetof(pb_config, entries) == 8, pb_config_entries_offset);

/**
 * The plugin table. The plugin owns it (normally a static const) and keeps it
 * valid while loaded. The host calls every callback on the plugin's own worker
 * thread, never two at once, in this order: init; restore_state (only in a build
 * replacing another in a hot reload); events and resync, any number of times;
 * save_state (only in a build being replaced); shutdown. `state` is what init
 * stored in *state (NULL when init is NULL or stored nothing).
 *
 * Only `events` is required; every other callback may be NULL.
 *
 * A hot reload (`plugboard run --watch`, docs/plugin-guide.md) while plugin P runs:
 *   1. The host loads a private copy of the new build (fresh globals, its own pb_api)
 *      and calls its entry point and then its init on a new worker thread, while the
 *      old build's worker still receives events: for that while two builds of P run
 *      at once, sharing nothing but what lies outside the process image (files,
 *      sockets, devices). If the new init fails, the old build keeps running and the
 *      new one is never called again (no shutdown).
 *   2. The old build finishes its current events call, then save_state (when it has
 *      save_state and restore_state), then shutdown, on the old worker thread.
 *   3. The new build's restore_state (when the old one saved state) runs on the new
 *      worker thread, then its events continue exactly after the old build's last
 *      event: none lost, none repeated.
 *
 * Since 1.1, a canary (`plugboard ctl reload NAME --canary`, process isolation) may also
 * call save_state of a plugin that negotiated minor >= 1 between two events calls, without
 * replacing it: the plugin then keeps running. save_state must therefore only describe the
 * state, never change or release it. A plugin that negotiated 1.0 is never asked so: its
 * canary starts from a fresh init instead.
 */
typedef struct pb_plugin_api {
    uint32_t size;        /* since 1.0: sizeof(pb_plugin_api) as the plugin knows it (>= the 1.0 size) */
    /**
     * Since 1.0; informational. The plugin's ABI version is the pair it answers in
     * pb_negotiate_out (plugin_major, plugin_minor): that is the one the host reads and
     * checks. The host ignores this field; it stays for compatibility. Set it to
     * PB_ABI_VERSION(PB_ABI_MAJOR, PB_ABI_MINOR).
     */
    uint32_t abi_version;
    const char *name;     /* since 1.0: short unique name, e.g. "usb-logger" (static storage; not NULL or empty) */
    const char *version;  /* since 1.0: the plugin's own version, e.g. "1.2.0" (static storage; NULL: "0.0.0") */

    /**
     * Since 1.0; may be NULL. Sets up the plugin, on its worker thread, after the entry point.
     * `host` and `config` stay valid until shutdown returns: keep them. Store private state in
     * *state (it starts NULL). Returns:
     *   PB_OK        the plugin runs;
     *   non-zero     the load is refused: the host reports init-failed with the status's name
     *                (PB_ERR_CONFIG for bad configuration) and the last warning/error the plugin
     *                logged, and calls nothing else, not even shutdown: release everything first.
     *                Other plugins run on.
     */
    pb_status (*init)(pb_host *host, const pb_config *config, void **state);
    /**
     * Since 1.0; required. Handles `count` (>= 1, at most the manifest's [worker] batch)
     * events that passed the manifest's [[match]] filter, oldest first. The array and the
     * events are valid only during the call (zero-copy ring slots): copy what you keep.
     * Returns PB_OK, or non-zero to report a failure: the host counts it (`errors`, with
     * "events callback returned PB_ERR_..." as last_error) and delivery continues with the
     * next batch; the batch is not delivered again. A call longer than the manifest's
     * deadline_ms is counted as an overrun, never interrupted.
     */
    pb_status (*events)(void *state, const pb_event *const *events, uint32_t count);
    /**
     * Since 1.0; may be NULL (the plugin then just carries on with the next events).
     * The plugin missed events (it fell a whole ring behind): here is every device present
     * now (action PB_ACTION_PRESENT, not filtered by the manifest). Pointers are valid only
     * during the call. A non-zero return is counted like one from events.
     */
    pb_status (*resync)(void *state, const pb_event *const *devices, uint32_t count);
    /**
     * Since 1.0; may be NULL. Hot reload only (see above), called only when the plugin has both
     * save_state and restore_state: writes the state to carry over into `buf` (capacity `cap`
     * bytes, valid during the call) and sets *len. The host offers 4096 bytes first. Returns:
     *   PB_OK        the first *len bytes (at most cap) are copied and handed to the new build;
     *   PB_ERR_FULL  with *len > cap: the host calls again with a buffer of exactly *len bytes
     *                (8 calls in all at most);
     *   anything else, PB_ERR_FULL without a larger *len, or still full after 8 calls:
     *                nothing is carried over; the new build starts afresh (not counted as an error).
     */
    pb_status (*save_state)(void *state, void *buf, size_t cap, size_t *len);
    /**
     * Since 1.0; may be NULL. After a hot reload, on the new build's worker thread, after its init
     * and before its first events: restores what the old build's save_state wrote (`data` valid
     * during the call only; it may come from an older build of the plugin, so check its format).
     * Non-zero is counted as one error and the plugin runs on with whatever state it has; so is a
     * NULL restore_state when the old build did save state (PB_ERR_UNSUPPORTED).
     */
    pb_status (*restore_state)(void *state, const void *data, size_t len);
    /**
     * Since 1.0; may be NULL. Releases everything, on the worker thread, once, after the last
     * other callback, and only when init succeeded. Publish and log calls made here still count.
     * After it returns the host API table, `host` and `config` are invalid and the library may be
     * unloaded (dlclose).
     */
    void (*shutdown)(void *state);
} pb_plugin_api;

/* The layout of the plugin table, pinned. Its 1.0 size is the smallest the host accepts. */
PB_STATIC_ASSERT(offsetof(pb_plugin_api, abi_version) == 4, pb_plugin_api_abi_version_offset);
PB_STATIC_ASSERT(offsetof(pb_plugin_api, name) == 8, pb_plugin_api_name_offset);
PB_STATIC_ASSERT(offsetof(pb_plugin_api, version) == 8 + 1 * PB_WORD_, pb_plugin_api_version_offset);
PB_STATIC_ASSERT(offsetof(pb_plugin_api, init) == 8 + 2 * PB_WORD_, pb_plugin_api_init_offset);
PB_STATIC_ASSERT(offsetof(pb_plugin_api, events) == 8 + 3 * PB_WORD_, pb_plugin_api_events_offset);
PB_STATIC_ASSERT(offsetof(pb_plugin_api, resync) == 8 + 4 * PB_WORD_, pb_plugin_api_resync_offset);
PB_STATIC_ASSERT(offsetof(pb_plugin_api, save_state) == 8 + 5 * PB_WORD_, pb_plugin_api_save_state_offset);
PB_STATIC_ASSERT(offsetof(pb_plugin_api, restore_state) == 8 + 6 * PB_WORD_, pb_plugin_api_restore_state_offset);
PB_STATIC_ASSERT(offsetof(pb_plugin_api, shutdown) == 8 + 7 * PB_WORD_, pb_plugin_api_shutdown_offset);
PB_STATIC_ASSERT(sizeof(pb_plugin_api) == 8 + 8 * PB_WORD_, pb_plugin_api_size_1_0);

/* ------------------------------------------------------------------------ */
/* Negotiation: the entry point                                              */
/* ------------------------------------------------------------------------ */

/** What the host offers. Valid only during the entry point's call, except host_api. */
typedef struct pb_negotiate_in {
    uint32_t size;                /* since 1.0: sizeof(pb_negotiate_in) as the host knows it */
    uint16_t host_major;          /* since 1.0: PB_ABI_MAJOR of the host */
    uint16_t host_minor;          /* since 1.0: PB_ABI_MINOR of the host */
    const pb_host_api *host_api;  /* since 1.0: the host API table, valid until shutdown returns */
} pb_negotiate_in;

/**
 * What the plugin answers. The host sets `size` before the call; the plugin fills the rest.
 * plugin_major/plugin_minor are THE plugin ABI version: the one the host reads and checks.
 */
typedef struct pb_negotiate_out {
    uint32_t size;                     /* since 1.0: sizeof(pb_negotiate_out) as the host knows it */
    uint16_t plugin_major;             /* since 1.0: must equal host_major */
    uint16_t plugin_minor;             /* since 1.0: <= host_minor: the plugin speaks the host's dialect or older */
    const pb_plugin_api *plugin_api;   /* since 1.0: the plugin's table (kept valid while loaded) */
} pb_negotiate_out;

PB_STATIC_ASSERT(offsetof(pb_negotiate_in, host_api) == 8, pb_negotiate_in_host_api_offset);
PB_STATIC_ASSERT(offsetof(pb_negotiate_out, plugin_api) == 8, pb_negotiate_out_plugin_api_offset);
PB_STATIC_ASSERT(sizeof(pb_negotiate_in) == 8 + PB_WORD_, pb_negotiate_in_size);
PB_STATIC_ASSERT(sizeof(pb_negotiate_out) == 8 + PB_WORD_, pb_negotiate_out_size);

/**
 * The entry point, `pb_plugin_entry`. The host calls it once per load of the library, on its
 * loading thread (start-up, or the --watch reloader: not the worker thread), before init.
 * `in` and `out` are valid only during the call. Returns:
 *   PB_OK       after filling `out`: the host checks the version and the table, then calls init;
 *   PB_ERR_ABI  to refuse a host whose major differs (or whose minor is too old for the
 *               plugin): reported as abi-mismatch when out->plugin_major names another major;
 *   other non-zero: reported as negotiation-refused with the status.
 */
typedef pb_status (*pb_entry_fn)(const pb_negotiate_in *in, pb_negotiate_out *out);

/**
 * Declare your entry point with this, in exactly one file of your plugin. In C++ it
 * declares the function `extern "C"`, so the exported name is `pb_plugin_entry` and
 * not a mangled one (a macro expands where it is used, outside this header's
 * `extern "C"` block). Writing the function by hand in C++? Declare it `extern "C"`.
 */
#define PB_PLUGIN_ENTRY(in, out) \
    PB_EXTERN_C PB_EXPORT pb_status pb_plugin_entry(const pb_negotiate_in *in, pb_negotiate_out *out)

/* ------------------------------------------------------------------------ */
/* The host API table in a plugin: the init macro pair                       */
/* ------------------------------------------------------------------------ */

/** Marks a symbol as private to the plugin's shared object (never exported). */
#if defined(__GNUC__) || defined(__clang__)
#define PB_HIDDEN __attribute__((visibility("hidden")))
#else
#define PB_HIDDEN
#endif

/* A declaration with C linkage: `extern "C"` in C++, `extern` in C. */
#ifdef __cplusplus
#define PB_EXTERN_DECL_ extern "C"
#else
#define PB_EXTERN_DECL_ extern
#endif

/**
 * The init macro pair (after SQLite's SQLITE_EXTENSION_INIT1/2). The host API table reaches a
 * plugin once, in its entry point (pb_negotiate_in.host_api); these keep it in one variable,
 * `pb_api`, so no plugin hand-writes a global:
 *
 *     PB_HOST_API_DECLARE;                       // file scope, in exactly one source file
 *     PB_PLUGIN_ENTRY(in, out) {
 *         PB_HOST_API_INIT(in);                  // before returning: init may call pb_api
 *         return pb_negotiate_default(in, out, &plugin);
 *     }
 *     ... pb_api->log(host, PB_LOG_INFO, "ready"); // in init and every later callback
 *
 * Other source files of the same plugin write PB_HOST_API_EXTERN; at file scope (like
 * SQLITE_EXTENSION_INIT3). `pb_api` is NULL until PB_HOST_API_INIT runs, is hidden (two
 * plugins never share it), and is the same table for the plugin's whole life: a hot reload
 * loads a private copy of the new build, whose entry point sets its own `pb_api`.
 */
#define PB_HOST_API_DECLARE PB_HOST_API_EXTERN; PB_HIDDEN const pb_host_api *pb_api = NULL
/** Declares `pb_api` in the plugin's other source files (see PB_HOST_API_DECLARE). */
#define PB_HOST_API_EXTERN PB_EXTERN_DECL_ PB_HIDDEN const pb_host_api *pb_api
/** Stores the host API table from the entry point's `in` (NULL-safe) in `pb_api`. */
#define PB_HOST_API_INIT(in) ((void)(pb_api = pb_host_api_of_(in)))

/** The host API table `in` carries, or NULL (a function, so a non-NULL `in` trips no warning). */
static inline const pb_host_api *pb_host_api_of_(const pb_negotiate_in *in) {
    return in == NULL ? NULL : in->host_api;
}

/**
 * Standard negotiation for a plugin written against this header: accepts a
 * host of the same major whose minor is at least PB_ABI_MINOR, and answers
 * PB_ABI_MAJOR.PB_ABI_MINOR with `api`.
 */
static inline pb_status pb_negotiate_default(const pb_negotiate_in *in, pb_negotiate_out *out,
                                             const pb_plugin_api *api) {
    if (in == NULL || out == NULL || in->host_major != PB_ABI_MAJOR ||
        (uint32_t)in->host_minor + 1u < (uint32_t)PB_ABI_MINOR + 1u)
        return PB_ERR_ABI;
    out->plugin_major = PB_ABI_MAJOR;
    out->plugin_minor = PB_ABI_MINOR;
    out->plugin_api = api;
    return PB_OK;
}

#ifdef __cplusplus
}
#endif

#endif /* PLUGBOARD_H */
