#!/usr/bin/env bash
# Redis publishing benchmarks (docs/benchmarks.md, "## Redis"):
#  1. publish rate of RedisPublisher vs `redis-benchmark -P 64` running an equivalent XADD
#     (same 22 field/value pairs, MAXLEN ~) on the same redis-server in the same run;
#  2. publish latency (event timestamp -> XADD acknowledged) p50/p99 at a paced 10,000 events/s;
#  3. with TLS=1 (default): the publish rate over rediss:// (the OpenSSL bridge) against redis://
#     to the same server in the same round, and redis-benchmark --tls -c 1 as TLS's own baseline;
#     latency over TLS. The CA and server certificate are made here with openssl (RSA 2048).
# Starts its own redis-server on a free loopback port (no persistence) and always removes it.
#
#   Benchmarks/scripts/redis.sh      # env: EVENTS=500000 ROUNDS=3 RATE=10000 LATENCY_SECONDS=10 TLS=1
set -euo pipefail
cd "$(dirname "$0")/../.."

EVENTS=${EVENTS:-500000}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-10000}
LATENCY_SECONDS=${LATENCY_SECONDS:-10}
TLS=${TLS:-1}

swift build -c release --product plugboard-bench-redis >/dev/null
BENCH=.build/release/plugboard-bench-redis

DIR=$(mktemp -d /tmp/plugboard-bench-redis-XXXXXX)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TLS_ARGS=()
if [ "$TLS" = 1 ]; then
    TLS_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$DIR/ca.key" -out "$DIR/ca.crt" -days 2 -subj "/CN=bench CA" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout "$DIR/server.key" -out "$DIR/server.csr" -subj "/CN=localhost" 2>/dev/null
    echo "subjectAltName=DNS:localhost,IP:127.0.0.1" > "$DIR/server.ext"
    openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" -CAcreateserial -days 2 \
        -extfile "$DIR/server.ext" -out "$DIR/server.crt" 2>/dev/null
    TLS_ARGS=(--tls-port "$TLS_PORT" --tls-cert-file "$DIR/server.crt" --tls-key-file "$DIR/server.key"
              --tls-ca-cert-file "$DIR/ca.crt" --tls-auth-clients no)
fi
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" \
    --daemonize no --logfile "$DIR/redis.log" "${TLS_ARGS[@]}" &
RPID=$!
trap 'kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

# The fields of one synthetic event, as the publisher writes them (docs/redis.md, field schema).
FIELDS=(sequence 123456 timestamp_ns 1668665440903 action add flags "" seqnum 123456 busnum 1 devnum 2
        vendor_id 1d6b product_id 1000 bcd_device 0000 device_class 00 device_subclass 00 device_protocol 00
        speed_kbps 480000 num_interfaces 0 interfaces ""
        syspath /sys/devices/synthetic/usb1/1-1 devnode "" serial "" manufacturer ""
        product "Synthetic Device 1" driver "")
rps() { grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1; }

# Warm-up (not reported): the first fill of a fresh server is slower for every client alike.
redis-benchmark -h 127.0.0.1 -p "$PORT" -P 64 -n "$EVENTS" -q XADD 'bench:{b}:events' MAXLEN '~' 1000000 '*' "${FIELDS[@]}" >/dev/null 2>&1
"$BENCH" rate --redis "redis://127.0.0.1:$PORT/0" --events "$EVENTS" >/dev/null 2>&1

echo "redis-server $(redis-server --version | grep -o 'v=[0-9.]*'), $(nproc) cores, events per round: $EVENTS"
echo "| round | redis-benchmark -P 64 (50 conns) | redis-benchmark -P 64 -c 1 | RedisPublisher (1 conn) | ratio vs -c 50 | ratio vs -c 1 |"
echo "|---|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
    redis-cli -p "$PORT" flushall >/dev/null
    b50=$(redis-benchmark -h 127.0.0.1 -p "$PORT" -P 64 -n "$EVENTS" -q \
          XADD 'bench:{b}:events' MAXLEN '~' 1000000 '*' "${FIELDS[@]}" 2>/dev/null | tr '\r' '\n' | rps)
    redis-cli -p "$PORT" flushall >/dev/null
    b1=$(redis-benchmark -h 127.0.0.1 -p "$PORT" -P 64 -c 1 -n "$EVENTS" -q \
          XADD 'bench:{b}:events' MAXLEN '~' 1000000 '*' "${FIELDS[@]}" 2>/dev/null | tr '\r' '\n' | rps)
    redis-cli -p "$PORT" flushall >/dev/null
    ours=$("$BENCH" rate --redis "redis://127.0.0.1:$PORT/0" --events "$EVENTS" 2>/dev/null \
           | grep -o 'events_per_s=[0-9]*' | cut -d= -f2)
    printf '| %s | %.0f | %.0f | %.0f | %.2f | %.2f |\n' "$round" "$b50" "$b1" "$ours" \
        "$(echo "$ours / $b50" | bc -l)" "$(echo "$ours / $b1" | bc -l)"
done

redis-cli -p "$PORT" flushall >/dev/null
echo
echo "latency at $RATE events/s for $LATENCY_SECONDS s:"
"$BENCH" latency --redis "redis://127.0.0.1:$PORT/0" --rate "$RATE" --seconds "$LATENCY_SECONDS" 2>/dev/null

[ "$TLS" = 1 ] || exit 0
# TLS: the same publisher over rediss:// (hiredis -> socketpair -> pump -> OpenSSL) against
# redis:// in the same round; redis-benchmark --tls -P 64 -c 1 is what Redis' own TLS client
# reaches on one connection. Ratios, not absolute rates, are what carries over to other machines.
TLS_URL="rediss://127.0.0.1:$TLS_PORT/0"
TLS_OPTS=(--tls-ca-file "$DIR/ca.crt")
"$BENCH" rate --redis "$TLS_URL" "${TLS_OPTS[@]}" --events "$EVENTS" >/dev/null 2>&1
echo
echo "TLS (rediss://, OpenSSL $(openssl version | cut -d' ' -f2)) vs plain, same server, events per round: $EVENTS"
echo "| round | redis:// events/s | rediss:// events/s | rate TLS / plain | redis:// CPU µs/event | rediss:// CPU µs/event | CPU TLS / plain | redis-benchmark --tls -P 64 -c 1 | rediss:// / redis-benchmark --tls -c 1 |"
echo "|---|---|---|---|---|---|---|---|---|"
field() { grep -o "$1=[0-9.]*" | cut -d= -f2; }
for round in $(seq "$ROUNDS"); do
    redis-cli -p "$PORT" flushall >/dev/null
    plain=$("$BENCH" rate --redis "redis://127.0.0.1:$PORT/0" --events "$EVENTS" 2>/dev/null)
    redis-cli -p "$PORT" flushall >/dev/null
    tls=$("$BENCH" rate --redis "$TLS_URL" "${TLS_OPTS[@]}" --events "$EVENTS" 2>/dev/null)
    redis-cli -p "$PORT" flushall >/dev/null
    btls=$(redis-benchmark -h 127.0.0.1 -p "$TLS_PORT" --tls --cacert "$DIR/ca.crt" -P 64 -c 1 -n "$EVENTS" -q \
           XADD 'bench:{b}:events' MAXLEN '~' 1000000 '*' "${FIELDS[@]}" 2>/dev/null | tr '\r' '\n' | rps)
    pr=$(echo "$plain" | field events_per_s); tr_=$(echo "$tls" | field events_per_s)
    pc=$(echo "$plain" | field cpu_us_per_event); tc=$(echo "$tls" | field cpu_us_per_event)
    printf '| %s | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %.0f | %.2f |\n' "$round" "$pr" "$tr_" \
        "$(echo "$tr_ / $pr" | bc -l)" "$pc" "$tc" "$(echo "$tc / $pc" | bc -l)" "$btls" "$(echo "$tr_ / $btls" | bc -l)"
done
redis-cli -p "$PORT" flushall >/dev/null
echo
echo "latency over TLS at $RATE events/s for $LATENCY_SECONDS s:"
"$BENCH" latency --redis "$TLS_URL" "${TLS_OPTS[@]}" --rate "$RATE" --seconds "$LATENCY_SECONDS" 2>/dev/null
