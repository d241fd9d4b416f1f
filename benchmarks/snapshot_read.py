"""Redis while a flush reads a snapshot (`--only snapread`, section 2.3): the longest wait of
another client, a process of its own sending PING after PING as a web worker's record call
would, while one snapshot of N fields is read:

- ours: impressions.flush.read_snapshot (HSCAN, READ_CHUNK fields a call);
- the naive way: one HGETALL of the whole snapshot;
- the floor: the same wait with no read running (the machine's own pauses).

Sizes (--snapread-fields): one shard's snapshot when a window holds 1,000,000 and 3,000,000
posts (16 shards, 1.5 counters a post). A record call has 50 ms (IMPRESSIONS_REDIS_TIMEOUT) and
drops its impressions past them."""

import multiprocessing
import time

from . import ours
from .harness import ContenderFailed, Spread, format_seconds, markdown_table, median

KEY = "bench:snapshot-read"
BUDGET = 0.050  # the record call's default time budget (IMPRESSIONS_REDIS_TIMEOUT)
SETTLE = 0.05  # seconds the probe runs before and after each read
FILL_CHUNK = 10_000
CONTENDERS = ("ours: HSCAN in chunks", "one HGETALL", "no read (the floor)")


def probe(url, ready, stop, answers):
    """In a process of its own: PING until `stop`; puts (longest wait, waits over BUDGET)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=10)
    client.ping()
    longest, over = 0.0, 0
    ready.set()
    while not stop.is_set():
        started = time.perf_counter()
        client.ping()
        waited = time.perf_counter() - started
        longest = max(longest, waited)
        over += waited > BUDGET
    answers.put((longest, over))


def fill(redis_client, fields):
    """Untimed: a snapshot-like hash of `fields` fields (<post>:<day> -> count)."""
    redis_client.delete(KEY)
    pipe = redis_client.pipeline(transaction=False)
    for start in range(0, fields, FILL_CHUNK):
        stop = min(fields, start + FILL_CHUNK)
        mapping = {f"{1_000_000 + n}:20261204": 1 + n % 3 for n in range(start, stop)}
        pipe.hset(KEY, mapping=mapping)
    pipe.execute()
    if redis_client.hlen(KEY) != fields:
        raise ContenderFailed(f"the fill wrote {redis_client.hlen(KEY):,} of {fields:,} fields")


def readers(redis_client, fields):
    read_snapshot = ours.read_snapshot()

    def checked(read):
        def run():
            got = read()
            if len(got) != fields:
                raise ContenderFailed(f"read {len(got):,} of {fields:,} fields")

        return run

    return {
        CONTENDERS[0]: checked(lambda: read_snapshot(redis_client, KEY)),
        CONTENDERS[1]: checked(lambda: redis_client.hgetall(KEY)),
        CONTENDERS[2]: lambda: None,
    }


def measure(url, read):
    """(read seconds, longest wait of the probe, its waits over BUDGET) of one read."""
    context = multiprocessing.get_context("fork")
    ready, stop, answers = context.Event(), context.Event(), context.Queue()
    child = context.Process(target=probe, args=(url, ready, stop, answers), daemon=True)
    child.start()
    try:
        if not ready.wait(10):
            raise ContenderFailed("the PING probe did not start")
        time.sleep(SETTLE)
        started = time.perf_counter()
        read()
        seconds = time.perf_counter() - started
        time.sleep(SETTLE)
        stop.set()
        longest, over = answers.get(timeout=10)
    finally:
        stop.set()
        child.join(10)
    return seconds, longest, over


def run(options, redis_client, log=print):
    """(markdown, {fields: {contender: [(seconds, longest, over)]}})."""
    results = {}
    try:
        for fields in options.snapread_fields:
            fill(redis_client, fields)
            runs = {name: [] for name in CONTENDERS}
            order = list(readers(redis_client, fields).items())
            for number in range(options.rounds):
                shift = number % len(order)
                for name, read in order[shift:] + order[:shift]:
                    runs[name].append(measure(options.redis_url, read))
            results[fields] = runs
            log(
                f"snapshot read, {fields:,} fields: longest wait of another client, ours"
                f" {format_seconds(longest_wait(runs, CONTENDERS[0]))}, one HGETALL"
                f" {format_seconds(longest_wait(runs, CONTENDERS[1]))}"
            )
    finally:
        redis_client.delete(KEY)
    return render(options, results), results


def longest_wait(runs, name):
    """The median over rounds of the probe's longest wait while `name` read."""
    return median([r[1] for r in runs[name]])


def ratio(results, fields):
    """Ours' longest wait ÷ one HGETALL's, paired by round."""
    runs = results[fields]
    return Spread.of(
        [a[1] / b[1] for a, b in zip(runs[CONTENDERS[0]], runs[CONTENDERS[1]], strict=True)]
    )


def render(options, results):
    rows = []
    for fields, runs in results.items():
        for name in CONTENDERS:
            found = runs[name]
            longest = Spread.of([r[1] for r in found])
            rows.append(
                [
                    f"{fields:,}",
                    name,
                    "-" if name == CONTENDERS[2] else format_seconds(median([r[0] for r in found])),
                    f"{format_seconds(longest.median)} ({format_seconds(longest.low)} to"
                    f" {format_seconds(longest.high)})",
                    str(sum(r[2] for r in found)),
                    ratio(results, fields).text() if name == CONTENDERS[0] else "",
                ]
            )
    return (
        "While one snapshot of N fields is read, a process of its own sends PING after PING to"
        " the same Redis, as a web worker's record call would: its longest wait (median of"
        f" {options.rounds} rounds, min to max) and its waits over the record call's"
        f" {BUDGET * 1000:.0f} ms budget (`IMPRESSIONS_REDIS_TIMEOUT`; such a call drops its"
        " impressions), for ours (`impressions.flush.read_snapshot`: `HSCAN` in chunks), the"
        " naive way (one `HGETALL`) and no read at all (the machine's own pauses). Contenders"
        " take turns in each round. N: one shard's snapshot when a window holds 1,000,000 and"
        " 3,000,000 posts (16 shards, 1.5 counters a post).\n\n"
        + markdown_table(
            [
                "fields",
                "contender",
                "read",
                "longest wait of another client",
                f"waits over {BUDGET * 1000:.0f} ms",
                "ours ÷ one HGETALL (longest wait, paired)",
            ],
            rows,
        )
    )


def headlines(results):
    lines = []
    for fields, runs in results.items():
        ours_wait, naive = (longest_wait(runs, name) for name in CONTENDERS[:2])
        lines.append(
            f"Redis while a flush reads a {fields:,}-field snapshot: another client waits at most"
            f" {format_seconds(ours_wait)} with ours (HSCAN chunks) against"
            f" {format_seconds(naive)} with one HGETALL (**{ratio(results, fields).text()}**;"
            f" the record call's budget: {BUDGET * 1000:.0f} ms)."
        )
    return lines
