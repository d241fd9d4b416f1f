"""A /metrics scrape's cost to Redis: ours (kept totals) against the old full scan, by buffer size.

Both read the same buffer in a redis-server of their own (started here, on a free port): its
command statistics then count only the scrapes, and the 10 million counters (about 1 GB) go
with it. The counters are written by a Lua script in large chunks, with the totals the record
script would have kept; each round checks that both contenders report the same status.
"""

import shutil
import statistics
import tempfile
import time

import devservices

from .harness import format_bytes, format_ratio, format_seconds, markdown_table

INTRO = (
    "What one `/metrics` scrape (`impressions.buffer_status()`) costs Redis, by the number of"
    " pending counters: ours reads the totals the record and flush scripts keep (four small"
    " keys a shard), the old scrape summed every field in a Lua script. Both read the same"
    " buffer, on a redis-server the benchmark starts for itself."
)

# The script every scrape ran before the totals (impressions/scripts.py until issue 17): it reads
# every field of every pending hash and unapplied snapshot.
OLD_FULL_SCAN = """
local snapshots = 0
for _, flush_id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  snapshots = snapshots + sum(ARGV[1] .. flush_id)
end
return {redis.call('HLEN', KEYS[1]), sum(KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0'), snapshots}
"""

# Writes counters `<id>:<day>` = 1 or 2 for ids first..last into one pending hash; returns their
# sum. KEYS: pending hash.  ARGV: first id, last id, day.
FILL = """
local total, fields = 0, {}
for id = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  local count = id % 2 + 1
  fields[#fields + 1] = id .. ':' .. ARGV[3]
  fields[#fields + 1] = count
  total = total + count
  if #fields == 2000 then redis.call('HSET', KEYS[1], unpack(fields)); fields = {} end
end
if #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end
return total
"""
FILL_CHUNK = 50_000  # counters per FILL call: short enough to keep each call well under a second
DAY = "20261118"


def old_status(client, keys, conf, scripts):
    """(pending impressions, entries, lost, in snapshots, scheduled) the way the old scrape got it."""
    pipe = client.pipeline(transaction=False)
    for shard in range(conf.SHARDS):
        pipe.execute_command(
            "EVAL",
            scripts.SUM_HASH + OLD_FULL_SCAN,
            3,
            keys.pending_key(shard),
            keys.lost_key(shard),
            keys.snapshots_key(shard),
            keys.snapshot_prefix(shard),
        )
    pipe.exists(keys.guard_key())
    *shards, scheduled = pipe.execute()
    entries, impressions, lost, snapshots = (
        sum(int(reply[i]) for reply in shards) for i in range(4)
    )
    return impressions, entries, lost, snapshots, bool(scheduled)


def fill(client, keys, conf, size):
    """`size` pending counters spread over the shards, and the totals the record script keeps."""
    client.flushdb()
    fill_script = client.register_script(FILL)
    per_shard, extra = divmod(size, conf.SHARDS)
    for shard in range(conf.SHARDS):
        count = per_shard + (1 if shard < extra else 0)
        total = 0
        for first in range(1, count + 1, FILL_CHUNK):
            last = min(count, first + FILL_CHUNK - 1)
            total += fill_script(keys=[keys.pending_key(shard)], args=[first, last, DAY])
        client.sadd(keys.pending_days_key(shard), DAY)
        client.hset(keys.totals_key(shard), mapping={"pending": total, "snapshots": 0, "exact": 1})


def server_usec(client, commands):
    """Microseconds the server spent in these commands so far (INFO commandstats)."""
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{command}", {}).get("usec", 0) for command in commands)


# (name, the commands its scrape sends: their server time is its Redis time)
OURS = ("ours: kept totals (HMGET, 2 HLEN, GET a shard)", ("hmget", "hlen", "get", "exists"))
OLD = ("old: full scan (EVAL over every field)", ("eval", "exists"))


def measure(client, scrape, commands, scrapes):
    """(server seconds, client seconds, the status) of a median scrape among `scrapes`.

    Medians, not means: on a shared machine one scrape the kernel pauses would otherwise weigh
    on all of them.
    """
    servers, walls = [], []
    for _ in range(scrapes):
        before = server_usec(client, commands)
        started = time.perf_counter()
        status = scrape()
        walls.append(time.perf_counter() - started)
        servers.append((server_usec(client, commands) - before) / 1e6)
    return statistics.median(servers), statistics.median(walls), tuple(status)


def run(options, log=print):
    """Paired rounds per size (old then ours, ours then old, …); returns (markdown, figures)."""
    import redis
    from django.test import override_settings

    from impressions import buffer_status, keys, scripts
    from impressions.conf import conf

    workdir = tempfile.mkdtemp(prefix="bench-scrape-")
    port = devservices.free_port()
    process = devservices.start_redis_server(port, workdir)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=600)
    rows, figures = [], {}
    try:
        with override_settings(IMPRESSIONS_REDIS_URL=url, IMPRESSIONS_REDIS_TIMEOUT=600.0):
            for size in options.scrape_sizes:
                started = time.perf_counter()
                fill(client, keys, conf, size)
                memory = int(client.info("memory")["used_memory"])
                log(
                    f"scrape: {size:,} counters written in {time.perf_counter() - started:.1f} s"
                    f" ({format_bytes(memory)} used)"
                )
                scrapes = {OURS: 201, OLD: max(1, min(201, 2_000_000 // size))}
                contenders = {
                    OURS: lambda: buffer_status(),
                    OLD: lambda: old_status(client, keys, conf, scripts),
                }
                by_name = {OURS: [], OLD: []}
                statuses = set()
                for round_number in range(options.rounds):
                    order = (OLD, OURS) if round_number % 2 == 0 else (OURS, OLD)
                    for contender in order:
                        name, commands = contender
                        server, wall, status = measure(
                            client, contenders[contender], commands, scrapes[contender]
                        )
                        by_name[contender].append((server, wall))
                        # The old scrape had no set-aside entries (BufferStatus' sixth field).
                        statuses.add(status[:5])
                        log(
                            f"  {size:,} round {round_number + 1}: {name}: server"
                            f" {format_seconds(server)}, client {format_seconds(wall)} a scrape"
                        )
                if len(statuses) != 1:
                    raise SystemExit(f"scrape: ours and the old scan disagree: {statuses}")
                ours, old = summary(by_name[OURS]), summary(by_name[OLD])
                figures[size] = {"ours": ours, "old": old, "memory": memory}
                rows.append(
                    [
                        f"{size:,}",
                        format_bytes(memory),
                        spread(old[0]),
                        spread(ours[0]),
                        format_ratio(old[0][1] / ours[0][1]) if ours[0][1] else "n/a",
                        spread(old[1]),
                        spread(ours[1]),
                    ]
                )
                client.flushdb()
    finally:
        client.close()
        devservices.stop_process(process)
        shutil.rmtree(workdir, ignore_errors=True)
    table = markdown_table(
        [
            "pending counters",
            "Redis memory",
            "old: Redis time a scrape",
            "ours: Redis time a scrape",
            "old ÷ ours",
            "old: client time a scrape",
            "ours: client time a scrape",
        ],
        rows,
    )
    text = (
        f"{options.rounds} paired rounds per size (the first contender alternates); the old scan"
        " runs as many scrapes a round as keep it under ~1 s of Redis time (one at 10 million),"
        " ours 201; a round's figure is its median scrape. Redis time: the server's own"
        " microseconds for the scrape's commands (INFO commandstats before and after each"
        " scrape, on a redis-server of the benchmark's own): what a viewer's record call may wait"
        " behind. Client time: the whole pipelined scrape from Python. Cells: median [min to max]"
        " of the rounds' figures.\n\n" + table
    )
    return text, figures


def summary(measurements):
    """((min, median, max) of the server times, the same of the client times) over the rounds."""

    def triple(values):
        values = sorted(values)
        return values[0], statistics.median(values), values[-1]

    return triple(s for s, _ in measurements), triple(w for _, w in measurements)


def spread(triple):
    low, middle, high = triple
    return f"{format_seconds(middle)} [{format_seconds(low)} to {format_seconds(high)}]"
