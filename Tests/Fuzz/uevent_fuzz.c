/*
 * libFuzzer harness for the udev source's uevent parser (pbs_uevent_parse, uevent.c): every input
 * is a datagram as the socket hands it, parsed as from a root sender in the udev group and in the
 * kernel group. Checked: no out-of-bounds access (built with AddressSanitizer), and an accepted
 * message holds what the source relies on. `make fuzz-uevent` builds and runs it.
 */
#include <stdlib.h>
#include <string.h>
#include "pbs_uevent.h"

static pbs_uevent *ev;

static void check(const uint8_t *data, size_t size, uint32_t groups) {
    if (size > PBS_UEVENT_BUFFER) size = PBS_UEVENT_BUFFER;
    memcpy(pbs_uevent_buffer(ev), data, size);
    int r = pbs_uevent_parse(ev, (int)size, groups, 0, 1, 0);
    if (r == PBS_UEVENT_REFUSED) {
        if (!pbs_uevent_refusal(ev)) abort();
        return;
    }
    if (r != PBS_UEVENT_OK && r != PBS_UEVENT_FILTERED) abort();
    if (strncmp(pbs_uevent_syspath(ev), "/sys/", 5) != 0) abort();
    if (!pbs_uevent_action(ev) || !pbs_uevent_subsystem(ev) || pbs_uevent_seqnum(ev) == 0) abort();
    if (r == PBS_UEVENT_OK && strcmp(pbs_uevent_subsystem(ev), "usb") != 0) abort();
    for (int i = 0; i < pbs_uevent_count(ev); i++) {
        const char *k = pbs_uevent_key(ev, i), *v = pbs_uevent_value(ev, i);
        if (!k || !v || strchr(k, '=') || strchr(v, '\n')) abort();
        /* The lookup finds the value of the last entry with this key (strcmp over all of them). */
        const char *last = NULL;
        for (int j = 0; j < pbs_uevent_count(ev); j++)
            if (strcmp(pbs_uevent_key(ev, j), k) == 0) last = pbs_uevent_value(ev, j);
        if (pbs_uevent_get(ev, k) != last) abort();
    }
    const char *d = pbs_uevent_devnode(ev);
    if (d && strncmp(d, "/dev", 4) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!ev) ev = pbs_uevent_create();
    check(data, size, 2);
    check(data, size, 1);
    return 0;
}
