#!/usr/bin/env bash
# The publisher's window and spill in memory-mapped files (state.dir, docs/redis.md "Crash safety")
# against the in-memory window, in the same run, on the same redis-server (docs/benchmarks.md,
# "### Publish rate with the window in a file"). Each round runs both, alternating which goes first;
# the file variant gets a fresh state directory on disk (/var/tmp) every round, so its pages are
# first touched during the measurement, as at a daemon's start.
#
#   Benchmarks/scripts/redis-state.sh      # env: EVENTS=500000 ROUNDS=5
set -euo pipefail
cd "$(dirname "$0")/../.."
EVENTS=${EVENTS:-500000}
ROUNDS=${ROUNDS:-5}
swift build -c release --product plugboard-bench-redis >/dev/null
BENCH=.build/release/plugboard-bench-redis
DIR=$(mktemp -d /tmp/plugboard-bench-state-XXXXXX)
STATE=$(mktemp -d /var/tmp/plugboard-bench-state-XXXXXX)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" --daemonize no --logfile "$DIR/redis.log" &
RPID=$!
trap 'kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null; rm -rf "$DIR" "$STATE"' EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
URL="redis://127.0.0.1:$PORT/0"
rate() { grep -o 'events_per_s=[0-9]*' | cut -d= -f2; }
memory() { redis-cli -p "$PORT" flushall >/dev/null; "$BENCH" rate --redis "$URL" --events "$EVENTS" 2>/dev/null | rate; }
file() { redis-cli -p "$PORT" flushall >/dev/null; rm -f "$STATE"/redis-*; "$BENCH" rate --redis "$URL" --events "$EVENTS" --state-dir "$STATE" 2>/dev/null | rate; }
memory >/dev/null; file >/dev/null   # warm-up, not reported
echo "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), events per round: $EVENTS, state dir on $(df --output=fstype "$STATE" | tail -1)"
echo "| round | in memory events/s | in files (state.dir) events/s | files / memory |"
echo "|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then m=$(memory); f=$(file); else f=$(file); m=$(memory); fi
    printf '| %s | %.0f | %.0f | %.2f |\n' "$round" "$m" "$f" "$(echo "$f / $m" | bc -l)"
done
