#define _GNU_SOURCE
#include "plugboard_support.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <linux/capability.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>

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

int pbs_futex_wait_bits(uint32_t *word, uint32_t expected, uint64_t timeout_ns, uint32_t bits) {
    if (bits == FUTEX_BITSET_MATCH_ANY) return pbs_futex_wait(word, expected, timeout_ns);
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline. */
    struct timespec ts, *tsp = NULL;
    if (timeout_ns > 0) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + timeout_ns % 1000000000ull;
        ts.tv_sec += (time_t)(timeout_ns / 1000000000ull + ns / 1000000000ull);
        ts.tv_nsec = (long)(ns % 1000000000ull);
        tsp = &ts;
    }
    long r = syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, tsp, NULL, bits);
    if (r == -1 && errno == EAGAIN) return 0;
    return r == -1 ? -1 : 0;
}

int pbs_futex_wake_bits(uint32_t *word, int count, uint32_t bits) {
    return (int)syscall(SYS_futex, word, FUTEX_WAKE_BITSET, count, NULL, NULL, bits);
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
int pbs_flock_exclusive_nonblocking(int fd) { return flock(fd, LOCK_EX | LOCK_NB); }
int pbs_set_dumpable(int on) { return prctl(PR_SET_DUMPABLE, on, 0, 0, 0); }
unsigned long pbs_timer_slack(void) { return (unsigned long)prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0); }
int pbs_set_timer_slack(unsigned long ns) { return prctl(PR_SET_TIMERSLACK, ns, 0, 0, 0); }
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

int pbs_set_thread_nice(int nice) {
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice) == 0 ? 0 : errno;
}

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

int pbs_seal_future_write(void) {
#ifdef F_SEAL_FUTURE_WRITE
    return F_SEAL_FUTURE_WRITE;
#else
    return 0x0010;
#endif
}

int pbs_spawn(const char *path, char *const argv[], char *const envp[], const int *fds, int nfds,
              int stdout_fd, int stderr_fd, int new_group, int32_t *pid) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int r = posix_spawn_file_actions_init(&fa);
    if (r) return r;
    r = posix_spawnattr_init(&attr);
    if (r) { posix_spawn_file_actions_destroy(&fa); return r; }
    /* Standard output and error first: the sources are all above 2, so this clobbers none. */
    if (!r && stdout_fd >= 0) r = posix_spawn_file_actions_adddup2(&fa, stdout_fd, 1);
    if (!r && stderr_fd >= 0) r = posix_spawn_file_actions_adddup2(&fa, stderr_fd, 2);
    /* dup2 onto a descriptor that is itself a source would clobber it: first copy every source
     * above all of them (and above the targets), then down to 3, 4, ... */
    int base = 3 + nfds;
    for (int i = 0; i < nfds; i++) if (fds[i] >= base) base = fds[i] + 1;
    for (int i = 0; i < nfds && !r; i++) r = posix_spawn_file_actions_adddup2(&fa, fds[i], base + i);
    for (int i = 0; i < nfds && !r; i++) r = posix_spawn_file_actions_adddup2(&fa, base + i, 3 + i);
    if (!r) r = posix_spawn_file_actions_addclosefrom_np(&fa, 3 + nfds);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (new_group) flags |= POSIX_SPAWN_SETPGROUP;
    if (!r) r = posix_spawnattr_setflags(&attr, flags);
    if (!r) r = posix_spawnattr_setsigmask(&attr, &none);
    if (!r) r = posix_spawnattr_setsigdefault(&attr, &all);
    if (!r && new_group) r = posix_spawnattr_setpgroup(&attr, 0);
    pid_t p = 0;
    if (!r) r = posix_spawn(&p, path, &fa, &attr, argv, envp);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    if (!r) *pid = (int32_t)p;
    return r;
}

int pbs_output_pipe(int fds[2]) {
    if (pipe2(fds, O_CLOEXEC) != 0) return -1;
    int flags = fcntl(fds[0], F_GETFL);
    if (flags < 0 || fcntl(fds[0], F_SETFL, flags | O_NONBLOCK) != 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        errno = e;
        return -1;
    }
    return 0;
}

int pbs_pidfd_open(int32_t pid) { return (int)syscall(SYS_pidfd_open, (pid_t)pid, 0); }
int pbs_pidfd_kill(int pidfd, int sig) { return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0); }

int pbs_reap(int32_t pid, int *code, int *signaled) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int r;
    do { r = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG); } while (r < 0 && errno == EINTR);
    if (r < 0) return -1;
    if (info.si_pid == 0) return 0;
    *code = info.si_status;
    *signaled = info.si_code == CLD_EXITED ? 0 : (info.si_code == CLD_DUMPED ? 2 : 1);
    return 1;
}

const char *pbs_signal_name(int sig) { return sigabbrev_np(sig); }
const char *pbs_signal_description(int sig) { return strsignal(sig); }

/* Set in a fork server once it emptied its ambient and bounding sets; its copies inherit both. */
static int pbs_inherited_sets_empty;

int pbs_drop_inherited_capabilities(void) {
    /* No capability for plugin code, whatever the daemon holds (a unit granting CAP_NET_ADMIN for
     * the netlink receive buffer passes it on as an ambient capability): the ambient set first,
     * then the bounding set while CAP_SETPCAP may still be held (EPERM: the daemon never had it).
     * Neither touches the permitted and effective sets: a fork server keeps CAP_SETUID for its
     * copies' drop to plugins.worker_user. */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return errno;
    for (int cap = 0; cap < 64; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno == EINVAL) break; /* past the last capability */
    }
    return 0;
}

void pbs_mark_inherited_capabilities_dropped(void) { pbs_inherited_sets_empty = 1; }

int pbs_lock_down(uint32_t uid, uint32_t gid, const char **step) {
    pid_t parent = getppid();
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) { *step = "prctl(PR_SET_PDEATHSIG)"; return errno; }
    if (!pbs_inherited_sets_empty) {
        int r = pbs_drop_inherited_capabilities();
        if (r) { *step = "prctl(PR_CAP_AMBIENT_CLEAR_ALL)"; return r; }
    }
    if (uid != (uint32_t)-1 && geteuid() == 0) {
        if (setgroups(0, NULL) != 0) { *step = "setgroups"; return errno; }
        if (setresgid(gid, gid, gid) != 0) { *step = "setresgid"; return errno; }
        if (setresuid(uid, uid, uid) != 0) { *step = "setresuid"; return errno; }
        /* A change of uid or gid clears the parent-death signal (prctl(2)): set it again, or a
         * worker whose daemon was killed would live on as an orphan. A parent that died in
         * between is caught by the getppid check. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) { *step = "prctl(PR_SET_PDEATHSIG)"; return errno; }
        if (getppid() != parent) { *step = "getppid (the daemon is gone)"; return ESRCH; }
    }
    /* Permitted, effective and inheritable sets emptied (already so after a drop from root). */
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3];
    memset(none, 0, sizeof none);
    if (syscall(SYS_capset, &header, none) != 0) { *step = "capset"; return errno; }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) { *step = "prctl(PR_SET_NO_NEW_PRIVS)"; return errno; }
    /* Non-dumpable: another plugin's worker running as the same user (plugins.worker_user, or
     * the daemon's own user under DynamicUser) can neither ptrace this one nor open its
     * /proc/PID/mem to forge what it publishes. A drop from root already cleared the flag; a
     * worker that stays the daemon's user would keep it. The host reads nothing of a worker's
     * /proc but its status, which stays readable. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) { *step = "prctl(PR_SET_DUMPABLE)"; return errno; }
    return 0;
}

void pbs_close_from(int first) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)first, ~0U, 0) == 0) return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = first; fd < max; fd++) close((int)fd);
}

int pbs_set_limit(int resource, uint64_t value) {
    int which = resource == 0 ? RLIMIT_AS : resource == 1 ? RLIMIT_CPU : RLIMIT_NOFILE;
    struct rlimit rl = {(rlim_t)value, (rlim_t)value};
    return setrlimit(which, &rl) == 0 ? 0 : errno;
}

int pbs_lookup_user(const char *name, uint32_t *uid, uint32_t *gid) {
    struct passwd pw, *out = NULL;
    char buf[4096];
    int r = getpwnam_r(name, &pw, buf, sizeof buf, &out);
    if (r) return r;
    if (!out) return ENOENT;
    *uid = pw.pw_uid;
    *gid = pw.pw_gid;
    return 0;
}

#include <sys/socket.h>

int pbs_accept_cloexec(int fd) {
    return accept4(fd, NULL, NULL, SOCK_CLOEXEC);
}

int pbs_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid) {
    struct ucred cred;
    socklen_t length = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) return -1;
    *pid = cred.pid;
    *uid = cred.uid;
    *gid = cred.gid;
    return 0;
}

/* The crash recorder (pbs_crash_recorder_install). One per process: set once, before plugin code. */
static uint64_t *crash_peak_word;
static const int crash_signals[] = {SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGTRAP, SIGFPE};

/* "VmPeak:\t  123456 kB" -> bytes; 0 when not found. */
static uint64_t crash_read_vmpeak(void) {
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = 0, r;
    while (n < (ssize_t)sizeof buf - 1 && (r = read(fd, buf + n, sizeof buf - 1 - (size_t)n)) > 0) n += r;
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    static const char key[] = "VmPeak:";
    for (ssize_t i = 0; i + (ssize_t)sizeof key - 1 <= n; i++) {
        if ((i == 0 || buf[i - 1] == '\n') && memcmp(buf + i, key, sizeof key - 1) == 0) {
            const char *p = buf + i + sizeof key - 1;
            while (*p == ' ' || *p == '\t') p++;
            uint64_t kib = 0;
            while (*p >= '0' && *p <= '9') kib = kib * 10 + (uint64_t)(*p++ - '0');
            return kib * 1024;
        }
    }
    return 0;
}

static void crash_recorder(int sig) {
    int saved = errno;
    if (crash_peak_word) __atomic_store_n(crash_peak_word, crash_read_vmpeak(), __ATOMIC_RELEASE);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    errno = saved;
    /* Blocked while this handler runs: delivered, with the default action, as it returns. A
       fault re-executes its instruction and faults again anyway. */
    raise(sig);
}

int pbs_crash_recorder_install(uint64_t *peak_word) {
    crash_peak_word = peak_word;
    /* Its own stack, so a stack overflow of the main thread still gets here. */
    static char alt[64 * 1024] __attribute__((aligned(16)));
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) return errno;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = crash_recorder;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_ONSTACK;
    for (size_t i = 0; i < sizeof crash_signals / sizeof crash_signals[0]; i++)
        if (sigaction(crash_signals[i], &sa, NULL) != 0) return errno;
    return 0;
}

/* ---- Fork server: plugboard-worker --zygote (docs/architecture.md, "Starting a worker process") ---- */

/* The process title area: [arg_start, room_end) of this process's own argv (and, when the
 * first environment string is the PLUGBOARD_TITLE_ROOM padding, that string too). */
static char *pbs_title_start;
static size_t pbs_title_room;

static void pbs_zygote_find_title_area(void) {
    char buf[2048];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return;
    buf[n] = 0;
    /* Fields after the command's closing parenthesis: field 3 is the state; arg_start,
     * arg_end, env_start and env_end are fields 48 to 51. */
    char *p = strrchr(buf, ')');
    if (!p) return;
    p++;
    while (*p == ' ') p++;
    if (!*p) return;
    p++; /* field 3, the state: one letter */
    unsigned long long f[52];
    int field = 3;
    while (*p && field < 51) {
        while (*p == ' ') p++;
        field++;
        f[field] = strtoull(p, &p, 10);
    }
    if (field < 51) return;
    char *arg_start = (char *)(uintptr_t)f[48], *arg_end = (char *)(uintptr_t)f[49];
    char *env_start = (char *)(uintptr_t)f[50], *env_end = (char *)(uintptr_t)f[51];
    if (!arg_start || arg_end <= arg_start) return;
    pbs_title_start = arg_start;
    pbs_title_room = (size_t)(arg_end - arg_start);
    static const char pad[] = "PLUGBOARD_TITLE_ROOM=";
    if (env_start == arg_end && env_end > env_start && strncmp(env_start, pad, sizeof pad - 1) == 0)
        pbs_title_room += strlen(env_start) + 1;
}

/* setproctitle: writes "title" from arg_start, spaces to the end of the argv area when it is
 * shorter (the kernel then reads /proc/PID/cmdline as one string up to its NUL). */
static void pbs_zygote_set_title(const char *a, const char *b) {
    if (!pbs_title_start || pbs_title_room < 2) return;
    size_t room = pbs_title_room - 1, at = 0;
    for (const char *s = a; *s && at < room; s++) pbs_title_start[at++] = *s;
    if (at < room) pbs_title_start[at++] = ' ';
    for (const char *s = b; *s && at < room; s++) pbs_title_start[at++] = *s;
    memset(pbs_title_start + at, 0, pbs_title_room - at);
}

int pbs_zygote_serve(int sock, const char *argv0, char *name, size_t name_max, int *out_fds, int nfds) {
    pbs_zygote_find_title_area();
    /* The zygote runs no plugin code, but workers of the same user must not be able to ptrace
     * the process every later worker is copied from. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent) return -1;
    /* The greeting the daemon waits for before its first request (an executable that is not a
     * fork server, or an older one, never sends it, and workers are then spawned). */
    static const char hello[] = PBS_ZYGOTE_HELLO;
    if (send(sock, hello, sizeof hello - 1, MSG_NOSIGNAL) < 0) return -1;
    for (;;) {
        char data[256];
        union { char buf[CMSG_SPACE(sizeof(int) * 16)]; struct cmsghdr align; } control;
        struct iovec iov = {data, sizeof data - 1};
        struct msghdr msg = {0};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof control.buf;
        ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1; /* the daemon closed its end: it is gone or shutting down */
        data[n] = 0;
        int fds[16], got = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < k && got < 16; i++) memcpy(&fds[got++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        }
        int32_t reply;
        if (got != nfds || (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC))) {
            reply = -EINVAL;
        } else {
            /* A sibling, not a child: CLONE_PARENT makes the daemon its parent, so the daemon
             * waits for it, gets its exit status and its SIGCHLD, exactly as for a spawned one. */
            long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, NULL, NULL, 0);
            if (pid == 0) {
                close(sock);
                setpgid(0, 0);
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                for (int s = 1; s < NSIG; s++) {
                    if (s == SIGKILL || s == SIGSTOP) continue;
                    signal(s, SIG_DFL);
                }
                /* Still non-dumpable, as the zygote is: the worker's lock-down keeps it so. */
                for (int i = 0; i < nfds; i++) out_fds[i] = fds[i];
                size_t len = strlen(data);
                if (len >= name_max) len = name_max - 1;
                memcpy(name, data, len);
                name[len] = 0;
                pbs_zygote_set_title(argv0, name);
                return 0;
            }
            reply = pid > 0 ? (int32_t)pid : -errno;
        }
        for (int i = 0; i < got; i++) close(fds[i]);
        while (send(sock, &reply, sizeof reply, MSG_NOSIGNAL) < 0 && errno == EINTR) {}
    }
}

int pbs_zygote_greeting(int sock) {
    char buf[64];
    ssize_t n;
    do { n = recv(sock, buf, sizeof buf, 0); } while (n < 0 && errno == EINTR);
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? ETIMEDOUT : errno;
    if (n != (ssize_t)sizeof PBS_ZYGOTE_HELLO - 1 || memcmp(buf, PBS_ZYGOTE_HELLO, (size_t)n) != 0) return EPROTO;
    return 0;
}

int pbs_is_child(int32_t pid) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int r;
    do { r = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT); } while (r < 0 && errno == EINTR);
    return r == 0;
}

int pbs_zygote_request(int sock, const char *name, const int *fds, int nfds, int32_t *pid) {
    union { char buf[CMSG_SPACE(sizeof(int) * 16)]; struct cmsghdr align; } control;
    if (nfds > 16) return EINVAL;
    memset(&control, 0, sizeof control);
    struct iovec iov = {(void *)name, strlen(name)};
    if (iov.iov_len == 0 || iov.iov_len > 255) return EINVAL;
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    ssize_t n;
    do { n = sendmsg(sock, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EAGAIN ? ETIMEDOUT : errno; /* EPIPE: the zygote was gone before the request */
    int32_t reply = 0;
    do { n = recv(sock, &reply, sizeof reply, 0); } while (n < 0 && errno == EINTR);
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? ETIMEDOUT : errno;
    if (n != sizeof reply) return ECONNABORTED; /* it ended after taking the request */
    if (reply < 0) return -reply;
    *pid = reply;
    return 0;
}

static void *pbs_thread_trampoline(void *arg) {
    void (**fn)(void) = arg;
    (*fn)();
    return NULL;
}

int pbs_run_on_thread(void (*fn)(void)) {
    pthread_t t;
    int r = pthread_create(&t, NULL, pbs_thread_trampoline, &fn);
    if (r) return r;
    return pthread_join(t, NULL);
}

int pbs_seqpacket_pair(int fds[2]) { return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds); }

int pbs_arrange_descriptors(const int *fds, int nfds, int stdout_fd, int stderr_fd) {
    if (stdout_fd >= 0 && dup2(stdout_fd, 1) < 0) return errno;
    if (stderr_fd >= 0 && dup2(stderr_fd, 2) < 0) return errno;
    int base = 3 + nfds;
    for (int i = 0; i < nfds; i++) if (fds[i] >= base) base = fds[i] + 1;
    for (int i = 0; i < nfds; i++) if (dup2(fds[i], base + i) < 0) return errno;
    for (int i = 0; i < nfds; i++) if (dup2(base + i, 3 + i) < 0) return errno;
    pbs_close_from(3 + nfds);
    return 0;
}
