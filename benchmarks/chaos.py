"""python -m benchmarks.chaos: a randomized soak of the flush's exactly-once promise.

Real `manage.py runworker` processes (RQ, or SQS on a moto server) flush a window in parts while
this process records impressions without pause (many viewers and posts, `now=` spread over
several days, some of them before the history kept and some already rolled up), and a chaos loop,
driven by one seed, at random moments: SIGKILLs a worker (its whole process group, or only the
process running the task) and starts it again, pauses one (SIGSTOP, SIGCONT), runs
`flush_impressions` and `rollup_impressions` by hand at the same time (and sometimes SIGKILLs
them), delivers flush messages twice (RQ: the same job id pushed again, and the same part of a
window enqueued again; SQS: a copy of a received message sent back), and ends the workers'
PostgreSQL sessions (`pg_terminate_backend`). At the end the chaos stops, the buffer is flushed
until nothing is pending, the roll-up runs, and the tables are checked against the tally of what
`record_impressions` reported counted: each post's count, its history, the site-wide rows, the
week and month rows, the leaders, the ledger, the dead letters.

Everything runs on services of its own: a private redis-server (buffer and RQ queue), a moto
server for SQS, and the PostgreSQL database of --database-url, dropped and created again. Not in
the test suite (tests/tooling/test_chaos.py runs it for a few seconds); docs/benchmarks.md.
"""

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
DAY = 86400

SETTINGS = """
from settings.test import *  # noqa: F403
IMPRESSIONS_FLUSH_BATCH_SIZE = {batch_size}
IMPRESSIONS_FLUSH_LOCK_TIMEOUT = {lock_timeout}
IMPRESSIONS_FLUSH_REDIS_TIMEOUT = 10.0
IMPRESSIONS_ROLLUP_PACE = 0
"""


def parser():
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.chaos", description=__doc__.split("\n")[0]
    )
    p.add_argument("--backend", choices=["rq", "sqs"], default="rq")
    p.add_argument("--duration", type=float, default=600, help="seconds of chaos (default 600)")
    p.add_argument("--seed", type=int, default=None, help="the chaos's seed (default: random)")
    p.add_argument("--workers", type=int, default=3, help="runworker processes (default 3)")
    p.add_argument("--parts", type=int, default=3, help="IMPRESSIONS_FLUSH_PARTS (default 3)")
    p.add_argument("--posts", type=int, default=3000, help="posts (default 3000)")
    p.add_argument("--viewers", type=int, default=5000, help="viewers (default 5000)")
    p.add_argument("--days", type=int, default=6, help="days the views spread over (default 6)")
    p.add_argument("--history-days", type=int, default=4, help="IMPRESSIONS_HISTORY_DAYS (4)")
    p.add_argument("--batch-size", type=int, default=25, help="IMPRESSIONS_FLUSH_BATCH_SIZE (25)")
    p.add_argument("--flush-delay", type=int, default=2, help="IMPRESSIONS_FLUSH_DELAY (2)")
    p.add_argument("--lock-timeout", type=int, default=5, help="IMPRESSIONS_FLUSH_LOCK_TIMEOUT")
    p.add_argument("--rate", type=float, default=150, help="record calls a second, each driver")
    p.add_argument("--pause", type=float, default=1.5, help="mean seconds between chaos events")
    p.add_argument(
        "--database-url",
        default=os.environ.get("CHAOS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/chaos"),
        help="a PostgreSQL database of its own: dropped and created again (CHAOS_DATABASE_URL)",
    )
    p.add_argument("--out", default=None, help="directory for the logs (default: a new temp dir)")
    return p


class Soak:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed if args.seed is not None else random.randrange(2**32)
        self.random = random.Random(self.seed)
        self.out = Path(args.out or tempfile.mkdtemp(prefix=f"chaos-{args.backend}-{self.seed}-"))
        self.out.mkdir(parents=True, exist_ok=True)
        self.events = open(self.out / "events.jsonl", "w")  # noqa: SIM115
        self.lock = threading.Lock()
        self.started = time.time()
        self.stop = threading.Event()
        self.tally = Counter()  # (post id, day) -> impressions record_impressions counted
        self.uncertain = Counter()  # post id -> impressions of calls that reported losses
        self.calls = Counter()
        self.workers = {}  # index -> Popen
        self.side = []  # hand-run commands (Popen, what)
        self.windows = []  # kwargs of the parts enqueued by this process
        self.stats = Counter()

    # -- the timeline -----------------------------------------------------------------------
    def event(self, what, **details):
        line = {"t": round(time.time() - self.started, 3), "event": what, **details}
        with self.lock:
            self.events.write(json.dumps(line, default=str) + "\n")
            self.events.flush()
            self.stats[what] += 1

    # -- services and settings --------------------------------------------------------------
    def start_services(self):
        import devservices

        self.redis_dir = self.out / "redis"
        port = devservices.free_port()
        self.redis = devservices.start_redis_server(port, self.redis_dir)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        self.rq_url = f"redis://127.0.0.1:{port}/1"
        self.env = {
            "DJANGO_SETTINGS_MODULE": "chaos_settings",
            "PYTHONPATH": f"{self.out}:{PROJECT_DIR}",
            "DATABASE_URL": self.args.database_url,
            "REDIS_URL": self.redis_url,
            "RQ_REDIS_URL": self.rq_url,
            "QUEUE_BACKEND": self.args.backend,
            "IMPRESSIONS_FLUSH_PARTS": str(self.args.parts),
            "IMPRESSIONS_FLUSH_DELAY": str(self.args.flush_delay),
            "IMPRESSIONS_HISTORY_DAYS": str(self.args.history_days),
            "IMPRESSIONS_DEDUP_WINDOW": "0",  # every view counts: the tally is per post
            "IMPRESSIONS_VIEWER_IMPRESSIONS_PER_HOUR": "0",
            "IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR": "0",
            "IMPRESSIONS_REDIS_TIMEOUT": "2.0",  # a loaded machine: no lost records wanted
            "TASKS_RETRY_DELAY": "1",
            "LOG_LEVEL": "info",
        }
        self.moto = None
        if self.args.backend == "sqs":
            self.moto = devservices.MotoServerProcess().start()
            aws = {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL_SQS": self.moto.url,
            }
            self.env.update(aws)
            os.environ.update(aws)
            import boto3

            self.sqs = boto3.client("sqs")
            dlq = self.sqs.create_queue(QueueName="chaos-dlq")["QueueUrl"]
            arn = self.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
            redrive = {
                "deadLetterTargetArn": arn["Attributes"]["QueueArn"],
                "maxReceiveCount": "10",
            }
            self.queue_url = self.sqs.create_queue(
                QueueName="chaos",
                Attributes={"VisibilityTimeout": "5", "RedrivePolicy": json.dumps(redrive)},
            )["QueueUrl"]
            self.dlq_url = dlq
            self.env.update(
                {
                    "SQS_QUEUE_URL": self.queue_url,
                    "SQS_WAIT_TIME_SECONDS": "1",
                    "SQS_VISIBILITY_TIMEOUT": "5",
                    "SQS_MAX_MESSAGES": "1",
                }
            )
        (self.out / "chaos_settings.py").write_text(
            SETTINGS.format(batch_size=self.args.batch_size, lock_timeout=self.args.lock_timeout)
        )
        os.environ.update(self.env)
        sys.path[:0] = [str(self.out), str(PROJECT_DIR)]
        devservices.drop_database(self.args.database_url)
        devservices.ensure_database(self.args.database_url)
        result = self.manage("migrate", "--no-input", capture=True, timeout=600)
        if result.returncode:
            raise SystemExit(f"migrate failed: {result.stderr[-2000:]}")
        import django

        django.setup()

    def stop_services(self):
        from devservices.processes import stop_process

        with contextlib.suppress(Exception):
            stop_process(self.redis)
        if self.moto:
            with contextlib.suppress(Exception):
                self.moto.stop()

    def manage(self, *args, capture=False, timeout=None):
        command = [sys.executable, "manage.py", *args]
        if capture:
            return subprocess.run(
                command, cwd=PROJECT_DIR, env={**os.environ, **self.env}, capture_output=True,
                text=True, timeout=timeout,
            )  # fmt: skip
        log = open(self.out / f"{args[0]}.log", "a")  # noqa: SIM115
        return subprocess.Popen(
            command, cwd=PROJECT_DIR, env={**os.environ, **self.env}, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    # -- the workers -------------------------------------------------------------------------
    def start_worker(self, index):
        log = open(self.out / f"worker-{index}.log", "a")  # noqa: SIM115
        self.workers[index] = subprocess.Popen(
            [sys.executable, "manage.py", "runworker"], cwd=PROJECT_DIR,
            env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.event("worker-start", worker=index, pid=self.workers[index].pid)

    def descendants(self, pid):
        found = []
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    for child in map(int, children.read().split()):
                        found += [child, *self.descendants(child)]
        return found

    # -- the driver: record without pause ----------------------------------------------------
    def setup_posts(self):
        from django.contrib.auth import get_user_model
        from django.db import connections

        from casusult.models import Post

        author = get_user_model().objects.create_user("chaos-author")
        now = datetime.now(UTC)
        posts = Post.objects.bulk_create(
            Post(author=author, body=f"chaos {n}", created_at=now) for n in range(self.args.posts)
        )
        self.post_ids = [post.id for post in posts]
        connections.close_all()  # the chaos ends sessions of this database: a fresh one later

    def capture_windows(self):
        """Remember the kwargs of each window's parts enqueued here (to deliver them twice)."""
        from impressions.tasks import flush_impressions_task

        original = type(flush_impressions_task).enqueue
        soak = self

        def enqueue(task, *args, **kwargs):
            result = original(task, *args, **kwargs)
            if "window" in kwargs:
                with soak.lock:
                    soak.windows.append(dict(kwargs))
                    del soak.windows[:-50]
            return result

        type(flush_impressions_task).enqueue = enqueue

    def view_time(self, rng):
        """Unix seconds of a view: the simulated clock, which walks from --days ago to now over
        the run, or (a fifth of the views) any earlier moment of the span: late counts for days
        perhaps rolled up, perhaps older than the history kept."""
        span = self.args.days * DAY
        real_now = time.time()
        elapsed = min(1.0, (real_now - self.started) / max(1.0, self.args.duration * 0.9))
        clock = real_now - span + span * elapsed
        if rng.random() < 0.2:
            return rng.uniform(real_now - span, clock)
        return min(clock, real_now - 1)

    def drive(self, index):
        from django.db import connections

        from impressions import periods
        from impressions.recorder import record_impressions

        rng = random.Random(self.seed * 7 + index)
        hot = self.post_ids[: max(1, len(self.post_ids) // 20)]
        interval = 1 / self.args.rate
        next_call = time.monotonic()
        while not self.stop.is_set():
            next_call += interval
            if (wait := next_call - time.monotonic()) > 0:
                time.sleep(wait)
            size = rng.choice([1, 1, 3, 10, 20, 40])
            pool = hot if rng.random() < 0.5 else self.post_ids
            ids = rng.sample(pool, min(size, len(pool)))
            viewer = f"u:{rng.randrange(self.args.viewers)}"
            now = self.view_time(rng)
            result = record_impressions(viewer, ids, now=now)
            day = periods.day_of(datetime.fromtimestamp(now, UTC))
            with self.lock:
                self.calls["calls"] += 1
                if result.counted == len(ids) and not result.lost:
                    for post in ids:
                        self.tally[post, day] += 1
                    self.calls["counted"] += len(ids)
                else:  # lost (not confirmed: it may have counted all the same)
                    for post in ids:
                        self.uncertain[post] += 1
                    self.calls["uncertain"] += len(ids)
                    self.event("record-uncertain", result=result._asdict(), posts=len(ids))
        connections.close_all()

    # -- the chaos ---------------------------------------------------------------------------
    def chaos(self):
        actions = [
            (self.kill_worker, 5),
            (self.kill_task_process, 4),
            (self.pause_worker, 2),
            (self.hand_flush, 3),
            (self.hand_rollup, 1),
            (self.duplicate, 4),
            (self.terminate_backends, 3),
        ]
        funcs, weights = zip(*actions, strict=True)
        while not self.stop.wait(self.random.expovariate(1 / self.args.pause)):
            action = self.random.choices(funcs, weights)[0]
            try:
                action()
            except Exception as error:  # the chaos goes on; the timeline says what failed
                self.event("chaos-error", action=action.__name__, error=repr(error))
            self.reap()

    def reap(self):
        for index, process in list(self.workers.items()):
            if process.poll() is not None:
                self.event("worker-exit", worker=index, code=process.returncode)
                self.start_worker(index)
        for process, what in list(self.side):
            if process.poll() is not None:
                self.side.remove((process, what))
                self.event(f"{what}-exit", pid=process.pid, code=process.returncode)

    def kill_worker(self):
        index = self.random.choice(list(self.workers))
        process = self.workers[index]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        self.event("kill-worker", worker=index, pid=process.pid)
        time.sleep(self.random.uniform(0, 2))
        self.start_worker(index)

    def kill_task_process(self):
        """SIGKILL one process below a worker (RQ's work horse running a task, if any)."""
        index = self.random.choice(list(self.workers))
        children = self.descendants(self.workers[index].pid)
        if not children:
            self.event("kill-task-none", worker=index)
            return
        victim = self.random.choice(children)
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
        self.event("kill-task", worker=index, pid=victim)

    def pause_worker(self):
        index = self.random.choice(list(self.workers))
        process = self.workers[index]
        seconds = self.random.uniform(0.2, 2 * self.args.lock_timeout)
        group = process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGSTOP)
        self.event("pause-worker", worker=index, seconds=round(seconds, 2))

        def resume():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGCONT)

        timer = threading.Timer(seconds, resume)
        timer.daemon = True
        timer.start()
        self.timers.append(timer)

    def hand_flush(self):
        args = ["flush_impressions"]
        if self.random.random() < 0.5:
            args += ["--batch-size", str(self.random.choice([1, 5, 25, 200]))]
        process = self.manage(*args)
        self.side.append((process, "hand-flush"))
        kill_after = self.random.uniform(0.3, 6) if self.random.random() < 0.4 else None
        self.event("hand-flush", pid=process.pid, args=args[1:], kill_after=kill_after)
        if kill_after:
            self.kill_later(process, kill_after, "hand-flush")

    def hand_rollup(self):
        process = self.manage("rollup_impressions", "--batch-size", "3")
        self.side.append((process, "hand-rollup"))
        kill_after = self.random.uniform(0.2, 3) if self.random.random() < 0.4 else None
        self.event("hand-rollup", pid=process.pid, kill_after=kill_after)
        if kill_after:
            self.kill_later(process, kill_after, "hand-rollup")

    def kill_later(self, process, seconds, what):
        def kill():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                self.event(f"kill-{what}", pid=process.pid)

        timer = threading.Timer(seconds, kill)
        timer.daemon = True
        timer.start()
        self.timers.append(timer)

    def duplicate(self):
        from impressions.tasks import flush_impressions_task

        if self.random.random() < 0.5:  # the same part of a recent window, enqueued again
            with self.lock:
                kwargs = self.random.choice(self.windows) if self.windows else None
            if kwargs:
                flush_impressions_task.enqueue(**kwargs)
                self.event("duplicate-part", **kwargs)
                return
        if self.args.backend == "rq":
            self.duplicate_rq_job()
        else:
            self.duplicate_sqs_message()

    def duplicate_rq_job(self):
        import redis

        client = redis.Redis.from_url(self.rq_url)
        ids = []
        for key in ("rq:started:default", "rq:finished:default", "rq:scheduled:default"):
            ids += [job.decode() for job in client.zrange(key, -20, -1)]
        ids += [job.decode() for job in client.lrange("rq:queue:default", 0, 20)]
        if not ids:
            self.event("duplicate-job-none")
            return
        job = self.random.choice(ids)
        client.rpush("rq:queue:default", job)
        self.event("duplicate-job", job=job, exists=bool(client.exists(f"rq:job:{job}")))

    def duplicate_sqs_message(self):
        received = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=1, VisibilityTimeout=2, WaitTimeSeconds=0
        ).get("Messages", [])
        if not received:
            self.event("duplicate-message-none")
            return
        message = received[0]
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=message["Body"])
        if self.random.random() < 0.5:  # given back at once, else after its 2 s
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        self.event("duplicate-message", message=message["MessageId"], body=message["Body"][:300])

    def terminate_backends(self):
        import psycopg

        with psycopg.connect(self.args.database_url, autocommit=True) as connection:
            rows = connection.execute(
                "SELECT pid, application_name, state, left(query, 80) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
            victims = [row for row in rows if self.random.random() < 0.5]
            for pid, *_ in victims:
                connection.execute("SELECT pg_terminate_backend(%s)", [pid])
        self.event("pg-terminate", sessions=len(rows), terminated=[list(v) for v in victims])

    # -- the end: drain and check ------------------------------------------------------------
    def drain(self):
        from django.db import connections

        from devservices.processes import stop_process
        from impressions.exceptions import FlushError
        from impressions.flush import flush_pending
        from impressions.recorder import buffer_status

        connections.close_all()  # a session of this process may have been ended by the chaos
        for timer in self.timers:
            timer.cancel()
        for process in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGCONT)
        # Let the workers finish what is queued, then stop them.
        time.sleep(max(5, self.args.flush_delay + 3))
        for index, process in self.workers.items():
            code = stop_process(process, timeout=30)
            self.event("worker-stop", worker=index, code=code)
        for process, what in self.side:
            process.wait(timeout=120)
            self.event(f"{what}-exit", pid=process.pid, code=process.returncode)
        if self.args.backend == "sqs":
            time.sleep(6)  # the visibility timeout of a message a killed worker held
        for attempt in range(30):
            status = buffer_status()
            self.event("drain-status", attempt=attempt, status=status._asdict())
            if not (status.pending_impressions or status.in_snapshots or status.pending_entries):
                break
            try:
                report = flush_pending()
                self.event("drain-flush", report=report.as_dict())
            except FlushError as error:
                self.event("drain-flush-failed", error=repr(error))
                time.sleep(1)
        else:
            raise SystemExit("the buffer did not drain in 30 flushes")
        result = self.manage("rollup_impressions", capture=True, timeout=600)
        self.event("final-rollup", code=result.returncode, out=result.stdout[-500:])
        return status

    def check(self, status):
        from django.db import connection

        from casusult.models import Post
        from impressions import keys, stats
        from impressions.conf import conf
        from impressions.models import Flush, SiteDailyImpressions
        from impressions.redis_client import get_flush_client
        from tests.impressions.history_check import (
            daily_counts,
            leaders_mismatches,
            rollup_mismatches,
        )

        problems = []
        oldest = stats.oldest_kept_day()
        totals = dict(Post.objects.values_list("id", "impressions"))
        expected = Counter()
        expected_days = Counter()
        expected_history = Counter()
        for (post, day), count in self.tally.items():
            expected[post] += count
            if day >= oldest:
                expected_history[post, day] += count
                expected_days[day] += count
        for post in self.post_ids:
            low, high = expected[post], expected[post] + self.uncertain[post]
            if not low <= totals[post] <= high:
                problems.append(("count", post, totals[post], (low, high)))
        history = daily_counts()
        for key in sorted(set(history) | set(expected_history)):
            post = key[0]
            if self.uncertain[post]:
                continue
            if history.get(key, 0) != expected_history.get(key, 0):
                problems.append(("history", key, history.get(key), expected_history.get(key)))
        site = dict(SiteDailyImpressions.objects.values_list("day", "count"))
        if not self.uncertain:
            for day in sorted(set(site) | set(expected_days)):
                if site.get(day, 0) != expected_days.get(day, 0):
                    problems.append(("site", day, site.get(day), expected_days.get(day)))
        problems += [("rollup", row) for row in rollup_mismatches()]
        problems += [("leaders", row) for row in leaders_mismatches()]
        outcomes = Counter(Flush.objects.values_list("outcome", flat=True))
        applied = sum(Flush.objects.values_list("impressions_applied", flat=True))
        if applied != sum(totals.values()):  # each snapshot's counts noted once in the ledger
            problems.append(("ledger-applied", applied, sum(totals.values())))
        client = get_flush_client()
        leftovers = sorted(
            {
                member.decode() if isinstance(member, bytes) else member
                for shard in range(conf.SHARDS)
                for member in client.smembers(keys.snapshots_key(shard))
            }
        )
        running = list(
            Flush.objects.filter(outcome="running").values(
                "id", "started_at", "marks", "shards_applied", "impressions_applied", "error"
            )
        )
        for row in running:
            if row["id"] in leftovers:
                problems.append(("running-with-snapshot", row))
        if leftovers:
            problems.append(("snapshots-left", leftovers))
        if status.set_aside:
            problems.append(("set-aside", status.set_aside))
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in tr%%'"
                " AND datname = current_database()"
            )
            idle = cursor.fetchone()[0]
        dead = self.dead_letters()
        ledger = list(Flush.objects.order_by("started_at").values())
        (self.out / "ledger.json").write_text(json.dumps(ledger, indent=1, default=str))
        return {
            "seed": self.seed,
            "backend": self.args.backend,
            "out": str(self.out),
            "calls": dict(self.calls),
            "events": dict(self.stats),
            "posts_total": sum(totals.values()),
            "tally_total": sum(expected.values()),
            "uncertain": sum(self.uncertain.values()),
            "days": {str(day): n for day, n in sorted(self.days_tally().items())},
            "oldest_kept_day": str(oldest),
            "ledger": dict(outcomes),
            "running_rows": running,
            "dead_letters": dead,
            "idle_in_transaction": idle,
            "problems": problems,
        }

    def days_tally(self):
        days = Counter()
        for (_, day), count in self.tally.items():
            days[day] += count
        return days

    def dead_letters(self):
        if self.args.backend == "sqs":
            found = []
            while True:
                messages = self.sqs.receive_message(
                    QueueUrl=self.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                    AttributeNames=["All"], MessageAttributeNames=["All"],
                ).get("Messages", [])  # fmt: skip
                if not messages:
                    return found
                found += [
                    {"body": m["Body"][:300], "attributes": m.get("MessageAttributes", {})}
                    for m in messages
                ]
        import redis
        from rq.job import Job
        from rq.serializers import JSONSerializer

        client = redis.Redis.from_url(self.rq_url)
        found = []
        for job_id in client.zrange("rq:failed:default", 0, -1):
            try:
                job = Job.fetch(job_id.decode(), connection=client, serializer=JSONSerializer)
                result = job.latest_result()
                reason = (result.exc_string or "")[-400:] if result else None
                found.append({"id": job.id, "kwargs": job.kwargs, "error": reason})
            except Exception as error:
                found.append({"id": job_id.decode(), "unreadable": repr(error)})
        return found

    # -- the run -----------------------------------------------------------------------------
    def run(self):
        self.timers = []
        print(f"chaos soak: backend {self.args.backend}, seed {self.seed}, logs in {self.out}")
        self.start_services()
        try:
            self.setup_posts()
            self.capture_windows()
            for index in range(self.args.workers):
                self.start_worker(index)
            self.started = time.time()
            drivers = [threading.Thread(target=self.drive, args=(n,)) for n in range(2)]
            for driver in drivers:
                driver.start()
            chaos = threading.Thread(target=self.chaos)
            chaos.start()
            deadline = self.started + self.args.duration
            while time.time() < deadline:
                time.sleep(min(10, max(0.1, deadline - time.time())))
                print(
                    f"  {time.time() - self.started:6.0f} s: {dict(self.calls)} {dict(self.stats)}"
                )
            self.stop.set()
            chaos.join()
            for driver in drivers:
                driver.join()
            self.event("stopped", calls=dict(self.calls))
            status = self.drain()
            report = self.check(status)
        finally:
            for process in self.workers.values():
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
            self.stop_services()
        (self.out / "report.json").write_text(json.dumps(report, indent=2, default=str))
        print(
            json.dumps(
                {k: v for k, v in report.items() if k != "running_rows"}, indent=2, default=str
            )[:6000]
        )
        print(f"{len(report['problems'])} problem(s); report in {self.out / 'report.json'}")
        return 1 if report["problems"] else 0


def main(argv=None):
    args = parser().parse_args(argv)
    return Soak(args).run()


if __name__ == "__main__":
    sys.exit(main())
