/*
 * One uevent read from a udev monitor's netlink socket and parsed in place, without libudev's
 * per-message device object (docs/udev.md, "Reading uevents"). The checks are libudev's
 * (systemd 252, `device_monitor_receive_device` and `device_new_from_nulstr`), so the same
 * messages are accepted and refused; only the work per message differs: one `recvmsg` into a
 * buffer owned by the caller and an index of its KEY=VALUE entries, no allocation.
 */
#ifndef PBS_UEVENT_H
#define PBS_UEVENT_H

#include <stddef.h>
#include <stdint.h>

/* libudev's receive buffer: a longer message is cut by the kernel and refused (MSG_TRUNC). */
#define PBS_UEVENT_BUFFER 8192
/* Entries indexed per message; a message with more is refused (udevd sends well under 100). */
#define PBS_UEVENT_MAX_PROPERTIES 256

/* What `pbs_uevent_receive` did with one datagram. */
#define PBS_UEVENT_OK 1          /* a device event: its parts are readable below */
#define PBS_UEVENT_NONE 0        /* nothing queued (EAGAIN) */
#define PBS_UEVENT_ERROR (-1)    /* recvmsg failed: errno says why (ENOBUFS: the queue overflowed) */
#define PBS_UEVENT_FILTERED (-2) /* well-formed, but not subsystem "usb" (libudev's filter) */
#define PBS_UEVENT_REFUSED (-3)  /* refused: `pbs_uevent_refusal` says why (untrusted sender, bad format) */

/* One message's buffer and index (opaque: its layout is uevent.c's). */
typedef struct pbs_uevent pbs_uevent;

/* A buffer for one message at a time, reused for each; NULL when out of memory. */
pbs_uevent *pbs_uevent_create(void);
void pbs_uevent_destroy(pbs_uevent *ev);

/*
 * Receives and parses one message from `fd` (a NETLINK_KOBJECT_UEVENT socket set up by
 * libudev: bound, SO_PASSCRED on). Returns one of the PBS_UEVENT_ codes; a refused or
 * filtered message is consumed, so reading on cannot spin.
 */
int pbs_uevent_receive(int fd, pbs_uevent *ev);

/*
 * Parses `length` bytes already in the buffer (`pbs_uevent_buffer`) (a datagram as the socket would hand it) with the
 * sender's group, pid and uid; what `pbs_uevent_receive` does after its `recvmsg`. For tests.
 */
int pbs_uevent_parse(pbs_uevent *ev, int length, uint32_t sender_groups, uint32_t sender_pid, int has_credentials,
                     uint32_t sender_uid);

/* The message's parts (PBS_UEVENT_OK): ACTION, SUBSYSTEM, DEVTYPE (NULL when absent), SEQNUM,
 * "/sys" + DEVPATH, and the device node ("/dev/" + DEVNAME unless absolute; NULL when none). */
const char *pbs_uevent_action(const pbs_uevent *ev);
const char *pbs_uevent_subsystem(const pbs_uevent *ev);
const char *pbs_uevent_devtype(const pbs_uevent *ev);
uint64_t pbs_uevent_seqnum(const pbs_uevent *ev);
const char *pbs_uevent_syspath(const pbs_uevent *ev);
const char *pbs_uevent_devnode(const pbs_uevent *ev);
/* Why the last message was refused (PBS_UEVENT_REFUSED), a static string; NULL otherwise. */
const char *pbs_uevent_refusal(const pbs_uevent *ev);
/* The message's KEY=VALUE entries in order (`plugboard monitor --properties`). */
int pbs_uevent_count(const pbs_uevent *ev);
const char *pbs_uevent_key(const pbs_uevent *ev, int i);
const char *pbs_uevent_value(const pbs_uevent *ev, int i);
/* The buffer a test writes a datagram into before `pbs_uevent_parse` (PBS_UEVENT_BUFFER bytes). */
char *pbs_uevent_buffer(pbs_uevent *ev);

/* The value of property `key` (the last one, if it repeats), or NULL. */
const char *pbs_uevent_get(const pbs_uevent *ev, const char *key);

/* The sysfs attribute `name` of the device (read once per message, trailing newlines cut),
 * or NULL when it cannot be read. */
const char *pbs_uevent_sysattr(pbs_uevent *ev, const char *name);

/* The device's driver: DRIVER, else the name of its sysfs `driver` link; NULL when none. */
const char *pbs_uevent_driver(pbs_uevent *ev);

#endif
