"""manage.py loadtest: browse the real stack for a while, flush, compare the database exactly."""

import asyncio
import logging
import math
import os
import time

from django.contrib.sessions.models import Session
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from casusult import loadtest
from casusult.arguments import positive_int
from casusult.demo import demo_username
from casusult.devservices import ensure_database
from casusult.loadstack import Stack, metric_total
from casusult.models import Post
from casusult.views import PAGE_SIZE


class Command(BaseCommand):
    help = (
        "Load test: gunicorn (settings.prod) + runworker on SQS + a private Redis, many browsing"
        " clients for a fixed time, then a flush and an exact comparison with the database."
        " Exits 1 on any 5xx or a count outside the expected range. Needs DATABASE_URL to name"
        " a PostgreSQL database the test may create and write (it seeds demo data there)."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--clients", type=positive_int, default=50)
        parser.add_argument(
            "--logged-in", type=int, default=None, help="of which logged in (default 40%%)"
        )
        parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
        parser.add_argument("--users", type=positive_int, default=20, help="demo users to seed")
        parser.add_argument("--posts", type=positive_int, default=500, help="demo posts to seed")
        parser.add_argument("--gunicorn-workers", type=positive_int, default=2)
        parser.add_argument("--gunicorn-threads", type=positive_int, default=4)
        parser.add_argument("--think-ms", type=float, default=0.0, help="max pause per request")
        parser.add_argument(
            "--redis-outage",
            action="store_true",
            help="stop the buffer's Redis for the middle third of the run, then start it again",
        )
        parser.add_argument("--seed", type=int, default=1, help="random seed of the clients")
        parser.add_argument("--keep", action="store_true", help="keep the server logs")

    def handle(self, *args, **options):
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
        database_url = os.environ.get("DATABASE_URL", "")
        if not database_url.startswith(("postgres://", "postgresql://")):
            raise CommandError(
                "Set DATABASE_URL to a PostgreSQL database for the load test (it is created if"
                " missing, then migrated and seeded), e.g. postgres://postgres@127.0.0.1:5432/loadtest."
            )
        ensure_database(database_url)
        stack = Stack(
            database_url,
            workers=options["gunicorn_workers"],
            threads=options["gunicorn_threads"],
            dedup_window=max(3600, int(options["duration"] * 4)),
        )
        passed = False
        try:
            stack.start(options["users"], options["posts"], say=self.stdout.write)
            before = dict(Post.objects.values_list("id", "impressions"))
            connections.close_all()
            passed = self.run_load(stack, before, options)
        except Exception as error:
            self.stderr.write(f"load test aborted: {type(error).__name__}: {error}")
            for name in ("web", "worker"):
                self.stderr.write(f"--- {name} log (last lines) ---\n{stack.log_tail(name)}")
        finally:
            stack.stop(keep_files=options["keep"] or not passed)
            if options["keep"] or not passed:
                self.stdout.write(f"server logs kept in {stack.workdir}")
        if not passed:
            raise SystemExit(1)

    def run_load(self, stack, before, options):
        clients = options["clients"]
        logged_in = options["logged_in"]
        logged_in = round(clients * 0.4) if logged_in is None else min(logged_in, clients)
        duration = options["duration"]
        outage = loadtest.Outage()
        sessions_before = Session.objects.count()

        async def redis_outage(deadline):
            started = time.monotonic()
            await asyncio.sleep(duration * 0.35)
            outage.stop_requested = time.monotonic()
            await asyncio.to_thread(stack.stop_redis)
            outage.stopped = time.monotonic()
            await asyncio.sleep(max(0.0, started + duration * 0.65 - time.monotonic()))
            outage.start_requested = time.monotonic()
            await asyncio.to_thread(stack.start_redis)
            outage.started = time.monotonic()

        self.stdout.write(
            f"load: {clients} clients ({logged_in} logged in) for {duration:g} s"
            + (" with a Redis outage in the middle third" if options["redis_outage"] else "")
        )
        results = asyncio.run(
            loadtest.run_clients(
                stack.base_url,
                clients=clients,
                logged_in=logged_in,
                duration=duration,
                usernames=[demo_username(n) for n in range(1, options["users"] + 1)],
                num_pages=max(1, math.ceil(len(before) / PAGE_SIZE)),
                think=options["think_ms"] / 1000,
                seed=options["seed"],
                during=redis_outage if options["redis_outage"] else None,
            )
        )
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
        expectation = loadtest.expected_counts(
            results.served, outage if options["redis_outage"] else None
        )
        wrong = loadtest.compare(expectation, actual)
        checks = self.checks(results, expectation, actual, wrong, outage, options, metrics_text)
        checks.append(
            ("worker stopped cleanly on SIGTERM", worker_code == 0, f"exit {worker_code}")
        )
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
        self.stdout.write(f"worker: {flush_tasks:g} tasks run during the load (its /metrics)")
        self.report(results, expectation, actual, wrong, flushed, metrics_text, checks)
        return all(ok for _, ok, _ in checks)

    def checks(self, results, expectation, actual, wrong, outage, options, metrics_text):
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
        if recorded is not None and not options["redis_outage"]:
            checks.append(
                (
                    "server's impressions_recorded_total equals the database delta",
                    recorded == sum(actual.values()),
                    f"metric {recorded:g}, database {sum(actual.values())}",
                )
            )
        dropped = metric_total(metrics_text, "impressions_dropped_total")
        if dropped is not None and options["redis_outage"]:
            # Served while down: certainly dropped; at an edge: maybe (the reply may be what was
            # lost, after Redis counted it, so then the database has more than the metric).
            low, high = (
                expectation.impressions["down"],
                expectation.impressions["down"] + expectation.impressions["edge"],
            )
            checks += [
                ("server's impressions_dropped_total matches the outage", low <= dropped <= high, f"metric {dropped:g}, served while down {low}, + at the edges {high}"),
                ("server's impressions_recorded_total <= database delta", recorded is not None and recorded <= sum(actual.values()), f"metric {recorded}, database {sum(actual.values())}"),
            ]  # fmt: skip
        if options["redis_outage"]:
            down = [
                s
                for (sent, received, s) in results.readiness
                if outage.classify(sent, received) == "down"
            ]
            after = [s for (sent, _, s) in results.readiness if sent > outage.started]
            checks += [
                ("/readyz answered 503 throughout the outage", bool(down) and set(down) == {503}, f"{len(down)} probes while down: {sorted(set(down))}"),
                ("/readyz answered 200 again after Redis returned", 200 in after, f"statuses after: {sorted(set(after))}"),
                ("counting resumed without a restart", expectation.fresh_after_outage > 0, f"{expectation.fresh_after_outage} new (viewer, post) pairs after the outage, all counted"),
                ("timeline requests were served while Redis was down", expectation.impressions["down"] > 0, f"{expectation.impressions['down']} impressions served while down"),
            ]  # fmt: skip
        return checks

    def report(self, results, expectation, actual, wrong, flushed, metrics_text, checks):
        elapsed = results.finished - results.started
        latency = loadtest.latency_summary(results.latencies)
        write = self.stdout.write
        write(
            f"requests: {results.requests} in {elapsed:.1f} s = {results.requests / elapsed:.1f} req/s"
        )
        write(f"latency: p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms")
        write(
            f"statuses: {dict(results.statuses)}; 5xx: {results.server_errors}; transport errors: {dict(results.errors)}; logins: {results.logins}"
        )
        write(
            f"served impressions by class: {dict(expectation.impressions)}; distinct (viewer, post) pairs: {dict(expectation.pairs)}"
        )
        lower, upper = sum(expectation.lower.values()), sum(expectation.upper.values())
        expected = f"{lower}" if lower == upper else f"{lower}..{upper}"
        write(
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
                write(f"metric {name}: {value:g}")
        write(f"final flush: {flushed}")
        for name, ok, detail in checks:
            write(f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}")
        write("PASS" if all(ok for _, ok, _ in checks) else "FAIL")
