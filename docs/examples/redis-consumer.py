#!/usr/bin/env python3
"""A Plugboard event consumer written with redis-py (docs/redis.md, "A consumer in Python").

Reads plugboard:{HOST}:events of one or more hosts as member CONSUMER of consumer group GROUP,
and prints each event as one JSON object in the event schema (the object `plugboard tail --json`
prints: "id" first, then the fields; with several hosts, "host" after "id"). At least once:
an entry is acknowledged (XACK) only after it was handled, this consumer first re-reads what it
read before but did not acknowledge, and with --claim-idle-ms it takes over entries another
consumer of the group left pending that long (XAUTOCLAIM: that consumer died).

    python3 redis-consumer.py --redis redis://127.0.0.1:6379/0 --host myhost --group audit --consumer c1

Needs redis-py 4 or later (Debian 12: apt install python3-redis; elsewhere: pip install redis)
and Redis 6.2 or later (XAUTOCLAIM). For a Redis Cluster, use redis.cluster.RedisCluster and one
stream per XREADGROUP call: each host's stream lives in its own slot.
"""
import argparse
import json
import sys

import redis

# Stream fields whose values are decimal numbers, and those that are comma-joined lists
# (docs/redis.md, "Field schema of an event entry"); every other field is a string.
DECIMAL = {"sequence", "timestamp_ns", "seqnum", "busnum", "devnum", "speed_kbps", "num_interfaces"}
LISTS = {"flags", "interfaces"}


def event(entry_id, fields, host=None):
    """One stream entry as the event schema's JSON object."""
    out = {"id": entry_id}
    if host is not None:
        out["host"] = host
    for name, value in fields.items():
        # Strings are byte for byte what the kernel gave: not always UTF-8.
        text = value.decode("utf-8", errors="replace")
        if name in DECIMAL:
            out[name] = int(text)
        elif name in LISTS:
            out[name] = text.split(",") if text else []
        else:
            out[name] = text
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    p.add_argument("--host", action="append", required=True, help="whose stream to read; repeat for several")
    p.add_argument("--group", required=True)
    p.add_argument("--consumer", required=True)
    p.add_argument("--from", dest="start", default="$", help="where a new group starts: 0 (everything) or $ (new only)")
    p.add_argument("--claim-idle-ms", type=int, default=None, help="take over entries pending this long for others")
    p.add_argument("--count", type=int, default=None, help="stop after this many events")
    args = p.parse_args()

    r = redis.Redis.from_url(args.redis)
    keys = {f"plugboard:{{{h}}}:events": h for h in args.host}
    several = len(keys) > 1
    for key in keys:
        try:
            r.xgroup_create(key, args.group, id=args.start, mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):  # the group exists: join it
                raise

    handled = 0

    def handle(key, entries):
        """Print, then acknowledge what was printed: at least once."""
        nonlocal handled
        done = []
        for entry_id, fields in entries:
            if args.count is not None and handled >= args.count:
                break
            if fields:  # None: deleted (trimmed) while pending
                print(json.dumps(event(entry_id.decode(), {k.decode(): v for k, v in fields.items()},
                                       keys[key] if several else None), ensure_ascii=False), flush=True)
                handled += 1
            done.append(entry_id)
        if done:
            r.xack(key, args.group, *done)

    # 1. What this consumer read before and did not acknowledge (it crashed, or lost the connection).
    for key in keys:
        while True:
            reply = r.xreadgroup(args.group, args.consumer, {key: "0"}, count=100)
            entries = reply[0][1] if reply else []
            if not entries or (args.count is not None and handled >= args.count):
                break
            handle(key, entries)
    # 2. New entries, claiming those a dead consumer left pending on the way.
    while args.count is None or handled < args.count:
        if args.claim_idle_ms is not None:
            for key in keys:
                cursor = "0-0"
                while True:
                    cursor, entries = r.xautoclaim(key, args.group, args.consumer, args.claim_idle_ms,
                                                   start_id=cursor, count=100)[:2]
                    handle(key, entries)
                    if cursor in (b"0-0", "0-0"):
                        break
        want = 100 if args.count is None else max(1, min(100, args.count - handled))
        for key, entries in r.xreadgroup(args.group, args.consumer, {k: ">" for k in keys}, count=want, block=1000) or []:
            handle(key.decode() if isinstance(key, bytes) else key, entries)


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:
        sys.exit(1)  # the reader went away: what was not printed was not acknowledged
    except KeyboardInterrupt:
        pass
