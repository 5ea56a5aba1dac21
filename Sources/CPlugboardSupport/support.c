#define _GNU_SOURCE
#include "plugboard_support.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
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

int pbs_memfd_create_sealed(const char *name, size_t size) {
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -1;
    if (ftruncate(fd, (off_t)size) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int pbs_memfd_seals(int fd) { return fcntl(fd, F_GET_SEALS); }
int pbs_seal_seal(void) { return F_SEAL_SEAL; }
int pbs_seal_shrink(void) { return F_SEAL_SHRINK; }
int pbs_seal_grow(void) { return F_SEAL_GROW; }
int pbs_seal_write(void) { return F_SEAL_WRITE; }

void pbs_set_thread_name(const char *name) {
    char buf[16];
    strncpy(buf, name, sizeof buf - 1);
    buf[sizeof buf - 1] = 0;
    pthread_setname_np(pthread_self(), buf);
}

int pbs_errno(void) { return errno; }

int pbs_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }
