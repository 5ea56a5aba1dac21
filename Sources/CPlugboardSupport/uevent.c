/*
 * Uevents read from the monitor socket without libudev's device object (pbs_uevent.h).
 * The acceptance rules follow systemd 252's device-monitor.c and device-private.c line by line,
 * so a message libudev would refuse is refused here too; the differences are noted inline.
 */
#define _GNU_SOURCE
#include "pbs_uevent.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* sysfs attributes read for one message, and the room for their values. */
#define PBS_UEVENT_MAX_ATTRS 24
#define PBS_UEVENT_ATTR_ROOM 8192

typedef struct pbs_uevent {
    /* The datagram, with a NUL after it; entries are NUL-terminated in place. */
    char buf[PBS_UEVENT_BUFFER + 1];
    int length;
    /* Offsets in `buf` of each entry's key and value ("KEY\0VALUE\0" once parsed). */
    uint16_t count;
    uint16_t key[PBS_UEVENT_MAX_PROPERTIES];
    uint16_t value[PBS_UEVENT_MAX_PROPERTIES];
    /* Each key's length and first byte (key_tag), so a lookup compares bytes only on a match. */
    uint32_t tag[PBS_UEVENT_MAX_PROPERTIES];
    /* The special entries (pointers into `buf`), as libudev reads them. */
    const char *action;
    const char *subsystem;
    const char *devtype;
    const char *devname;
    const char *driver_property;
    uint64_t seqnum;
    /* "/sys" + DEVPATH, and the device node ("/dev/" + DEVNAME unless DEVNAME is absolute). */
    char syspath[4096 + 8];
    char devnode[4096 + 8];
    int has_devnode;
    /* The driver link's name, read from sysfs when the message has no DRIVER (as libudev does). */
    char driver[256];
    int driver_state; /* 0 not looked up, 1 found, 2 none */
    /* sysfs attributes read for this message: name (a copy) and value. */
    int attr_count;
    char attr_name[PBS_UEVENT_MAX_ATTRS][32];
    int attr_value[PBS_UEVENT_MAX_ATTRS]; /* offset in attr_room, or -1: unreadable */
    char attr_room[PBS_UEVENT_ATTR_ROOM];
    int attr_used;
    /* Why a message was refused (PBS_UEVENT_REFUSED): a static string. */
    const char *refusal;
} pbs_uevent;

pbs_uevent *pbs_uevent_create(void) { return calloc(1, sizeof(pbs_uevent)); }
void pbs_uevent_destroy(pbs_uevent *ev) { free(ev); }
const char *pbs_uevent_action(const pbs_uevent *ev) { return ev->action; }
const char *pbs_uevent_subsystem(const pbs_uevent *ev) { return ev->subsystem; }
const char *pbs_uevent_devtype(const pbs_uevent *ev) { return ev->devtype; }
uint64_t pbs_uevent_seqnum(const pbs_uevent *ev) { return ev->seqnum; }
const char *pbs_uevent_syspath(const pbs_uevent *ev) { return ev->syspath; }
const char *pbs_uevent_devnode(const pbs_uevent *ev) { return ev->has_devnode ? ev->devnode : NULL; }
const char *pbs_uevent_refusal(const pbs_uevent *ev) { return ev->refusal; }
int pbs_uevent_count(const pbs_uevent *ev) { return ev->count; }
const char *pbs_uevent_key(const pbs_uevent *ev, int i) { return i >= 0 && i < ev->count ? ev->buf + ev->key[i] : NULL; }
const char *pbs_uevent_value(const pbs_uevent *ev, int i) { return i >= 0 && i < ev->count ? ev->buf + ev->value[i] : NULL; }
char *pbs_uevent_buffer(pbs_uevent *ev) { return ev->buf; }

/* libudev's header before a udev-group message's properties (monitor_netlink_header). */
struct udev_header {
    char prefix[8];            /* "libudev" */
    uint32_t magic;            /* htobe32(0xfeedcafe) */
    uint32_t header_size;
    uint32_t properties_off;
    uint32_t properties_len;
    uint32_t filter_subsystem_hash;
    uint32_t filter_devtype_hash;
    uint32_t filter_tag_bloom_hi;
    uint32_t filter_tag_bloom_lo;
};

static int refuse(pbs_uevent *ev, const char *why) {
    ev->refusal = why;
    return PBS_UEVENT_REFUSED;
}

/* A decimal number that fits in 64 bits, nothing else (safe_atou64 without the sign and spaces
 * it tolerates: udevd and the kernel write plain digits). */
static int parse_u64(const char *s, uint64_t *out) {
    if (*s < '0' || *s > '9') return 0;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return 0;
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

/* A key's length (up to 2^24) and first byte: equal keys have equal tags. */
static inline uint32_t key_tag(const char *key, size_t n) {
    return (uint32_t)(n & 0xffffff) << 8 | (unsigned char)key[0];
}

static int known_action(const char *a) {
    static const char *const actions[] = {"add", "remove", "change", "move", "online", "offline", "bind", "unbind"};
    for (size_t i = 0; i < sizeof actions / sizeof *actions; i++)
        if (strcmp(a, actions[i]) == 0) return 1;
    return 0;
}

int pbs_uevent_parse(pbs_uevent *ev, int length, uint32_t sender_groups, uint32_t sender_pid, int has_credentials,
                     uint32_t sender_uid) {
    ev->count = 0;
    ev->action = ev->subsystem = ev->devtype = ev->devname = ev->driver_property = NULL;
    ev->seqnum = 0;
    ev->syspath[0] = ev->devnode[0] = 0;
    ev->has_devnode = 0;
    ev->driver_state = 0;
    ev->attr_count = 0;
    ev->attr_used = 0;
    ev->refusal = NULL;
    if (length < 0 || length > PBS_UEVENT_BUFFER) return refuse(ev, "invalid message length");
    ev->length = length;
    ev->buf[length] = 0;
    if (length < 32) return refuse(ev, "invalid message length");
    /* Group 0 is a unicast message: libudev trusts one only from a sender it was told to trust,
     * which this process never sets. A kernel-group message comes from the kernel (pid 0). */
    if (sender_groups == 0) return refuse(ev, "unicast netlink message ignored");
    if (sender_groups == 1 && sender_pid > 0) return refuse(ev, "multicast kernel netlink message from a process ignored");
    if (!has_credentials) return refuse(ev, "no sender credentials received");
    if (sender_uid != 0) return refuse(ev, "sender is not root");

    size_t pos;
    if (strcmp(ev->buf, "libudev") == 0) {
        struct udev_header h;
        memcpy(&h, ev->buf, sizeof h);
        if (h.magic != __builtin_bswap32(0xfeedcafeu)) return refuse(ev, "invalid message signature");
        /* libudev adds 32 in 32 bits (an offset near 4 GiB wraps and passes); 64 bits here. */
        if ((uint64_t)h.properties_off + 32 > (uint64_t)length) return refuse(ev, "invalid offset for properties");
        pos = h.properties_off;
    } else {
        pos = strlen(ev->buf) + 1;
        if (pos < sizeof "a@/d" || pos >= (size_t)length) return refuse(ev, "invalid kernel message length");
        if (!strstr(ev->buf, "@/")) return refuse(ev, "invalid kernel message header");
    }

    /* KEY=VALUE entries, each NUL-terminated; a value is cut at its first newline. */
    const char *devpath = NULL;
    while (pos < (size_t)length) {
        char *key = ev->buf + pos;
        char *end = memchr(key, 0, (size_t)length - pos);
        if (!end) return refuse(ev, "an entry is not NUL-terminated");
        pos += (size_t)(end - key) + 1;
        /* One pass: the entry ends at its first newline (as libudev cuts it), the key at the
         * first '=' before that. */
        char *eq = NULL;
        for (char *p = key; *p; p++) {
            if (*p == '\n' || *p == '\r') {
                *p = 0;
                break;
            }
            if (*p == '=' && !eq) eq = p;
        }
        if (!eq) return refuse(ev, "an entry is not a KEY=VALUE pair");
        *eq = 0;
        const char *value = eq + 1;
        size_t klen = (size_t)(eq - key);
        if (ev->count == PBS_UEVENT_MAX_PROPERTIES) return refuse(ev, "too many properties");
        ev->key[ev->count] = (uint16_t)(key - ev->buf);
        ev->value[ev->count] = (uint16_t)(value - ev->buf);
        ev->tag[ev->count] = key_tag(key, klen);
        ev->count++;
        /* The keys libudev reads specially, told apart by length first. */
        switch (klen) {
        case 6:
            if (memcmp(key, "ACTION", 6) == 0) {
                if (!known_action(value)) return refuse(ev, "unknown ACTION");
                ev->action = value;
            } else if (memcmp(key, "DRIVER", 6) == 0) {
                ev->driver_property = value;
            } else if (memcmp(key, "SEQNUM", 6) == 0) {
                if (!parse_u64(value, &ev->seqnum)) return refuse(ev, "SEQNUM is not a number");
            }
            break;
        case 7:
            if (memcmp(key, "DEVPATH", 7) == 0) {
                if (value[0] != '/') return refuse(ev, "DEVPATH does not start with /");
                devpath = value;
            } else if (memcmp(key, "DEVTYPE", 7) == 0) {
                ev->devtype = value;
            } else if (memcmp(key, "DEVNAME", 7) == 0) {
                ev->devname = value;
            } else if (memcmp(key, "DISKSEQ", 7) == 0 || memcmp(key, "IFINDEX", 7) == 0) {
                uint64_t ignored;
                if (!parse_u64(value, &ignored)) return refuse(ev, "a numeric property is not a number");
            }
            break;
        case 9:
            if (memcmp(key, "SUBSYSTEM", 9) == 0) ev->subsystem = value;
            break;
        case 16:
            if (memcmp(key, "USEC_INITIALIZED", 16) == 0) {
                uint64_t ignored;
                if (!parse_u64(value, &ignored)) return refuse(ev, "a numeric property is not a number");
            }
            break;
        default:
            break;
        }
    }
    if (!devpath || !ev->subsystem || !ev->action || ev->seqnum == 0)
        return refuse(ev, "the message lacks DEVPATH, SUBSYSTEM, ACTION or SEQNUM");
    size_t n = strlen(devpath);
    if (n + 5 > sizeof ev->syspath) return refuse(ev, "DEVPATH is too long");
    memcpy(ev->syspath, "/sys", 4);
    memcpy(ev->syspath + 4, devpath, n + 1);
    if (ev->devname) {
        /* As sd-device: a name not under /dev gets "/dev/" in front. */
        const char *d = ev->devname;
        int under_dev = strncmp(d, "/dev", 4) == 0 && (d[4] == 0 || d[4] == '/');
        size_t m = strlen(d);
        if (m + 6 > sizeof ev->devnode) return refuse(ev, "DEVNAME is too long");
        if (under_dev) {
            memcpy(ev->devnode, d, m + 1);
        } else {
            memcpy(ev->devnode, "/dev/", 5);
            memcpy(ev->devnode + 5, d, m + 1);
        }
        ev->has_devnode = 1;
    }
    /* The monitor's only filter: subsystem "usb", any devtype. */
    if (strcmp(ev->subsystem, "usb") != 0) return PBS_UEVENT_FILTERED;
    return PBS_UEVENT_OK;
}

int pbs_uevent_receive(int fd, pbs_uevent *ev) {
    struct iovec iov = {ev->buf, PBS_UEVENT_BUFFER};
    union {
        struct cmsghdr align;
        char bytes[CMSG_SPACE(sizeof(struct ucred))];
    } control;
    struct sockaddr_nl sender;
    memset(&sender, 0, sizeof sender);
    struct msghdr msg = {
        .msg_name = &sender,
        .msg_namelen = sizeof sender,
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = &control,
        .msg_controllen = sizeof control,
    };
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return PBS_UEVENT_NONE;
        return PBS_UEVENT_ERROR;
    }
    if (msg.msg_flags & MSG_TRUNC) {
        ev->length = 0;
        return refuse(ev, "invalid message length");
    }
    int has_credentials = 0;
    uint32_t uid = UINT32_MAX;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
            struct ucred cred;
            memcpy(&cred, CMSG_DATA(c), sizeof cred);
            uid = cred.uid;
            has_credentials = 1;
        }
    }
    return pbs_uevent_parse(ev, (int)n, sender.nl_groups, sender.nl_pid, has_credentials, uid);
}

const char *pbs_uevent_get(const pbs_uevent *ev, const char *key) {
    size_t n = strlen(key);
    uint32_t tag = key_tag(key, n);
    for (int i = (int)ev->count - 1; i >= 0; i--)
        if (ev->tag[i] == tag && memcmp(ev->buf + ev->key[i], key, n + 1) == 0) return ev->buf + ev->value[i];
    return NULL;
}

/* Reads `path` into attr_room (at most what is left, one page at most as sysfs serves), trailing
 * newlines cut; the value's offset, or -1. */
static int read_attribute(pbs_uevent *ev, const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return -1;
    int room = PBS_UEVENT_ATTR_ROOM - ev->attr_used - 1;
    if (room > 4096) room = 4096;
    int at = ev->attr_used, got = 0;
    while (got < room) {
        ssize_t r = read(fd, ev->attr_room + at + got, (size_t)(room - got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { got = -1; break; }
        if (r == 0) break;
        got += (int)r;
        /* sysfs serves an attribute whole in the first read (and a regular file reads short
         * only at its end): a short read is the end, without a second read(2) to hear it. */
        if (got < room) break;
    }
    close(fd);
    if (got < 0) return -1;
    while (got > 0 && (ev->attr_room[at + got - 1] == '\n' || ev->attr_room[at + got - 1] == '\r')) got--;
    ev->attr_room[at + got] = 0;
    ev->attr_used += got + 1;
    return at;
}

const char *pbs_uevent_sysattr(pbs_uevent *ev, const char *name) {
    for (int i = 0; i < ev->attr_count; i++)
        if (strcmp(ev->attr_name[i], name) == 0)
            return ev->attr_value[i] < 0 ? NULL : ev->attr_room + ev->attr_value[i];
    char path[sizeof ev->syspath + 64];
    size_t a = strlen(ev->syspath), b = strlen(name);
    if (a + 1 + b + 1 > sizeof path || strchr(name, '/')) return NULL;
    memcpy(path, ev->syspath, a);
    path[a] = '/';
    memcpy(path + a + 1, name, b + 1);
    int value = ev->attr_used < PBS_UEVENT_ATTR_ROOM - 1 ? read_attribute(ev, path) : -1;
    if (ev->attr_count < PBS_UEVENT_MAX_ATTRS && b < sizeof ev->attr_name[0]) {
        memcpy(ev->attr_name[ev->attr_count], name, b + 1);
        ev->attr_value[ev->attr_count] = value;
        ev->attr_count++;
    }
    return value < 0 ? NULL : ev->attr_room + value;
}

const char *pbs_uevent_driver(pbs_uevent *ev) {
    if (ev->driver_property) return ev->driver_property;
    if (ev->driver_state == 0) {
        char path[sizeof ev->syspath + 8], target[4096];
        size_t a = strlen(ev->syspath);
        memcpy(path, ev->syspath, a);
        memcpy(path + a, "/driver", 8);
        ssize_t n = readlink(path, target, sizeof target - 1);
        ev->driver_state = 2;
        if (n > 0) {
            target[n] = 0;
            const char *slash = strrchr(target, '/');
            const char *base = slash ? slash + 1 : target;
            size_t m = strlen(base);
            if (m > 0 && m < sizeof ev->driver) {
                memcpy(ev->driver, base, m + 1);
                ev->driver_state = 1;
            }
        }
    }
    return ev->driver_state == 1 ? ev->driver : NULL;
}
