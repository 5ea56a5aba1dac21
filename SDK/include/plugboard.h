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
#define PB_ABI_MINOR 0
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

/** What happened to the device (pb_event.action). */
#define PB_ACTION_UNKNOWN 0
#define PB_ACTION_ADD 1     /* device attached (or found at start-up: see PB_EVENT_COLDPLUG) */
#define PB_ACTION_REMOVE 2  /* device detached; attributes are its last known ones */
#define PB_ACTION_CHANGE 3  /* attributes changed */
#define PB_ACTION_BIND 4    /* a driver bound to the device */
#define PB_ACTION_UNBIND 5  /* a driver unbound from the device */
#define PB_ACTION_RESYNC 6  /* a device-table record: the device is present (resync callback, snapshots) */

/** pb_event.flags bits. */
#define PB_EVENT_TRUNCATED (1u << 0)  /* a string or the interface list did not fit and was cut */
#define PB_EVENT_RESYNC (1u << 1)     /* synthesised by the host after an overflow, not seen as a uevent */
#define PB_EVENT_COLDPLUG (1u << 2)   /* from the enumeration at start-up */
#define PB_EVENT_FROM_TABLE (1u << 3) /* attributes come from the device table (e.g. on remove) */

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

/** Log levels for pb_host_api.log. */
#define PB_LOG_TRACE 0
#define PB_LOG_DEBUG 1
#define PB_LOG_INFO 2
#define PB_LOG_WARNING 3
#define PB_LOG_ERROR 4

/** Called once per present device by pb_host_api.device_table; `device` is valid during the call only. */
typedef void (*pb_device_visitor)(void *user, const pb_event *device);

/**
 * The host API table. The host owns it; it stays valid until the plugin's
 * shutdown returns. Append-only: check PB_HAS_FIELD(api, pb_host_api, fn)
 * before calling a function added after 1.0. Every function is safe to call
 * from the plugin's worker thread; none may be called after shutdown.
 */
typedef struct pb_host_api {
    uint32_t size;        /* sizeof(pb_host_api) as the host knows it */
    uint32_t abi_version; /* PB_ABI_VERSION of the host */

    /** Writes `message` (NUL-terminated, copied) to the host log, labelled with the plugin's name. */
    void (*log)(pb_host *host, int32_t level, const char *message);
    /**
     * Queues `len` bytes of `data` for `topic` (NUL-terminated) on the host's output
     * queue; the host publishes them (to Redis, when configured). Both are copied.
     * Returns PB_ERR_FULL when the queue is full (counted by the host) and
     * PB_ERR_INVALID when the record is larger than the host accepts.
     */
    pb_status (*publish)(pb_host *host, const char *topic, const void *data, size_t len);
    /** Adds `delta` to the plugin's counter `name` (created on first use). */
    void (*counter_add)(pb_host *host, const char *name, uint64_t delta);
    /** Sets the plugin's gauge `name` to `value`. */
    void (*gauge_set)(pb_host *host, const char *name, double value);
    /** Records `value` (for durations: seconds) in the plugin's histogram `name`. */
    void (*histogram_observe)(pb_host *host, const char *name, double value);
    /** The plugin's configuration value for `key`, or NULL. Owned by the host, valid until shutdown. */
    const char *(*config_get)(pb_host *host, const char *key);
    /** Calls `visit` once per device currently present, under a consistent snapshot. */
    pb_status (*device_table)(pb_host *host, pb_device_visitor visit, void *user);
    /** CLOCK_MONOTONIC in nanoseconds: the clock of pb_event.timestamp_ns. */
    uint64_t (*monotonic_ns)(void);
} pb_host_api;

/* ------------------------------------------------------------------------ */
/* The plugin table: what a plugin offers the host                           */
/* ------------------------------------------------------------------------ */

/** One configuration entry (both strings NUL-terminated, owned by the host). */
typedef struct pb_config_entry {
    const char *key;
    const char *value;
} pb_config_entry;

/** The plugin's configuration, passed to init. Valid until shutdown returns. */
typedef struct pb_config {
    uint32_t size;                   /* sizeof(pb_config) as the host knows it */
    uint32_t count;                  /* entries in `entries` */
    const pb_config_entry *entries;  /* `count` entries */
} pb_config;

/**
 * The plugin table. The plugin owns it (normally a static const) and keeps it
 * valid while loaded. Every callback runs on the plugin's own worker thread,
 * never two at once. `state` is what init stored in *state.
 */
typedef struct pb_plugin_api {
    uint32_t size;        /* sizeof(pb_plugin_api) as the plugin knows it */
    uint32_t abi_version; /* PB_ABI_VERSION the plugin speaks (also reported by negotiation) */
    const char *name;     /* short name, e.g. "usb-logger" (static storage) */
    const char *version;  /* the plugin's own version, e.g. "1.2.0" (static storage) */

    /** Sets up the plugin. Store private state in *state. Non-zero refuses the load. */
    pb_status (*init)(pb_host *host, const pb_config *config, void **state);
    /** Handles `count` events, oldest first. Pointers are valid only during the call. */
    pb_status (*events)(void *state, const pb_event *const *events, uint32_t count);
    /**
     * The plugin missed events (it fell a whole ring behind, or the host lost
     * uevents): here is every device present now (action PB_ACTION_RESYNC).
     * May be NULL. Pointers are valid only during the call.
     */
    pb_status (*resync)(void *state, const pb_event *const *devices, uint32_t count);
    /**
     * Before a hot reload: writes the state to carry over into buf (capacity
     * `cap`), sets *len. If cap is too small, sets *len to the size needed and
     * returns PB_ERR_FULL; the host retries with a larger buffer. May be NULL.
     */
    pb_status (*save_state)(void *state, void *buf, size_t cap, size_t *len);
    /** After a hot reload: restores what save_state wrote. May be NULL. */
    pb_status (*restore_state)(void *state, const void *data, size_t len);
    /** Releases everything. Called once; no callback follows. */
    void (*shutdown)(void *state);
} pb_plugin_api;

/* ------------------------------------------------------------------------ */
/* Negotiation: the entry point                                              */
/* ------------------------------------------------------------------------ */

/** What the host offers. */
typedef struct pb_negotiate_in {
    uint32_t size;                /* sizeof(pb_negotiate_in) as the host knows it */
    uint16_t host_major;          /* PB_ABI_MAJOR of the host */
    uint16_t host_minor;          /* PB_ABI_MINOR of the host */
    const pb_host_api *host_api;  /* valid until shutdown returns */
} pb_negotiate_in;

/** What the plugin answers. The host sets `size` before the call; the plugin fills the rest. */
typedef struct pb_negotiate_out {
    uint32_t size;                     /* sizeof(pb_negotiate_out) as the host knows it */
    uint16_t plugin_major;             /* must equal host_major */
    uint16_t plugin_minor;             /* <= host_minor: the plugin speaks the host's dialect or older */
    const pb_plugin_api *plugin_api;   /* the plugin's table */
} pb_negotiate_out;

PB_STATIC_ASSERT(sizeof(pb_negotiate_in) == 16, pb_negotiate_in_size);
PB_STATIC_ASSERT(sizeof(pb_negotiate_out) == 16, pb_negotiate_out_size);

/**
 * The entry point. Return PB_OK after filling `out`, or PB_ERR_ABI to refuse
 * a host whose major differs (or whose minor is too old for the plugin).
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

/**
 * Standard negotiation for a plugin written against this header: accepts a
 * host of the same major whose minor is at least PB_ABI_MINOR.
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
