#!/usr/bin/env bash
# The whole daemon with the sample plugins against `redis-benchmark -P 64` (issue 16;
# docs/benchmarks.md, "### The whole daemon with the sample plugins"):
#   `plugboard run --source synthetic:N --redis URL` (release build) timed from its start to its
#   exit (every event acknowledged by Redis), three ways in each round: no plugins (an empty
#   directory), the two sample plugins (usb-logger and device-counter) in their default process
#   isolation, and the same with `--set plugins.isolation=thread`; against `redis-benchmark -P 64`
#   running the equivalent XADD (same 22 field/value pairs, MAXLEN ~ 1000000) on the same
#   redis-server in the same round. After every daemon run the stream must hold N entries (XLEN),
#   and it is deleted before the next. Prints each round and the medians.
# Starts its own redis-server on a free loopback port (no persistence) and always removes it.
# usb-logger prints a line per event: the daemon's stdout goes to /dev/null.
#
#   Benchmarks/scripts/redis-plugins.sh   # env: EVENTS=500000 ROUNDS=3 PB_EXTRA="--set k=v ..." PB=.build/release/plugboard
set -euo pipefail
cd "$(dirname "$0")/../.."

EVENTS=${EVENTS:-500000}
ROUNDS=${ROUNDS:-3}
read -r -a EXTRA <<< "${PB_EXTRA:-}"

for p in plugboard plugboard-worker usb-logger device-counter; do
    out=$(swift build -c release --product "$p" 2>&1) || { echo "$out" >&2; exit 1; }
done
BIN=.build/release
# PB=path: another build of plugboard (its plugboard-worker beside it), e.g. one before a change.
PB=${PB:-$BIN/plugboard}

DIR=$(mktemp -d /tmp/plugboard-bench-plugins-XXXXXX)
chmod 755 "$DIR"   # worker processes may run as another user (plugins.worker_user)
mkdir -m 755 "$DIR/none" "$DIR/samples" "$DIR/redis"
for p in usb-logger device-counter; do
    install -m 644 "$BIN/lib$p.so" "$DIR/samples/lib$p.so"
    "$PB" pack "SamplePlugins/$p/plugin.toml" --library "$DIR/samples/lib$p.so" -o "$DIR/samples/$p.pbm" >/dev/null
done
chmod 644 "$DIR"/samples/*

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR/redis" \
    --daemonize no --logfile "$DIR/redis/redis.log" &
RPID=$!
trap 'kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
URL="redis://127.0.0.1:$PORT/0"
KEY='plugboard:{bench}:events'

# The fields of one synthetic event, as the publisher writes them (docs/redis.md, field schema).
FIELDS=(sequence 123456 timestamp_ns 1668665440903 action add flags "" seqnum 123456 busnum 1 devnum 2
        vendor_id 1d6b product_id 1000 bcd_device 0000 device_class 00 device_subclass 00 device_protocol 00
        speed_kbps 480000 num_interfaces 0 interfaces ""
        syspath /sys/devices/synthetic/usb1/1-1 devnode "" serial "" manufacturer ""
        product "Synthetic Device 1" driver "")
baseline() {
    redis-cli -p "$PORT" flushall >/dev/null
    redis-benchmark -h 127.0.0.1 -p "$PORT" -P 64 -n "$EVENTS" -q \
        XADD 'bench:{b}:events' MAXLEN '~' 1000000 '*' "${FIELDS[@]}" 2>/dev/null \
        | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1
}
# One daemon run; prints events/s (start to exit). Fails when the stream does not hold EVENTS.
# MAXLEN ~ 1000000 as the baseline's XADD (the default, 100000, would trim the stream).
daemon() {   # daemon PLUGIN_DIR [extra args]
    local plugins=$1; shift
    redis-cli -p "$PORT" flushall >/dev/null
    local t0 t1 n
    t0=$(date +%s%N)
    "$PB" run --plugins "$plugins" --source "synthetic:$EVENTS" --redis "$URL" --redis-host bench \
        --redis-maxlen 1000000 --registry-cache none --log-level warning "${EXTRA[@]}" "$@" \
        >/dev/null 2>"$DIR/run.err" || { echo "plugboard run failed:" >&2; cat "$DIR/run.err" >&2; exit 1; }
    t1=$(date +%s%N)
    n=$(redis-cli -p "$PORT" xlen "$KEY")
    [ "$n" = "$EVENTS" ] || { echo "stream $KEY holds $n entries, not $EVENTS" >&2; cat "$DIR/run.err" >&2; exit 1; }
    redis-cli -p "$PORT" del "$KEY" >/dev/null
    echo "$EVENTS * 1000000000 / ($t1 - $t0)" | bc
}
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }

# Warm-up (not reported): the first fill of a fresh server is slower for every client alike,
# and the first daemon run pages the binaries in.
baseline >/dev/null
daemon "$DIR/samples" >/dev/null

echo "redis-server $(redis-server --version | grep -o 'v=[0-9.]*'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), events per run: $EVENTS${PB_EXTRA:+, extra: $PB_EXTRA}"
echo "| round | redis-benchmark -P 64, XADD/s | no plugins, ev/s | ratio | sample plugins (process), ev/s | ratio | sample plugins (thread), ev/s | ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
B=(); N=(); P=(); T=(); RN=(); RP=(); RT=()
for round in $(seq "$ROUNDS"); do
    b=$(baseline)
    n=$(daemon "$DIR/none")
    p=$(daemon "$DIR/samples")
    t=$(daemon "$DIR/samples" --set plugins.isolation=thread)
    B+=("$b"); N+=("$n"); P+=("$p"); T+=("$t")
    RN+=("$(ratio "$n" "$b")"); RP+=("$(ratio "$p" "$b")"); RT+=("$(ratio "$t" "$b")")
    printf '| %s | %.0f | %s | %s | %s | %s | %s | %s |\n' "$round" "$b" "$n" "${RN[-1]}" "$p" "${RP[-1]}" "$t" "${RT[-1]}"
done
printf '| median | %.0f | %s | %s | %s | %s | %s | %s |\n' "$(median "${B[@]}")" "$(median "${N[@]}")" "$(median "${RN[@]}")" \
    "$(median "${P[@]}")" "$(median "${RP[@]}")" "$(median "${T[@]}")" "$(median "${RT[@]}")"
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
