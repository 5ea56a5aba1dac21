#define _GNU_SOURCE
#include "plugboard_support.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

int pbs_futex_wait(uint32_t *word, uint32_t expected, uint64_t timeout_ns) {
    struct timespec ts, *tsp = NULL;
    if (timeout_ns > 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000ull);
        ts.tv_nsec = (long)(timeout_ns % 1000000000ull);
        tsp = &ts;
    }
    /* Not FUTEX_PRIVATE_FLAG: the word may live in a mapping shared with another process. */
    long r = syscall(SYS_futex, word, FUTEX_WAIT, expected, tsp, NULL, 0);
    if (r == -1 && errno == EAGAIN) return 0; /* value already changed */
    return r == -1 ? -1 : 0;
}

int pbs_futex_wake(uint32_t *word, int count) {
    return (int)syscall(SYS_futex, word, FUTEX_WAKE, count, NULL, NULL, 0);
}

int pbs_prefault(void *base, size_t size) {
#ifdef MADV_POPULATE_WRITE
    if (madvise(base, size, MADV_POPULATE_WRITE) == 0) return 0;
#endif
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) page = 4096;
    volatile unsigned char *p = base;
    /* Read then write the same byte: the ring header may already be initialised. */
    for (size_t off = 0; off < size; off += (size_t)page) p[off] = p[off];
    return 1;
}

long pbs_resident_pages(void *base, size_t size) {
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) page = 4096;
    size_t n = (size + (size_t)page - 1) / (size_t)page;
    unsigned char *vec = malloc(n);
    if (!vec) return -1;
    if (mincore(base, size, vec) != 0) {
        int e = errno;
        free(vec);
        errno = e;
        return -1;
    }
    long resident = 0;
    for (size_t i = 0; i < n; i++) resident += vec[i] & 1;
    free(vec);
    return resident;
}

int pbs_memfd_seals(int fd) { return fcntl(fd, F_GET_SEALS); }
int pbs_seal_seal(void) { return F_SEAL_SEAL; }
int pbs_seal_shrink(void) { return F_SEAL_SHRINK; }
int pbs_seal_grow(void) { return F_SEAL_GROW; }
int pbs_seal_write(void) { return F_SEAL_WRITE; }

int pbs_pin_current_thread(const int32_t *cpus, int count) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < count; i++) {
        if (cpus[i] < 0 || cpus[i] >= CPU_SETSIZE) return EINVAL;
        CPU_SET(cpus[i], &set);
    }
    return sched_setaffinity(0, sizeof set, &set) == 0 ? 0 : errno;
}

int pbs_allowed_cpus(int32_t *out, int max) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < max; c++)
        if (CPU_ISSET(c, &set)) out[n++] = c;
    return n;
}

int pbs_cpu_setsize(void) { return CPU_SETSIZE; }

int32_t pbs_thread_id(void) { return (int32_t)syscall(SYS_gettid); }

void pbs_set_thread_name(const char *name) {
    char buf[16];
    strncpy(buf, name, sizeof buf - 1);
    buf[sizeof buf - 1] = 0;
    pthread_setname_np(pthread_self(), buf);
}

int pbs_errno(void) { return errno; }

int pbs_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

int pbs_memfd_create(const char *name) { return memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING); }

int pbs_add_seals(int fd, int seals) { return fcntl(fd, F_ADD_SEALS, seals); }
