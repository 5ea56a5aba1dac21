#!/usr/bin/env bash
# The Redis part of `make demo`: starts a local redis-server on a free loopback port, runs
# `plugboard tail` on the demo host's stream, replays demo/session.jsonl through the daemon with
# `--redis`, and shows the events arriving through tail. Cleans up the server and its directory.
#
#   scripts/demo-redis.sh [BUILD_DIR] [PLUGIN_DIR] [replay|udev]   # defaults: .build/debug build/plugins replay
#
# udev: the scripted hotplug session of plugboard-demo-bed (a umockdev testbed) drives the real
# `plugboard run --source udev --redis URL`; tail's output is summarised at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${1:-.build/debug}
PLUGIN_DIR=${2:-build/plugins}
MODE=${3:-replay}
SESSION=${SESSION:-demo/session.jsonl}
PB="$BUILD_DIR/plugboard"
[ -x "$PB" ] || { echo "demo-redis: $PB not found: build first (make build)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "demo-redis: redis-server not installed (make deps)" >&2; exit 1; }

DIR=$(mktemp -d /tmp/plugboard-demo-redis-XXXXXX)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="redis://127.0.0.1:$PORT/0"
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" \
    --daemonize no --logfile "$DIR/redis.log" &
RPID=$!
TPID=
cleanup() {
    [ -n "$TPID" ] && kill "$TPID" 2>/dev/null || true
    kill "$RPID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

if [ "$MODE" = udev ]; then
    echo "==> redis-server on $URL; plugboard tail follows the stream of host 'demo'"
    "$PB" tail --redis "$URL" --host demo --from 0 > "$DIR/tail.out" 2>&1 &
    TPID=$!
    umockdev-wrapper "$BUILD_DIR/plugboard-demo-bed" --plugboard "$PB" --plugins "$PLUGIN_DIR" \
        -- --redis "$URL" --redis-host demo
    sleep 1
    kill "$TPID" 2>/dev/null || true
    wait "$TPID" 2>/dev/null || true
    TPID=
    echo "==> plugboard tail received $(grep -c '^PLUGBOARD\[' "$DIR/tail.out") events from Redis; the first 12:"
    awk '/^PLUGBOARD\[/ && n++ < 12' "$DIR/tail.out"
    echo "==> device-counter's summary, from plugboard:{demo}:plugin:device-counter:"
    redis-cli -p "$PORT" XRANGE 'plugboard:{demo}:plugin:device-counter' - + | grep -m1 '"events"' || true
else
EVENTS=$(grep -c '^{' "$SESSION")
echo "==> redis-server on $URL; plugboard tail waits for $EVENTS events of host 'demo'"
"$PB" tail --redis "$URL" --host demo --from 0 --count "$EVENTS" &
TPID=$!

echo "==> plugboard run --source replay:$SESSION --redis $URL"
"$PB" run --plugins "$PLUGIN_DIR" --source "replay:$SESSION" --redis "$URL" --redis-host demo --log-level warning >/dev/null

# tail exits by itself after --count events; give it a few seconds at most.
for _ in $(seq 100); do kill -0 "$TPID" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$TPID" 2>/dev/null; then echo "demo-redis: tail did not see all $EVENTS events" >&2; exit 1; fi
wait "$TPID"; TPID=
fi
echo "==> XLEN plugboard:{demo}:events = $(redis-cli -p "$PORT" XLEN 'plugboard:{demo}:events')"
