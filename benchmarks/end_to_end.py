"""End to end: timeline requests per second through Django, impression recording on vs off."""

import random
import re
import time

from . import fixtures, ours
from .harness import (
    BASELINE,
    OURS,
    Contender,
    ContenderFailed,
    Measurement,
    format_rate,
    format_seconds,
    markdown_table,
    median,
    percentile,
)

CLIENTS = 20  # half logged in, half anonymous visitors who keep their visitor cookie
PAGES = 50  # requests go to pages 1-50, each by its cursor


class Viewers:
    """Test clients that keep their cookies between requests, like browsers."""

    def __init__(self, seed):
        from django.test import Client

        users = fixtures.ensure_viewers(CLIENTS // 2)
        self.clients = []
        for user in users:
            client = Client(HTTP_HOST="localhost")  # an ALLOWED_HOSTS name, unlike "testserver"
            client.force_login(user)
            self.clients.append(client)
        self.clients += [Client(HTTP_HOST="localhost") for _ in range(CLIENTS - len(users))]
        self.rng = random.Random(seed)
        self.cursors = page_cursors(PAGES)

    def plan(self, requests):
        return [
            (self.rng.randrange(len(self.clients)), self.rng.randrange(1, PAGES + 1))
            for _ in range(requests)
        ]


def page_cursors(pages):
    """{page number: query parameters}: page 1 has none, page n the cursor after page n - 1."""
    from casusult.models import Post
    from casusult.paging import PAGE_SIZE, Position, encode_cursor

    ends = list(
        Post.objects.order_by("-created_at", "-id").values_list("created_at", "id")[
            : pages * PAGE_SIZE
        ]
    )
    cursors = {1: {}}
    for page in range(2, pages + 1):
        cursors[page] = {"cursor": encode_cursor(Position(*ends[(page - 1) * PAGE_SIZE - 1]))}
    return cursors


def swap_record(replacement_for):
    """Swap impressions.record (the views look it up on each call); returns undo."""
    import impressions

    original = impressions.record
    impressions.record = replacement_for(original)
    return lambda: setattr(impressions, "record", original)


def no_op(original):
    return lambda request, posts: None


class RecordTimer:
    """Wraps impressions.record to time it inside the request: a cost that on/off noise hides."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self, original):
        def timed_record(request, posts):
            start = time.perf_counter()
            try:
                return original(request, posts)
            finally:
                self.seconds += time.perf_counter() - start

        return timed_record


def endpoint_run(viewers, plan, path, recording, record_share):
    def run():
        ours.record()  # fails the row clearly when the impressions app is missing
        timer = RecordTimer()
        undo = swap_record(timer if recording else no_op)
        latencies = []
        try:
            for client_index, page in plan:
                start = time.perf_counter()
                response = viewers.clients[client_index].get(path, viewers.cursors[page])
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    raise ContenderFailed(f"GET {path}, page {page}: {response.status_code}")
        finally:
            undo()
        record_share.setdefault(path, []).append(timer.seconds / sum(latencies))
        return Measurement(seconds=sum(latencies), units=len(latencies), samples=latencies)

    return run


def run(options, redis_client, log=print):
    from .harness import run_interleaved

    log(f"end to end: {options.e2e_requests} requests per contender, {options.rounds} round(s)")
    # After a flush benchmark the table holds a million dead row versions and no visibility map:
    # the timeline's COUNT(*) would pay for them.
    fixtures.vacuum_posts(analyze=True)
    viewers = Viewers(options.seed)
    plan = viewers.plan(options.e2e_requests)
    contenders, record_share = [], {}
    for label, path in (("JSON /api/timeline/", "/api/timeline/"), ("HTML /", "/")):
        for recording in (True, False):
            contenders.append(
                Contender(
                    f"{label}, recording {'on' if recording else 'off'}",
                    endpoint_run(viewers, plan, path, recording, record_share),
                    OURS if recording else BASELINE,
                    redis_client.flushdb,
                )
            )
    results = run_interleaved(contenders, options.rounds, log)
    redis_client.flushdb()
    text, overheads = render(results, record_share)
    notes = [page_query_note(viewers), identity_note(viewers)]
    redis_client.flushdb()
    return text + "\n\n" + "\n\n".join(notes), overheads


def statement_shape(sql):
    """`SELECT … FROM "table"`: the verb and the first table, enough to say what ran."""
    verb = sql.split(None, 1)[0].upper() if sql.strip() else "?"
    table = re.search(r'\b(?:FROM|INTO|UPDATE)\s+("?[\w.]+"?)', sql, re.IGNORECASE)
    return f"`{verb} … {table.group(1)}`" if table else f"`{verb}`"


def identity_note(viewers):
    """The SQL that runs inside impressions.record: resolving the viewer (session, user)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    seen = {}

    def traced(original):
        def record(request, posts):
            with CaptureQueriesContext(connection) as queries:
                result = original(request, posts)
            kind = "logged-in" if request.user.is_authenticated else "anonymous"
            seen[kind] = [statement_shape(q["sql"]) for q in queries.captured_queries]
            return result

        return record

    undo = swap_record(traced)
    try:
        # Each client has made requests already: its session exists, as in steady traffic.
        for client in (viewers.clients[0], viewers.clients[-1]):
            client.get("/api/timeline/")
    finally:
        undo()
    parts = [
        f"{len(sql)} for each request of {kind} viewers ({', '.join(sql) or 'none'})"
        for kind, sql in seen.items()
    ]
    return (
        "SQL run inside `impressions.record` on the JSON endpoint, once the viewers have been"
        " seen: " + "; ".join(parts) + ". A logged-in viewer's user id is remembered per"
        " session for five minutes in each process (`impressions/session_users.py`), so the"
        " session and user queries run on a process's first view of a session only; anonymous"
        " viewers are named by their visitor cookie or a digest, with no query and no session."
    )


def page_query_note(viewers):
    """What a page costs the database: one keyset query, as cheap deep down as at the top."""
    from casusult.models import Post
    from casusult.paging import decode_cursor, page_after

    timings = {}
    for page in (1, PAGES):
        cursor = viewers.cursors[page].get("cursor")
        position = decode_cursor(cursor) if cursor else None
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            page_after(Post.objects.select_related("author"), position)
            samples.append(time.perf_counter() - start)
        timings[page] = median(samples)
    parts = [f"page {page}: {format_seconds(seconds)}" for page, seconds in timings.items()]
    return (
        "For scale: a timeline page is one keyset query on `(created_at, id)`, no `COUNT(*)`,"
        f" no `OFFSET` ({'; '.join(parts)} through the ORM, median of 5)."
    )


def render(results, record_share):
    by_name = {r.name: r for r in results}
    rows, overheads = [], {}
    for result in results:
        if not result.ok:
            rows.append([result.name, "FAILED", "-", "-", result.error, ""])
            continue
        cost = inside = ""
        if result.name.endswith("recording on"):
            off = by_name.get(result.name.replace("recording on", "recording off"))
            path = result.name.split(",")[0].split()[-1]
            share = 100 * median(record_share.get(path, []))
            inside = f"{share:.2f} %"
            if off and off.ok:
                added = median(result.samples) - median(off.samples)
                percent = 100 * (off.median_rate / result.median_rate - 1)
                overheads[result.name.split(",")[0]] = (percent, added, share)
                cost = f"{percent:+.1f} % ({format_seconds(added)} at p50)"
        samples = result.samples
        rows.append(
            [
                result.name,
                format_rate(result.median_rate),
                format_seconds(median(samples)),
                format_seconds(percentile(samples, 99)),
                cost,
                inside,
            ]
        )
    rounds = max((len(r.measurements) for r in results), default=0)
    table = markdown_table(
        [
            "endpoint",
            "requests/s",
            "latency p50",
            "p99",
            "on vs off: time per request",
            "time inside impressions.record",
        ],
        rows,
    )
    text = (
        f"Django's test client, in process, one thread; {CLIENTS} viewers (half logged in, half"
        f" anonymous keeping their visitor cookie), random pages 1-{PAGES} by cursor; median of {rounds}"
        " round(s). Recording off = `impressions.record` replaced by a no-op. The on/off"
        " difference is a difference of two noisy totals; the last column times `impressions.record` inside the"
        " same requests, which is the precise share.\n\n" + table
    )
    return text, overheads
