"""One load-test run: start the stack, seed it, browse it for a while, flush, compare exactly."""

import asyncio
import logging
import math
import sys
import time

import httpx
from django.contrib.sessions.models import Session
from django.db import connections

import devservices
from casusult.demo import DEMO_PASSWORD, demo_username
from casusult.health import READINESS_CACHE_SECONDS
from casusult.models import Post
from casusult.views import PAGE_SIZE

from . import seed
from .clients import run_clients
from .expectations import Outage, compare, expected_counts, latency_summary
from .stack import Stack, metric_total


def say(line):
    print(line, flush=True)


def warn(line):
    print(line, file=sys.stderr, flush=True)


def run(options, database_url):
    """The whole run on `database_url` (created if missing); True when every check passed."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    devservices.ensure_database(database_url)
    stack = Stack(
        database_url,
        workers=options.gunicorn_workers,
        threads=options.gunicorn_threads,
        dedup_window=max(3600, int(max(options.duration, options.then_redis_outage or 0) * 4)),
        redis_timeout=options.redis_timeout,
    )
    runs = [(options.redis_outage, options.duration)]
    if options.then_redis_outage:
        runs.append((True, options.then_redis_outage))
    passed = False
    try:
        stack.prepare(seed.demo_users_command(options.users), say=say)
        seed.seed_site(options.users, options.posts, say)
        results = []
        for number, (redis_outage, duration) in enumerate(runs):
            if number:
                stack.restart_servers_afresh(say)
            else:
                stack.start_servers(say)
            before = dict(Post.objects.values_list("id", "impressions"))
            connections.close_all()
            results.append(run_load(stack, before, options, redis_outage, duration))
        passed = all(results)
    except Exception as error:
        warn(f"load test aborted: {type(error).__name__}: {error}")
        for name in ("web", "worker"):
            warn(f"--- {name} log (last lines) ---\n{stack.log_tail(name)}")
    finally:
        stack.stop(keep_files=options.keep or not passed)
        if options.keep or not passed:
            say(f"server logs kept in {stack.workdir}")
    return passed


def run_load(stack, before, options, redis_outage, duration):
    clients = options.clients
    logged_in = round(clients * 0.4) if options.logged_in is None else options.logged_in
    logged_in = min(logged_in, clients)
    outage = Outage()
    sessions_before = Session.objects.count()

    async def stop_redis_a_while(deadline, results):
        # The load goes on until this returns (run_clients), so on a loaded machine the outage
        # and the time after it last until each has shown what it must, not until a fixed end.
        started = time.monotonic()
        patience = max(30.0, duration)  # per phase; past it the checks fail and say why
        await asyncio.sleep(duration * 0.35)
        outage.stop_requested = time.monotonic()
        await asyncio.to_thread(stack.stop_redis)
        outage.stopped = time.monotonic()
        await asyncio.sleep(max(0.0, started + duration * 0.65 - time.monotonic()))
        # A loaded machine may not have answered one readiness probe sent inside the outage yet,
        # nor one page: keep Redis down until both were, so the checks have them to see. Each
        # process reuses its /readyz answer for READINESS_CACHE_SECONDS: only a probe sent that
        # long into the outage must see it.
        await until(
            lambda: (
                any(
                    sent > outage.stopped + READINESS_CACHE_SECONDS
                    for sent, _, _ in results.readiness
                )
                and any(item.sent > outage.stopped for item in reversed(results.served))
            ),
            patience,
        )
        outage.start_requested = time.monotonic()
        await asyncio.to_thread(stack.start_redis)
        outage.started = time.monotonic()
        # New visitors arrive (each anonymous browser leaves once): pairs no request asked for
        # before, which count only if counting resumed. Served slowly on a loaded machine, so the
        # load goes on until one was (the check's own arithmetic) and a probe was answered.
        results.turn_over_after = outage.started
        await until(
            lambda: (
                any(sent > outage.started for sent, _, _ in results.readiness)
                and expected_counts(results.served, outage).fresh_after_outage > 0
            ),
            patience,
            interval=0.5,  # the arithmetic over everything served so far is not free
        )

    say(
        f"load: {clients} clients ({logged_in} logged in) for {duration:g} s"
        + (" with a Redis outage in the middle third" if redis_outage else "")
    )
    results = asyncio.run(
        run_clients(
            stack.base_url,
            clients=clients,
            logged_in=logged_in,
            duration=duration,
            usernames=[demo_username(n) for n in range(1, options.users + 1)],
            password=DEMO_PASSWORD,
            num_pages=max(1, math.ceil(len(before) / PAGE_SIZE)),
            think=options.think_ms / 1000,
            seed=options.seed,
            during=stop_redis_a_while if redis_outage else None,
        )
    )
    if redis_outage:
        probe_until_ready(stack, results, outage)
    static_ok, static_detail = stack.static_file_check()
    metrics_text = stack.scrape_metrics()
    worker_metrics = stack.scrape_metrics(worker=True)
    worker_code = stack.stop_worker()
    flushed = stack.manage("flush_impressions").stdout.strip()
    after = dict(Post.objects.values_list("id", "impressions"))
    actual = {
        post_id: count - before.get(post_id, 0)
        for post_id, count in after.items()
        if count != before.get(post_id, 0)
    }
    expectation = expected_counts(results.served, outage if redis_outage else None)
    wrong = compare(expectation, actual)
    checks = run_checks(results, expectation, actual, wrong, outage, redis_outage, metrics_text)
    checks.append(("worker stopped cleanly on SIGTERM", worker_code == 0, f"exit {worker_code}"))
    checks.append(("static files from whitenoise, hashed and cached", static_ok, static_detail))
    sessions = Session.objects.count() - sessions_before
    checks.append(
        (
            "no session but the logins' (anonymous viewers need none)",
            sessions == results.logins,
            f"{sessions} new django_session rows, {results.logins} logins",
        )
    )
    flush_tasks = metric_total(worker_metrics, "tasks_processed_total") or 0
    say(f"worker: {flush_tasks:g} tasks run during the load (its /metrics)")
    report(results, expectation, actual, flushed, metrics_text, checks)
    return all(ok for _, ok, _ in checks)


async def until(condition, patience, interval=0.1):
    """Wait until `condition()` holds, `patience` seconds at most."""
    give_up = time.monotonic() + patience
    while time.monotonic() < give_up and not condition():
        await asyncio.sleep(interval)


def probe_until_ready(stack, results, outage, patience=15.0):
    """Probe /readyz after the load until it answers 200, `patience` seconds at most.

    On a loaded machine the poller's last probe may have been sent before Redis came back; the
    check is whether readiness returns, not whether it did so inside the load window.
    """
    give_up = time.monotonic() + patience
    with httpx.Client(base_url=stack.base_url, timeout=patience) as client:
        while not any(s == 200 for sent, _, s in results.readiness if sent > outage.started):
            if time.monotonic() > give_up:
                return
            sent = time.monotonic()
            try:
                status = client.get("/readyz").status_code
            except httpx.HTTPError:
                status = 0
            results.readiness.append((sent, time.monotonic(), status))
            time.sleep(0.25)


def run_checks(results, expectation, actual, wrong, outage, redis_outage, metrics_text):
    """(name, passed, detail) for every claim the run makes."""
    checks = [
        ("no 5xx", results.server_errors == 0, f"{results.server_errors} responses >= 500"),
        (
            "every timeline request answered 200",
            set(results.statuses) <= {200} and not results.errors,
            f"statuses {dict(results.statuses)}, transport errors {dict(results.errors)}",
        ),
        (
            "database counts within [expected lower, upper] for every post",
            not wrong,
            f"{len(wrong)} posts outside; first: {dict(list(wrong.items())[:5])}",
        ),
    ]
    recorded = metric_total(metrics_text, "impressions_recorded_total")
    if recorded is not None and not redis_outage:
        checks.append(
            (
                "server's impressions_recorded_total equals the database delta",
                recorded == sum(actual.values()),
                f"metric {recorded:g}, database {sum(actual.values())}",
            )
        )
    dropped = metric_total(metrics_text, "impressions_dropped_total")
    if dropped is not None and redis_outage:
        # Served while down: dropped, unless a process had counted the pair before the outage and
        # answered the reload itself (de-duplicated, not dropped), so the floor is the pairs new
        # while down. At an edge: maybe (the reply may be what was lost, after Redis counted it,
        # so then the database has more than the metric).
        low, high = (
            expectation.fresh_while_down,
            expectation.impressions["down"] + expectation.impressions["edge"],
        )
        checks += [
            ("server's impressions_dropped_total matches the outage", low <= dropped <= high, f"metric {dropped:g}, served while down of pairs new then {low}, + reloads + at the edges {high}"),
            ("server's impressions_recorded_total <= database delta", recorded is not None and recorded <= sum(actual.values()), f"metric {recorded}, database {sum(actual.values())}"),
        ]  # fmt: skip
    if redis_outage:
        down = [
            s
            for (sent, received, s) in results.readiness
            if outage.classify(sent, received) == "down"
            and sent > outage.stopped + READINESS_CACHE_SECONDS  # the processes' answers expired
        ]
        after = [s for (sent, _, s) in results.readiness if sent > outage.started]
        checks += [
            ("/readyz answered 503 throughout the outage", bool(down) and set(down) == {503}, f"{len(down)} probes while down: {sorted(set(down))}"),
            ("/readyz answered 200 again after Redis returned", 200 in after, f"statuses after: {sorted(set(after))}"),
            ("counting resumed without a restart", expectation.fresh_after_outage > 0, f"{expectation.fresh_after_outage} new (viewer, post) pairs after the outage, all counted"),
            ("timeline requests were served while Redis was down", expectation.impressions["down"] > 0, f"{expectation.impressions['down']} impressions served while down"),
        ]  # fmt: skip
    return checks


def report(results, expectation, actual, flushed, metrics_text, checks):
    elapsed = results.finished - results.started
    latency = latency_summary(results.latencies)
    say(f"requests: {results.requests} in {elapsed:.1f} s = {results.requests / elapsed:.1f} req/s")
    say(f"latency: p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms")
    say(
        f"statuses: {dict(results.statuses)}; 5xx: {results.server_errors}; transport errors: {dict(results.errors)}; logins: {results.logins}"
    )
    say(
        f"served impressions by class: {dict(expectation.impressions)}; distinct (viewer, post) pairs: {dict(expectation.pairs)}"
    )
    lower, upper = sum(expectation.lower.values()), sum(expectation.upper.values())
    expected = f"{lower}" if lower == upper else f"{lower}..{upper}"
    say(
        f"impressions expected: {expected}; in the database: {sum(actual.values())} over {len(actual)} posts"
    )
    for name in (
        "impressions_recorded_total",
        "impressions_deduplicated_total",
        "impressions_dropped_total",
        "impressions_flushes_total",
    ):
        value = metric_total(metrics_text, name)
        if value is not None:
            say(f"metric {name}: {value:g}")
    say(f"final flush: {flushed}")
    for name, ok, detail in checks:
        say(f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}")
    say("PASS" if all(ok for _, ok, _ in checks) else "FAIL")
