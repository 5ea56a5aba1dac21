#!/usr/bin/env bash
# udev intake benchmarks (docs/benchmarks.md, "udev intake: burst rate and CPU per event"), issue 16:
#  burst: N add/remove uevents back to back from umockdev's sender, into
#    - the emitter alone: a listener thread that only reads the datagrams (umockdev's own rate),
#    - the real `plugboard run --source udev --udev-mode udev --redis ...` with the sample plugins
#      (usb-logger, device-counter; release build; process isolation, the default),
#    - the same with --set plugins.isolation=thread,
#    - Benchmarks/scripts/pyudev-to-redis.py (pyudev monitor, one redis-py XADD per event);
#    events/s received (drain count, or XLEN of the stream), the ratio to the emitter alone, and
#    whether umockdev overflowed the listener's datagram queue (4096).
#  cpu: the same listeners on a paced burst (one uevent every PACE_US µs): CPU time per event of the
#    listener's whole process tree (all threads, worker processes included), and the ratio to the script.
# Listeners are interleaved round by round; medians of ROUNDS. Starts its own redis-server on a free
# loopback port (no persistence) and always stops it.
#
#   Benchmarks/scripts/udev-burst.sh burst|cpu|both   # env: EVENTS=20000 CPU_EVENTS=4000 ROUNDS=3 PACE_US=100
#   BEFORE=/path/to/other/plugboard LISTENERS="drain before plugboard ..." adds another build (its
#   plugboard-worker beside it) as listeners "before" and "before-thread", for same-run before/after.
set -euo pipefail
cd "$(dirname "$0")/../.."
WHAT=${1:-both}
EVENTS=${EVENTS:-20000}
CPU_EVENTS=${CPU_EVENTS:-4000}
ROUNDS=${ROUNDS:-3}
PACE_US=${PACE_US:-100}
LISTENERS=${LISTENERS:-"drain plugboard plugboard-thread script"}

swift build -c release --product plugboard >/dev/null
swift build -c release --product plugboard-worker >/dev/null
swift build -c release --product plugboard-demo-bed >/dev/null
swift build -c release --product usb-logger >/dev/null 2>&1 || true
swift build -c release --product device-counter >/dev/null 2>&1 || true
PLUGINS=build/bench-udev-plugins
umask 022
rm -rf "$PLUGINS" && mkdir -p "$PLUGINS"
for p in usb-logger device-counter; do
    cp -f ".build/release/lib$p.so" "$PLUGINS/"
    .build/release/plugboard pack "SamplePlugins/$p/plugin.toml" --library "$PLUGINS/lib$p.so" -o "$PLUGINS/$p.pbm" >/dev/null
done
sysctl -q -w net.unix.max_dgram_qlen=4096

DIR=$(mktemp -d /tmp/plugboard-bench-udev-XXXXXX)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" --daemonize no --logfile "$DIR/redis.log" &
RPID=$!
trap 'kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

BED=.build/release/plugboard-demo-bed
# One measurement: prints the bed's `result ...` line (overflow=yes when umockdev's sender gave up).
one() {  # listener events pace
    local l=$1 kind=$1 extra=() pb=.build/release/plugboard
    case "$l" in
        plugboard) extra=(-- --set plugins.worker_user=root) ;;
        plugboard-thread) kind=plugboard; extra=(-- --set plugins.isolation=thread) ;;
        before) kind=plugboard; pb=$BEFORE; extra=(-- --set plugins.worker_user=root) ;;
        before-thread) kind=plugboard; pb=$BEFORE; extra=(-- --set plugins.isolation=thread) ;;
    esac
    redis-cli -p "$PORT" flushall >/dev/null
    umockdev-wrapper "$BED" burst-bench --listener "$kind" --events "$2" --pace-us "$3" --redis-port "$PORT" \
        --plugboard "$pb" --plugins "$PLUGINS" --script Benchmarks/scripts/pyudev-to-redis.py \
        "${extra[@]}" 2>"$DIR/bed.err" | grep '^result' | sed "s/listener=$kind/listener=$l/" || true
    grep -v '^$' "$DIR/bed.err" | grep -q 'sendmsg failed' && echo "  ($l: umockdev: $(grep -m1 'sendmsg failed' "$DIR/bed.err"))" >&2 || true
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "-"; else print a[int((NR + 1) / 2)]}'; }

run() {  # kind events pace
    local kind=$1 events=$2 pace=$3 out="$DIR/$1.txt"
    : >"$out"
    for r in $(seq "$ROUNDS"); do
        for l in $LISTENERS; do one "$l" "$events" "$pace" | tee -a "$out" >&2; done
    done
    echo
    echo "$kind: $events uevents (add/remove), $( [ "$pace" = 0 ] && echo 'back to back' || echo "one every $pace us"), medians of $ROUNDS rounds; $(nproc) cores, loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
    local drain script
    drain=$( (grep "listener=drain " "$out" || true) | (grep overflow=no || true) | field received_per_s | median)
    script=$( (grep "listener=script " "$out" || true) | (grep overflow=no || true) | field cpu_us_per_event | median)
    if [ "$kind" = burst ]; then
        echo "| listener | received ev/s | / emitter alone | sent ev/s | overflowed | all received |"
        echo "|---|---:|---:|---:|---:|---:|"
    else
        echo "| listener | CPU µs per event | / script | received ev/s | overflowed |"
        echo "|---|---:|---:|---:|---:|"
    fi
    for l in $LISTENERS; do
        local rows ok rate sent cpu over full
        rows=$(grep "listener=$l " "$out" || true)
        ok=$(echo "$rows" | grep 'overflow=no' || true)
        over=$(echo "$rows" | grep -c 'overflow=yes' || true)
        rate=$(echo "$ok" | field received_per_s | median)
        sent=$(echo "$ok" | field sent_per_s | median)
        cpu=$(echo "$ok" | field cpu_us_per_event | median)
        full=$(echo "$ok" | awk -v n="$events" '/received=/ {split($0, a, "received="); split(a[2], b, " "); if (b[1] + 0 >= n) c++} END {print c + 0}')
        if [ "$kind" = burst ]; then
            echo "| $l | $rate | $(awk -v a="$rate" -v b="$drain" 'BEGIN {if (b + 0 > 0 && a != "-") printf "%.2f", a / b; else print "-"}') | $sent | $over of $ROUNDS | $full of $ROUNDS |"
        else
            [ "$l" = drain ] && continue
            echo "| $l | $cpu | $(awk -v a="$cpu" -v b="$script" 'BEGIN {if (b + 0 > 0 && a != "-") printf "%.2f", a / b; else print "-"}') | $rate | $over of $ROUNDS |"
        fi
    done
}

# Where each listener's CPU went, by thread name (µs per event), in its run with the median CPU.
threads() {  # kind
    local out="$DIR/$1.txt"
    echo
    echo "$1: CPU by thread (µs per event; the run with the median CPU per event)"
    for l in $LISTENERS; do
        [ "$l" = drain ] && continue
        local ok med
        ok=$( (grep "listener=$l " "$out" || true) | (grep overflow=no || true))
        [ -z "$ok" ] && continue
        med=$(echo "$ok" | field cpu_us_per_event | median)
        echo "- $l: $(echo "$ok" | grep "cpu_us_per_event=$med " | head -1 | field threads | tr ',' ' ')"
    done
}

case "$WHAT" in
    burst) run burst "$EVENTS" 0; threads burst ;;
    cpu) run cpu "$CPU_EVENTS" "$PACE_US"; threads cpu ;;
    both) run burst "$EVENTS" 0; threads burst; run cpu "$CPU_EVENTS" "$PACE_US"; threads cpu ;;
esac
