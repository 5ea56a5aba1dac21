/*
 * The TLS bridge for `rediss://` (docs/redis.md, "TLS"): Debian's hiredis 0.14 speaks only plain
 * RESP, so hiredis is given one end of a socketpair (`redisConnectFd`) and a pump thread carries
 * the bytes between the other end and a TLS connection to the server, made with the system's
 * OpenSSL (libssl3). The pump moves both directions independently, so a pipeline of N commands
 * stays one pipeline. Nothing here knows RESP.
 *
 * Thread: `pb_tls_bridge_open` and `pb_tls_bridge_close` on the connection's owner thread; the
 * pump runs on a thread of its own (one per connection); `pb_tls_bridge_failure` from any thread.
 */
#ifndef PLUGBOARD_TLS_H
#define PLUGBOARD_TLS_H

#include <stddef.h>

/* What went wrong; returned by pb_tls_bridge_open and pb_tls_bridge_failure. */
enum pb_tls_status {
    PB_TLS_OK = 0,
    /* A local file (CA, certificate, key) could not be read or does not fit: configuration. */
    PB_TLS_ERR_CONFIG = 1,
    /* TCP connect failed or timed out, or the connection broke during the handshake: transient. */
    PB_TLS_ERR_CONNECT = 2,
    /* The server's certificate was not accepted (unknown CA, wrong name, expired...). */
    PB_TLS_ERR_VERIFY = 3,
    /* The TLS protocol failed: not a TLS port, no common version/cipher, an alert from the
     * server (such as "certificate required" when it wants a client certificate). */
    PB_TLS_ERR_PROTOCOL = 4,
    /* After the handshake: the server closed the connection, or a read or write failed. */
    PB_TLS_ERR_CLOSED = 5,
    /* Out of memory, or a thread or socketpair could not be made. */
    PB_TLS_ERR_SYSTEM = 6,
};

/* How to reach and check the server. Strings are read during pb_tls_bridge_open only. */
typedef struct pb_tls_options {
    const char *ca_file;      /* PEM CA bundle; NULL: the system's default store */
    const char *cert_file;    /* PEM client certificate (chain); NULL: none */
    const char *key_file;     /* PEM private key of cert_file; NULL with cert_file NULL */
    const char *server_name;  /* name (or IP address) the certificate must carry; also sent as SNI when a name */
    int connect_timeout_ms;   /* TCP connect + TLS handshake, milliseconds */
    int keepalive;            /* 1: TCP keepalive on the server socket (15 s idle, as hiredis) */
} pb_tls_options;

typedef struct pb_tls_bridge pb_tls_bridge;

/* Connects to host:port, completes the TLS handshake (verifying the server's certificate), and
 * starts the pump. On success *out is the bridge and the return is PB_TLS_OK; otherwise *out is
 * NULL and `err` (errlen bytes, NUL-terminated) says why in words (OpenSSL's reason included). */
int pb_tls_bridge_open(const char *host, int port, const pb_tls_options *options,
                       pb_tls_bridge **out, char *err, size_t errlen);

/* The plain end for hiredis (blocking, CLOEXEC). Ownership passes to whoever takes it:
 * `redisConnectFd` (closed by `redisFree`). Returns -1 when already taken. */
int pb_tls_bridge_take_fd(pb_tls_bridge *bridge);

/* Why the pump stopped: PB_TLS_OK while it runs, else a status and its reason in `buf`. */
int pb_tls_bridge_failure(pb_tls_bridge *bridge, char *buf, size_t len);

/* Stops the pump (sending close_notify when it can), joins its thread, closes the sockets it owns
 * and frees everything. Call after hiredis's end is closed (redisFree) or not taken. */
void pb_tls_bridge_close(pb_tls_bridge *bridge);

#endif
