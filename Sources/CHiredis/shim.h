#include <hiredis/hiredis.h>
#include <string.h>

/* Formats one command in the Redis protocol (RESP: "*argc\r\n" then "$len\r\n<bytes>\r\n" per
 * argument) into buf and queues it with redisAppendFormattedCommand: one copy into hiredis' output
 * buffer. It replaces redisAppendCommandArgv on the publisher's path: hiredis 0.14 formats each
 * argument's header with sdscatfmt and allocates a new sds per command, which was 28 % of the
 * daemon's samples publishing 500,000 events (docs/benchmarks.md). Returns REDIS_OK or REDIS_ERR;
 * a command that does not fit in cap bytes goes through redisAppendCommandArgv instead. */
static inline char *pb_resp_decimal(char *p, size_t v) {
    char digits[24];
    int n = 0;
    do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v != 0);
    while (n > 0) *p++ = digits[--n];
    return p;
}

static inline int pb_redis_append_argv(redisContext *c, int argc, const char **argv, const size_t *lengths,
                                       char *buf, size_t cap) {
    size_t need = 16;   /* "*" + up to 11 digits + CRLF */
    for (int i = 0; i < argc; i++) need += lengths[i] + 26;   /* "$" + up to 20 digits + 2 CRLF */
    if (need > cap) return redisAppendCommandArgv(c, argc, argv, lengths);
    char *p = buf;
    *p++ = '*';
    p = pb_resp_decimal(p, (size_t)argc);
    *p++ = '\r'; *p++ = '\n';
    for (int i = 0; i < argc; i++) {
        *p++ = '$';
        p = pb_resp_decimal(p, lengths[i]);
        *p++ = '\r'; *p++ = '\n';
        if (lengths[i] > 0) memcpy(p, argv[i], lengths[i]);
        p += lengths[i];
        *p++ = '\r'; *p++ = '\n';
    }
    return redisAppendFormattedCommand(c, buf, (size_t)(p - buf));
}
