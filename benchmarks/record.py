"""Record path: one timeline request's 20 served posts, ours against per-view database writes."""

import random
import time

from . import fixtures, ours, profile
from .harness import (
    BASELINE,
    LIMIT,
    OURS,
    Contender,
    ContenderFailed,
    Measurement,
    format_rate,
    format_ratio,
    format_seconds,
    markdown_table,
    median,
    ours_of,
    percentile,
    ratio,
    run_interleaved,
)
from .redisraw import RawRecorder, redis_benchmark_rows

PAGE = 20
VIEWERS = 200
NEWEST = 20_000  # pages are drawn from the newest posts, as timelines are


def workload(post_ids, requests, viewers, seed):
    """[(viewer, [20 consecutive post ids])]: random timeline pages for random viewers, each
    (viewer, page) once, so every request is a first view that reaches Redis."""
    rng = random.Random(seed)
    newest = post_ids[-NEWEST:][::-1]
    pages = len(newest) // PAGE
    if requests > pages * len(viewers):
        raise SystemExit(f"--requests: at most {pages * len(viewers):,} first views here")
    out = []
    for pair in rng.sample(range(pages * len(viewers)), requests):
        viewer, page = divmod(pair, pages)
        out.append((viewers[viewer], newest[page * PAGE : (page + 1) * PAGE]))
    return out


def timed_requests(requests, handle):
    """Call handle(viewer, ids) per request; (total seconds, per-request latencies)."""
    latencies = []
    for viewer, post_ids in requests:
        start = time.perf_counter()
        handle(viewer, post_ids)
        latencies.append(time.perf_counter() - start)
    return sum(latencies), latencies


class RecordWorkload:
    def __init__(self, options, post_ids, redis_client):
        from django.test import RequestFactory

        from casusult.models import Post

        self.redis = redis_client
        viewers = fixtures.ensure_viewers(VIEWERS)
        self.requests = workload(post_ids, options.requests, viewers, options.seed)
        # The database contenders take 10-30 ms a request and vary little: fewer requests suffice.
        self.db_requests = self.requests[: options.db_requests]
        factory = RequestFactory()
        # Built untimed: the view has its request and its page of posts already.
        self.prepared = []
        for viewer, ids in self.requests:
            request = factory.get("/api/timeline/")
            request.user = viewer
            self.prepared.append((request, [Post(id=post_id) for post_id in ids]))
        self.ours_lost = 0
        self.raw = RawRecorder(options.redis_url)
        self.raw_calls = None
        self.hit_model = fixtures.ensure_hit_table()

    def measurement(self, seconds, latencies):
        return Measurement(seconds=seconds, units=len(latencies) * PAGE, samples=list(latencies))

    def fresh_redis(self):
        """An empty Redis db, and no process cache that remembers what it held: every round
        records first views."""
        from impressions.reloads import reloads

        self.redis.flushdb()
        reloads.clear()

    def run_ours(self):
        record = ours.record()
        from impressions.recorder import lost

        lost_before = lost.impressions
        latencies = []
        for request, posts in self.prepared:
            start = time.perf_counter()
            record(request, posts)
            latencies.append(time.perf_counter() - start)
        # Ours never raises into the view: a request past the 50 ms Redis timeout loses its
        # impressions and is served anyway. Count them for the table instead of failing the row.
        self.ours_lost += lost.impressions - lost_before
        return self.measurement(sum(latencies), latencies)

    def run_raw(self):
        if self.raw_calls is None:
            self.raw_calls = self.raw.calls([(f"u:{v.pk}", ids) for v, ids in self.requests])
        latencies = self.raw.replay(self.raw_calls)
        return self.measurement(sum(latencies), latencies)

    def run_update_per_post(self):
        from django.db.models import F

        from casusult.models import Post

        def handle(viewer, post_ids):
            for post_id in post_ids:
                Post.objects.filter(pk=post_id).update(impressions=F("impressions") + 1)

        return self.measurement(*timed_requests(self.db_requests, handle))

    def run_hitcount(self):
        from django.db.models import F

        from casusult.models import Post

        hit = self.hit_model

        def handle(viewer, post_ids):
            for post_id in post_ids:
                hit.objects.create(
                    post_id=post_id, session=f"u:{viewer.pk}", ip="127.0.0.1", user_agent="bench"
                )
                Post.objects.filter(pk=post_id).update(impressions=F("impressions") + 1)

        return self.measurement(*timed_requests(self.db_requests, handle))

    def contenders(self):
        return [
            Contender(
                "ours: impressions.record(request, posts)",
                self.run_ours,
                OURS,
                self.fresh_redis,
                "one EVALSHA (per-viewer de-dup + pending HINCRBY); schedules the flush once",
            ),
            Contender(
                "naive: UPDATE … impressions + 1 per served post",
                self.run_update_per_post,
                BASELINE,
                note="20 autocommit UPDATEs per request, no de-dup",
            ),
            Contender(
                "hit-counter (django-hitcount style)",
                self.run_hitcount,
                BASELINE,
                note="per post: INSERT a hit row + F() increment; no de-dup lookup",
            ),
            Contender(
                "raw: same Lua script via redis-py, no Django",
                self.run_raw,
                LIMIT,
                self.fresh_redis,
                "same keys and arguments, EVALSHA on a plain redis.Redis",
            ),
        ]


def run(options, post_ids, redis_client, log=print):
    log(f"record path: {options.requests} requests of {PAGE} posts, {options.rounds} round(s)")
    workload_ = RecordWorkload(options, post_ids, redis_client)
    results = run_interleaved(workload_.contenders(), options.rounds, log)
    redis_client.flushdb()
    ceiling = redis_benchmark_rows(options.redis_url, workload_.raw, PAGE)
    redis_client.flushdb()
    if workload_.ours_lost:
        ours_row = results[0].contender
        ours_row.note += f"; {workload_.ours_lost:,} impressions lost to the 50 ms Redis timeout"
    text = render(results, ceiling)
    if options.profile_size:
        try:
            _, stats = profile.profile(workload_.run_ours)
            text += "\n\n" + profile.render(
                f"Profile of ours, {options.requests} record calls", stats
            )
        except ContenderFailed as error:
            text += f"\n\nProfile of ours: not run ({error})."
        redis_client.flushdb()
    return text, results


def render(results, ceiling):
    reference = ours_of(results)
    rows = []
    for result in results:
        if not result.ok:
            rows.append(
                [result.name, result.contender.kind, "-", "FAILED", "-", "-", "-", result.error]
            )
            continue
        samples = result.samples
        rows.append(
            [
                result.name,
                result.contender.kind,
                f"{len(samples) // len(result.measurements):,}",
                format_rate(result.median_rate),
                format_seconds(median(samples)),
                format_seconds(percentile(samples, 99)),
                format_ratio(ratio(median(samples), reference and median(reference.samples))),
                result.contender.note,
            ]
        )
    rounds = max((len(r.measurements) for r in results), default=0)
    table = markdown_table(
        [
            "contender",
            "kind",
            "requests/round",
            "impressions/s",
            "added latency p50",
            "p99",
            "p50 ÷ ours",
            "what one request does",
        ],
        rows,
    )
    text = f"Median of {rounds} round(s); latencies pooled over every request of every round.\n\n"
    text += table
    if ceiling:
        text += "\n\n**The server's own ceiling** (`redis-benchmark`, our RECORD script with random"
        text += " viewers and posts, and PING for the bare round trip)\n\n"
        text += markdown_table(
            ["redis-benchmark", "clients", "requests/s", "impressions/s", "p50", "p99"], ceiling
        )
    return text
