/*
 * The TLS bridge (see plugboard_tls.h). One connection:
 *
 *   hiredis --RESP--> [user fd | app fd] --pump--> SSL (nonblocking) --TLS--> redis-server
 *
 * The pump is a poll loop over the app end, the server socket and an eventfd used to stop it.
 * Each turn tries every direction (app -> SSL_write, SSL_read -> app) and sleeps in poll only when
 * none moved, waiting for exactly what the blocked calls asked for (SSL_ERROR_WANT_READ/WRITE).
 */
#define _GNU_SOURCE
#include "plugboard_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* Bytes held in each direction. 256 KiB takes a full publisher batch (1024 XADDs) in one go. */
#define PB_TLS_BUFFER (256 * 1024)

struct pb_tls_bridge {
    SSL_CTX *ctx;
    SSL *ssl;
    int net;   /* TCP socket to the server (nonblocking) */
    int app;   /* the pump's end of the socketpair (nonblocking) */
    int user;  /* hiredis's end until taken */
    int wake;  /* eventfd: close asks the pump to stop */
    pthread_t thread;
    int thread_started;
    pthread_mutex_t lock;  /* guards status and reason */
    int status;
    char reason[512];
    unsigned char *to_net, *to_app;
    char peer_subject[256], peer_issuer[256];  /* the server's certificate, noted while verifying */
};

static void say(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* OpenSSL's queued reasons, innermost first, as "reason; reason" (empty when none). */
static void openssl_reasons(char *buf, size_t len) {
    buf[0] = 0;
    unsigned long e;
    size_t used = 0;
    while ((e = ERR_get_error()) != 0 && used + 4 < len) {
        const char *r = ERR_reason_error_string(e);
        char tmp[256];
        if (!r) { ERR_error_string_n(e, tmp, sizeof tmp); r = tmp; }
        int n = snprintf(buf + used, len - used, "%s%s", used ? "; " : "", r);
        if (n < 0) break;
        used += (size_t)n;
    }
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int set_nonblocking(int fd) {
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Waits for `events` on fd until the deadline. 1: ready, 0: timed out, -1: error (errno). */
static int wait_fd(int fd, short events, long long deadline) {
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) return 0;
        struct pollfd p = { .fd = fd, .events = events };
        int r = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
        if (r > 0) return 1;
        if (r < 0 && errno != EINTR) return -1;
    }
}

/* TCP connect to host:port with a deadline, trying each address getaddrinfo gives. */
static int tcp_connect(const char *host, int port, long long deadline, int keepalive, char *err, size_t errlen) {
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *list = NULL;
    int gai = getaddrinfo(host, service, &hints, &list);
    if (gai != 0) {
        say(err, errlen, "cannot resolve %s: %s", host, gai_strerror(gai));
        return -1;
    }
    int fd = -1, last = 0;
    for (struct addrinfo *a = list; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) { last = errno; continue; }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
        if (errno == EINPROGRESS) {
            int r = wait_fd(fd, POLLOUT, deadline);
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (r == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) break;
            last = r == 0 ? ETIMEDOUT : (r < 0 ? errno : soerr);
        } else {
            last = errno;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(list);
    if (fd < 0) {
        say(err, errlen, "cannot connect to %s:%d: %s", host, port, last == ETIMEDOUT ? "connection timed out" : strerror(last));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (keepalive) {
        /* The values hiredis' redisEnableKeepAlive uses for a plain connection. */
        int idle = 15, intvl = 5, cnt = 3;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    }
    return fd;
}

static int is_ip_literal(const char *name) {
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

/* The context: verification on, the CA store, the client certificate. */
static SSL_CTX *make_context(const pb_tls_options *o, char *err, size_t errlen) {
    char why[400];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) { openssl_reasons(why, sizeof why); say(err, errlen, "cannot create a TLS context: %s", why); return NULL; }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (o->ca_file && o->ca_file[0]) {
        if (SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1) {
            openssl_reasons(why, sizeof why);
            say(err, errlen, "cannot read the CA file %s: %s", o->ca_file, why[0] ? why : strerror(errno));
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        openssl_reasons(why, sizeof why);
        say(err, errlen, "cannot load the system's CA store: %s", why);
        goto fail;
    }
    if (o->cert_file && o->cert_file[0]) {
        if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1) {
            openssl_reasons(why, sizeof why);
            say(err, errlen, "cannot read the client certificate %s: %s", o->cert_file, why);
            goto fail;
        }
        const char *key = o->key_file && o->key_file[0] ? o->key_file : o->cert_file;
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
            openssl_reasons(why, sizeof why);
            say(err, errlen, "cannot read the client key %s: %s", key, why);
            goto fail;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            openssl_reasons(why, sizeof why);
            say(err, errlen, "the client key %s does not belong to the certificate %s: %s", key, o->cert_file, why);
            goto fail;
        }
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* Notes the server's own certificate (depth 0) for the error message; OpenSSL keeps no peer
 * certificate after a failed verification. Decides nothing: returns OpenSSL's verdict. */
static int note_peer(int preverify_ok, X509_STORE_CTX *store) {
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    pb_tls_bridge *b = ssl ? SSL_get_app_data(ssl) : NULL;
    X509 *cert = X509_STORE_CTX_get0_cert(store);  /* the certificate being verified: the server's */
    if (b && cert && !b->peer_subject[0]) {
        X509_NAME_oneline(X509_get_subject_name(cert), b->peer_subject, sizeof b->peer_subject);
        X509_NAME_oneline(X509_get_issuer_name(cert), b->peer_issuer, sizeof b->peer_issuer);
    }
    return preverify_ok;
}

/* Why a handshake failed, and which status that is. */
static int handshake_failure(pb_tls_bridge *b, int sslerr, int sys_errno, char *err, size_t errlen) {
    char why[400];
    long verify = SSL_get_verify_result(b->ssl);
    if (verify != X509_V_OK) {
        ERR_clear_error();
        say(err, errlen, "the server's certificate was not accepted: %s (certificate subject %s, issuer %s)",
            X509_verify_cert_error_string(verify), b->peer_subject[0] ? b->peer_subject : "?",
            b->peer_issuer[0] ? b->peer_issuer : "?");
        return PB_TLS_ERR_VERIFY;
    }
    openssl_reasons(why, sizeof why);
    if (sslerr == SSL_ERROR_SYSCALL || (sslerr == SSL_ERROR_SSL && !why[0])) {
        say(err, errlen, "the connection broke during the TLS handshake: %s",
            sys_errno ? strerror(sys_errno) : "the server closed it (is this the server's tls-port?)");
        return PB_TLS_ERR_CONNECT;
    }
    say(err, errlen, "the TLS handshake failed: %s%s", why[0] ? why : "unknown reason",
        strstr(why, "wrong version number") || strstr(why, "packet length too long")
            ? " (the port does not speak TLS: is it the server's port rather than its tls-port?)" : "");
    return PB_TLS_ERR_PROTOCOL;
}

static void set_failure(pb_tls_bridge *b, int status, const char *fmt, ...) {
    pthread_mutex_lock(&b->lock);
    if (b->status == PB_TLS_OK) {
        b->status = status;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->reason, sizeof b->reason, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&b->lock);
}

/* A failed SSL_read/SSL_write after the handshake, in words. */
static void io_failure(pb_tls_bridge *b, const char *doing, int sslerr, int sys_errno) {
    char why[400];
    openssl_reasons(why, sizeof why);
    if (sslerr == SSL_ERROR_ZERO_RETURN) {
        set_failure(b, PB_TLS_ERR_CLOSED, "the server closed the TLS connection");
    } else if (sslerr == SSL_ERROR_SSL && why[0]) {
        /* An alert from the server: "certificate required", "unknown ca"... */
        set_failure(b, PB_TLS_ERR_PROTOCOL, "TLS error while %s: %s", doing, why);
    } else if (sys_errno) {
        set_failure(b, PB_TLS_ERR_CLOSED, "the TLS connection broke while %s: %s", doing, strerror(sys_errno));
    } else {
        set_failure(b, PB_TLS_ERR_CLOSED, "the server closed the connection while %s (without TLS close_notify)", doing);
    }
}

static void *pump(void *arg) {
    pb_tls_bridge *b = arg;
    /* Never a SIGPIPE from this thread: app writes use MSG_NOSIGNAL; OpenSSL's socket writes could
     * raise one, which stays pending on this (blocked) thread and ends with it. */
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);

    size_t tn_start = 0, tn_end = 0, ta_start = 0, ta_end = 0;
    int pending_write = 0;  /* length of an SSL_write to retry with the same arguments */
    int app_eof = 0, net_done = 0, app_shut = 0;
    for (;;) {
        int progress = 0;
        short app_events = 0, net_events = 0;

        /* hiredis -> to_net */
        if (!app_eof) {
            if (tn_start == tn_end) tn_start = tn_end = 0;
            if (tn_end < PB_TLS_BUFFER) {
                ssize_t n = read(b->app, b->to_net + tn_end, PB_TLS_BUFFER - tn_end);
                if (n > 0) { tn_end += (size_t)n; progress = 1; }
                else if (n == 0) { app_eof = 1; progress = 1; }
                else if (errno == EINTR) progress = 1;
                else if (errno != EAGAIN) { app_eof = 1; progress = 1; }
            }
        }
        /* After the server is gone, what hiredis sends is dropped: it reads EOF and reconnects. */
        if (net_done) { tn_start = tn_end = 0; pending_write = 0; }

        /* SSL -> to_app: read until OpenSSL wants the socket, so nothing waits unseen in its buffer.
         * Read before writing: an alert the server sent before closing ("certificate required")
         * is then reported, not the reset our next write would meet. */
        if (!net_done) {
            if (ta_start == ta_end) ta_start = ta_end = 0;
            while (ta_end < PB_TLS_BUFFER) {
                ERR_clear_error();
                errno = 0;
                int r = SSL_read(b->ssl, b->to_app + ta_end, (int)(PB_TLS_BUFFER - ta_end));
                if (r > 0) { ta_end += (size_t)r; progress = 1; continue; }
                int e = SSL_get_error(b->ssl, r);
                if (e == SSL_ERROR_WANT_READ) net_events |= POLLIN;
                else if (e == SSL_ERROR_WANT_WRITE) net_events |= POLLOUT;
                else { io_failure(b, "reading from the server", e, errno); net_done = 1; progress = 1; }
                break;
            }
        }

        /* to_net -> SSL */
        if (!net_done && tn_end > tn_start) {
            size_t avail = tn_end - tn_start;
            int len = pending_write ? pending_write : (int)(avail > (1 << 30) ? (1 << 30) : avail);
            ERR_clear_error();
            errno = 0;
            int r = SSL_write(b->ssl, b->to_net + tn_start, len);
            if (r > 0) { tn_start += (size_t)r; pending_write = 0; progress = 1; }
            else {
                int e = SSL_get_error(b->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE) { pending_write = len; net_events |= POLLOUT; }
                else if (e == SSL_ERROR_WANT_READ) { pending_write = len; net_events |= POLLIN; }
                else { io_failure(b, "sending to the server", e, errno); net_done = 1; progress = 1; }
            }
        }

        /* to_app -> hiredis */
        if (ta_end > ta_start) {
            ssize_t n = send(b->app, b->to_app + ta_start, ta_end - ta_start, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) { ta_start += (size_t)n; progress = 1; }
            else if (n < 0 && errno == EAGAIN) app_events |= POLLOUT;
            else if (n < 0 && errno == EINTR) progress = 1;
            else { app_eof = 1; ta_start = ta_end = 0; progress = 1; }  /* hiredis closed its end */
        }

        /* The server is gone and hiredis has every byte it sent: hiredis reads EOF next. */
        if (net_done && ta_start == ta_end && !app_shut) { shutdown(b->app, SHUT_WR); app_shut = 1; }
        /* hiredis closed (redisFree): say goodbye to the server once, then stop. */
        if (app_eof && (net_done || tn_start == tn_end)) {
            if (!net_done) { ERR_clear_error(); SSL_shutdown(b->ssl); }
            break;
        }
        if (progress) continue;

        if (!app_eof && tn_end < PB_TLS_BUFFER) app_events |= POLLIN;
        struct pollfd p[3] = {
            { .fd = app_events ? b->app : -1, .events = app_events },
            { .fd = (!net_done && net_events) ? b->net : -1, .events = net_events },
            { .fd = b->wake, .events = POLLIN },
        };
        int r = poll(p, 3, -1);
        if (r < 0 && errno != EINTR) { set_failure(b, PB_TLS_ERR_SYSTEM, "poll failed: %s", strerror(errno)); break; }
        if (r > 0 && p[2].revents) break;  /* pb_tls_bridge_close */
    }
    if (!app_shut) shutdown(b->app, SHUT_RDWR);
    set_failure(b, PB_TLS_ERR_CLOSED, "the TLS bridge stopped");
    return NULL;
}

static void bridge_free(pb_tls_bridge *b) {
    if (!b) return;
    if (b->ssl) SSL_free(b->ssl);
    if (b->ctx) SSL_CTX_free(b->ctx);
    if (b->net >= 0) close(b->net);
    if (b->app >= 0) close(b->app);
    if (b->user >= 0) close(b->user);
    if (b->wake >= 0) close(b->wake);
    free(b->to_net);
    free(b->to_app);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

int pb_tls_bridge_open(const char *host, int port, const pb_tls_options *o, pb_tls_bridge **out, char *err, size_t errlen) {
    *out = NULL;
    if (err && errlen) err[0] = 0;
    pb_tls_bridge *b = calloc(1, sizeof *b);
    if (!b) { say(err, errlen, "out of memory"); return PB_TLS_ERR_SYSTEM; }
    b->net = b->app = b->user = b->wake = -1;
    pthread_mutex_init(&b->lock, NULL);
    int status = PB_TLS_ERR_SYSTEM;
    long long deadline = now_ms() + (o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 2000);

    ERR_clear_error();
    b->ctx = make_context(o, err, errlen);
    if (!b->ctx) { status = PB_TLS_ERR_CONFIG; goto fail; }
    b->net = tcp_connect(host, port, deadline, o->keepalive, err, errlen);
    if (b->net < 0) { status = PB_TLS_ERR_CONNECT; goto fail; }

    b->ssl = SSL_new(b->ctx);
    if (!b->ssl || SSL_set_fd(b->ssl, b->net) != 1) { say(err, errlen, "cannot create a TLS session"); goto fail; }
    SSL_set_mode(b->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_app_data(b->ssl, b);
    SSL_set_verify(b->ssl, SSL_VERIFY_PEER, note_peer);
    const char *name = o->server_name && o->server_name[0] ? o->server_name : host;
    if (is_ip_literal(name)) {
        /* An address is checked against the certificate's IP SANs and is never sent as SNI. */
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(b->ssl), name) != 1) {
            say(err, errlen, "cannot check the address %s", name); status = PB_TLS_ERR_CONFIG; goto fail;
        }
    } else {
        SSL_set_hostflags(b->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (SSL_set1_host(b->ssl, name) != 1 || SSL_set_tlsext_host_name(b->ssl, name) != 1) {
            say(err, errlen, "cannot use the server name %s", name); status = PB_TLS_ERR_CONFIG; goto fail;
        }
    }
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_connect(b->ssl);
        if (r == 1) break;
        int sys = errno;
        int e = SSL_get_error(b->ssl, r);
        short want = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (!want) { status = handshake_failure(b, e, sys, err, errlen); goto fail; }
        int w = wait_fd(b->net, want, deadline);
        if (w == 0) {
            say(err, errlen, "the TLS handshake with %s:%d did not finish within %d ms (is this the server's tls-port?)",
                host, port, o->connect_timeout_ms);
            status = PB_TLS_ERR_CONNECT;
            goto fail;
        }
        if (w < 0) { say(err, errlen, "poll failed: %s", strerror(errno)); goto fail; }
    }

    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        say(err, errlen, "socketpair failed: %s", strerror(errno)); goto fail;
    }
    b->user = pair[0];
    b->app = pair[1];
    b->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    b->to_net = malloc(PB_TLS_BUFFER);
    b->to_app = malloc(PB_TLS_BUFFER);
    if (b->wake < 0 || !b->to_net || !b->to_app || set_nonblocking(b->app) != 0) {
        say(err, errlen, "cannot set up the bridge: %s", strerror(errno)); goto fail;
    }
    if (pthread_create(&b->thread, NULL, pump, b) != 0) {
        say(err, errlen, "cannot start the TLS pump thread"); goto fail;
    }
    b->thread_started = 1;
    *out = b;
    return PB_TLS_OK;
fail:
    bridge_free(b);
    return status;
}

int pb_tls_bridge_take_fd(pb_tls_bridge *b) {
    int fd = b->user;
    b->user = -1;
    return fd;
}

int pb_tls_bridge_failure(pb_tls_bridge *b, char *buf, size_t len) {
    pthread_mutex_lock(&b->lock);
    int status = b->status;
    if (buf && len) snprintf(buf, len, "%s", status == PB_TLS_OK ? "" : b->reason);
    pthread_mutex_unlock(&b->lock);
    return status;
}

void pb_tls_bridge_close(pb_tls_bridge *b) {
    if (!b) return;
    if (b->thread_started) {
        uint64_t one = 1;
        ssize_t w = write(b->wake, &one, sizeof one);
        (void)w;
        pthread_join(b->thread, NULL);
    }
    bridge_free(b);
}
