/*
 * Small C helpers for what Swift cannot express directly: atomics on memory
 * that lives in a shared mapping, futex waits, sealed memfds, and the clock.
 * Nothing here is part of the plugin ABI (that is SDK/include/plugboard.h).
 */
#ifndef PLUGBOARD_SUPPORT_H
#define PLUGBOARD_SUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Atomics on raw shared memory. Swift's Atomic<T> must own its storage, and
 * the ring's counters live inside a memfd mapping, so they are reached through
 * these (inlined by the Clang importer). */
static inline uint64_t pbs_load_acquire_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint64_t pbs_load_relaxed_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline uint64_t pbs_load_seqcst_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void pbs_store_release_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void pbs_store_seqcst_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t pbs_load_seqcst_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline uint32_t pbs_load_acquire_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void pbs_store_release_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint32_t pbs_fetch_add_u32(uint32_t *p, uint32_t v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t pbs_fetch_sub_u32(uint32_t *p, uint32_t v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }
static inline void pbs_fence_seqcst(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void pbs_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
static inline void pbs_fence_release(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
static inline void pbs_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/** CLOCK_MONOTONIC in nanoseconds (the clock of pb_event.timestamp_ns). */
static inline uint64_t pbs_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/**
 * Waits while *word == expected, at most timeout_ns (0 = no limit).
 * Returns 0 when woken or the value differed, -1 with errno (ETIMEDOUT, EINTR) otherwise.
 * The corresponding system call is futex(FUTEX_WAIT); the word may be in shared memory.
 */
int pbs_futex_wait(uint32_t *word, uint32_t expected, uint64_t timeout_ns);
/** Wakes up to `count` waiters on `word` (futex(FUTEX_WAKE)). Returns the number woken or -1. */
int pbs_futex_wake(uint32_t *word, int count);
/**
 * Like pbs_futex_wait, as a waiter with `bits` (FUTEX_WAIT_BITSET): a plain wake wakes it, a
 * pbs_futex_wake_bits wakes it only when the two bit sets share a bit. 0xffffffff is a plain wait.
 */
int pbs_futex_wait_bits(uint32_t *word, uint32_t expected, uint64_t timeout_ns, uint32_t bits);
/** Wakes up to `count` waiters on `word` whose bits share one with `bits` (FUTEX_WAKE_BITSET). */
int pbs_futex_wake_bits(uint32_t *word, int count, uint32_t bits);

/**
 * Backs every page of a shared writable mapping now, so the hot path never takes a page
 * fault (a first write to a memfd page allocates and zeroes it: microseconds, on the
 * producer's path to a plugin callback). madvise(MADV_POPULATE_WRITE) (Linux 5.14+), else
 * one write per page. Returns 0 when populated by madvise, 1 when by touching pages.
 */
int pbs_prefault(void *base, size_t size);
/** Pages of [base, base + size) resident in memory now (mincore), or -1 with errno. */
long pbs_resident_pages(void *base, size_t size);
/** The seals in force on fd (F_GET_SEALS), or -1 with errno. */
int pbs_memfd_seals(int fd);
/* flock(fd, LOCK_EX | LOCK_NB): 0, or -1 with errno (Swift sees only the fcntl struct named flock). */
int pbs_flock_exclusive_nonblocking(int fd);
/* prctl(PR_SET_DUMPABLE, on): 0, or -1 with errno. */
int pbs_set_dumpable(int on);
/* The calling thread's timer slack (prctl PR_GET/PR_SET_TIMERSLACK), ns: for tests that time short sleeps. */
unsigned long pbs_timer_slack(void);
int pbs_set_timer_slack(unsigned long ns);
/** Bit values of F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE (for tests and docs). */
int pbs_seal_seal(void);
int pbs_seal_shrink(void);
int pbs_seal_grow(void);
int pbs_seal_write(void);

/**
 * Pins the calling thread to the `count` CPUs in `cpus` (sched_setaffinity). Returns 0, or
 * an errno value (EINVAL: none of them is usable by this process).
 */
int pbs_pin_current_thread(const int32_t *cpus, int count);
/**
 * The CPUs the calling thread may run on (sched_getaffinity), ascending, into `out` (room
 * for `max`). Returns how many, or -1 with errno.
 */
int pbs_allowed_cpus(int32_t *out, int max);
/** CPU_SETSIZE: CPU numbers must be below it. */
int pbs_cpu_setsize(void);
/**
 * Sets the nice value of the calling thread (setpriority(PRIO_PROCESS, gettid())): Linux keeps
 * nice per thread, and threads created later inherit it. Returns 0 or an errno value (EACCES:
 * lowering nice below the current value needs CAP_SYS_NICE or RLIMIT_NICE).
 */
int pbs_set_thread_nice(int nice);

/** The calling thread's kernel id (gettid). */
int32_t pbs_thread_id(void);

/** Names the calling thread (pthread_setname_np, cut to 15 bytes). */
void pbs_set_thread_name(const char *name);

/** A non-blocking, close-on-exec eventfd (for waking poll loops), or -1 with errno. */
int pbs_eventfd(void);

/** errno of the calling thread. */
int pbs_errno(void);

/**
 * memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING): an anonymous memory file that can be
 * sealed, or -1 with errno. The system layer sizes and seals it in steps (PlugboardSystem's
 * `MemoryFile`), so each step can fail on its own in tests.
 */
int pbs_memfd_create(const char *name);
/** fcntl(fd, F_ADD_SEALS, seals) (fcntl is variadic, so Swift cannot call it with this command). */
int pbs_add_seals(int fd, int seals);
/** F_SEAL_FUTURE_WRITE (Linux 5.1+): no new writable mapping or write(2); existing mappings keep writing. */
int pbs_seal_future_write(void);

/* ---- Worker processes (docs/architecture.md, "Isolation") ---- */

/**
 * posix_spawn(path, argv, envp) with `fds[i]` duplicated to descriptor 3 + i in the child and
 * every other descriptor above 2 closed (posix_spawn_file_actions_addclosefrom_np), so the
 * child inherits exactly what it is given. With `stdout_fd` / `stderr_fd` >= 0 the child's standard
 * output / error is that descriptor (else the parent's). The child gets its own process group when
 * `new_group` is set (a signal to the host's group does not reach plugin code).
 * Returns 0 and the pid in *pid, or an errno value.
 */
int pbs_spawn(const char *path, char *const argv[], char *const envp[], const int *fds, int nfds,
              int stdout_fd, int stderr_fd, int new_group, int32_t *pid);
/**
 * The fork server's loop (`plugboard-worker --zygote`; docs/architecture.md, "Starting a worker
 * process"). Makes itself non-dumpable and dies with the daemon; then, for each request on
 * `sock` (a SOCK_SEQPACKET socket: the plugin's name, `nfds` descriptors), clones a copy of
 * itself with CLONE_PARENT, so the new worker is the daemon's child, not the zygote's, and
 * answers its pid (or -errno). Returns 0 in the new worker, with the name in `name` and the
 * descriptors in `out_fds` (signals reset, a process group of its own, the process title
 * "argv0 name"); -1 in the zygote when the daemon closed its end.
 */
#define PBS_ZYGOTE_HELLO "plugboard-zygote 1"
int pbs_zygote_serve(int sock, const char *argv0, char *name, size_t name_max, int *out_fds, int nfds);
/**
 * The daemon's side: sends `name` and `fds` to the zygote on `sock` and waits for its answer
 * (the socket's SO_RCVTIMEO bounds the wait). 0 and the new worker's pid, or an errno value:
 * EPIPE or ECONNRESET, the zygote was gone before the request (nothing was started);
 * ECONNABORTED, it ended after taking it, or ETIMEDOUT, it did not answer in time (a copy may
 * have been started with the request's descriptors).
 */
int pbs_zygote_request(int sock, const char *name, const int *fds, int nfds, int32_t *pid);
/**
 * Empties the ambient and bounding capability sets (a worker's lock-down does it; a fork server
 * does it once for all its copies, then calls pbs_mark_inherited_capabilities_dropped so they
 * skip it). 0, or an errno value of prctl(PR_CAP_AMBIENT_CLEAR_ALL).
 */
int pbs_drop_inherited_capabilities(void);
void pbs_mark_inherited_capabilities_dropped(void);
/** Runs fn on a new thread and joins it (pthread_create, pthread_join): 0, or an errno value. */
int pbs_run_on_thread(void (*fn)(void));
/**
 * Waits for the zygote's greeting (PBS_ZYGOTE_HELLO) on `sock`: 0; ETIMEDOUT (SO_RCVTIMEO
 * passed), EPROTO (something else arrived: not a fork server), or the errno of recv.
 */
int pbs_zygote_greeting(int sock);
/** Whether `pid` is a child of this process (waitid WNOWAIT: nothing is reaped). */
int pbs_is_child(int32_t pid);
/** socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC): 0, or -1 with errno. */
int pbs_seqpacket_pair(int fds[2]);
/**
 * In a new worker: `stdout_fd` and `stderr_fd` (if >= 0) become 1 and 2, `fds[i]` becomes
 * 3 + i, every descriptor above is closed. 0, or an errno value.
 */
int pbs_arrange_descriptors(const int *fds, int nfds, int stdout_fd, int stderr_fd);
/** pipe2(fds, O_CLOEXEC), the read end then O_NONBLOCK: 0, or -1 with errno. */
int pbs_output_pipe(int fds[2]);
/** pidfd_open(pid, 0): a descriptor that becomes readable when the process exits, or -1 with errno. */
int pbs_pidfd_open(int32_t pid);
/** pidfd_send_signal(pidfd, sig): signals exactly that process (no pid reuse race). 0 or -1 with errno. */
int pbs_pidfd_kill(int pidfd, int sig);
/**
 * Reaps the exited child `pid` without blocking (waitid(P_PID, WEXITED | WNOHANG)).
 * Returns 1 with *code (exit status, or the signal) and *signaled (1 when killed by a signal,
 * 2 when it also dumped core); 0 when it is still running; -1 with errno.
 */
int pbs_reap(int32_t pid, int *code, int *signaled);
/**
 * In a worker process, before plugin code loads: installs a handler for the signals a process
 * dies of when its memory runs out (SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGTRAP, SIGFPE) on an
 * alternate stack. As the process dies it reads its VmPeak from /proc/self/status, stores it
 * (bytes, release order) into `*peak_word` (the control page the host reads), restores the
 * default action and re-raises the signal, so the process still dies of it. Only
 * async-signal-safe calls (open, read, close, sigaction, raise). A plugin that installs its own
 * handlers replaces this one. Returns 0, or an errno value.
 */
int pbs_crash_recorder_install(uint64_t *peak_word);

/** The signal's abbreviation without "SIG" (sigabbrev_np), or NULL for an unknown number. */
const char *pbs_signal_name(int sig);
/** The signal's description (strsignal). */
const char *pbs_signal_description(int sig);

/**
 * In a worker process, before any plugin code is loaded: sets PR_SET_NO_NEW_PRIVS and
 * PR_SET_PDEATHSIG (SIGKILL when the host dies), then, when `uid` is not (uint32_t)-1 and
 * the process runs as root, drops to uid/gid with no supplementary groups; empties the
 * capability sets and makes the process non-dumpable (no ptrace by same-user processes). Returns 0, or
 * an errno value with *step naming the call that failed.
 */
int pbs_lock_down(uint32_t uid, uint32_t gid, const char **step);
/** close_range(first, ~0U, 0) (falls back to closing one by one). */
void pbs_close_from(int first);
/** setrlimit(resource, {value, value}); resource: 0 address space, 1 CPU seconds, 2 open files. 0 or errno. */
int pbs_set_limit(int resource, uint64_t value);
/** getpwnam_r: uid and gid of `name`. 0 when found, ENOENT when there is no such user, else errno. */
int pbs_lookup_user(const char *name, uint32_t *uid, uint32_t *gid);

/// accept4(fd, NULL, NULL, SOCK_CLOEXEC): a connection whose descriptor no child inherits.
int pbs_accept_cloexec(int fd);
/// The SO_PEERCRED credentials of a Unix socket's peer; -1 with errno set on failure.
int pbs_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid);

/* Uevents parsed without libudev's device object (the udev source's receive path). */
#include "pbs_uevent.h"

#endif
