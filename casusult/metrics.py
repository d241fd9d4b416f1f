"""Prometheus metrics: their definitions, the receivers that feed them, and the /metrics view.

Processes: gunicorn runs several worker processes, each counting on its own. With
PROMETHEUS_MULTIPROC_DIR set (casusult/gunicorn_conf.py sets it for the web server) every process
writes its samples to files in that directory and /metrics sums them over the processes of this
host, dead ones included. Without it (runserver, runworker, tests) /metrics shows this process.
Prometheus scrapes each task or pod and sums over them; nothing here needs Redis to count, so
the "dropped while Redis was down" counter keeps working during the outage it measures.

Pending counts are different: they live in Redis, shared by every process, so they are read from
Redis at scrape time rather than counted. So are the task queues' numbers (queue_tasks), from each
backend's stats().
"""

import logging
import os

# Multi-process mode writes a file per process there from the first metric on: make sure it exists.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

from django.http import HttpResponse
from django.tasks.signals import task_finished, task_started
from prometheus_client import (  # after the directory exists
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

import impressions
from impressions import signals as impressions_signals
from queues import signals as queues_signals
from queues.stats import all_backend_stats

logger = logging.getLogger(__name__)

# Record path (per served timeline page).
impressions_recorded = Counter(
    "impressions_recorded", "Impressions counted into the Redis buffer (new for their viewer)."
)
impressions_deduplicated = Counter(
    "impressions_deduplicated",
    "Served impressions not counted: same viewer and post inside the de-duplication window.",
)
impressions_dropped = Counter(
    "impressions_dropped", "Served impressions lost because Redis was down, too slow or full."
)
impressions_ignored = Counter(
    "impressions_ignored",
    "Served impressions not counted: the request was no view (method: not a GET; bot: a"
    " crawler's User-Agent; prefetch: a browser prefetch; subresource: loaded as an image, script… or an"
    " opaque no-cors answer; cross-site: another site's fetch(), its origin not trusted; frame:"
    " loaded into a frame its response forbids) or"
    " beyond a budget (rate: a new anonymous viewer beyond its"
    " IP address's hourly budget, or a viewer beyond its hourly impressions).",
    ["reason"],
)

# Flush (worker task or flush_impressions command).
flushes = Counter("impressions_flushes", "Flushes run, by outcome.", ["outcome"])
flush_duration = Histogram(
    "impressions_flush_duration_seconds",
    "Time one flush took, by outcome.",
    ["outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
impressions_flushed = Counter(
    "impressions_flushed", "Impressions applied to the database by flushes."
)
impressions_of_deleted = Counter(
    "impressions_of_deleted_objects",
    "Impressions flushes dropped because their object was deleted after its views (no action"
    " needed).",
)
flush_windows_lapsed = Counter(
    "impressions_flush_windows_lapsed",
    "Scheduled flush windows whose flush did not start before its schedule guard lapsed (the"
    " task lost, or no worker taking it), by who saw it: schedule (the next window's"
    " scheduling, once a window) or flush (a flush that started that late).",
    ["seen_by"],
)
buffer_went_back = Counter(
    "impressions_buffer_went_back",
    "Times a flush found the buffer's Redis emptied (kind emptied: its pending counts lost) or"
    " gone back to before an applied flush (kind restored: counts applied since may count"
    " again).",
    ["kind"],
)

# Task workers (any django.tasks backend, fed by the task_started/task_finished signals).
tasks_processed = Counter(
    "tasks_processed", "django.tasks tasks run, by backend alias, task and outcome.",
    ["backend", "task", "outcome"],
)  # fmt: skip
task_duration = Histogram(
    "task_duration_seconds", "Time a task ran, by backend alias and task.", ["backend", "task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)  # fmt: skip
tasks_running = Gauge(
    "tasks_running", "Tasks running right now, by backend alias.", ["backend"],
    multiprocess_mode="livesum",
)  # fmt: skip
sqs_receive_errors = Counter(
    "sqs_receive_errors", "SQS ReceiveMessage calls that failed, by error.", ["error"]
)
tasks_refused = Counter(
    "tasks_refused",
    "Jobs or messages a worker refused without running them, by backend alias and reason"
    " (not-allowed: task path not in the task registry, never imported; malformed: unreadable"
    " or out of bounds; refused: not our job format).",
    ["backend", "reason"],
)


def observe_record(served, counted, lost):
    """One timeline request's record call: `served` posts, `counted` new, `lost` to Redis failure."""
    if lost:
        impressions_dropped.inc(lost)
        return
    impressions_recorded.inc(counted)
    impressions_deduplicated.inc(max(0, served - counted))


def observe_flush(outcome, duration, applied=0, dropped=0):
    flushes.labels(outcome).inc()
    flush_duration.labels(outcome).observe(duration)
    if applied:
        impressions_flushed.inc(applied)
    if dropped:
        impressions_of_deleted.inc(dropped)


def observe_sqs_receive_error(error):
    sqs_receive_errors.labels(type(error).__name__).inc()


# Receivers of django.tasks', impressions' and queues' signals: those apps know nothing of
# Prometheus.


def on_task_started(sender, task_result, **kwargs):
    tasks_running.labels(task_result.backend).inc()


def on_task_finished(sender, task_result, **kwargs):
    backend, task = task_result.backend, task_result.task.module_path
    tasks_running.labels(backend).dec()
    tasks_processed.labels(backend, task, str(task_result.status).lower()).inc()
    if task_result.started_at and task_result.finished_at:
        seconds = (task_result.finished_at - task_result.started_at).total_seconds()
        task_duration.labels(backend, task).observe(seconds)


def on_sqs_receive_failed(sender, error, **kwargs):
    observe_sqs_receive_error(error)


def on_task_refused(sender, backend, reason, **kwargs):
    tasks_refused.labels(backend, reason).inc()


def on_impressions_recorded(sender, served, counted, lost, **kwargs):
    observe_record(served, counted, lost)


def on_impressions_ignored(sender, reason, served, **kwargs):
    impressions_ignored.labels(reason).inc(served)


def on_flush_finished(sender, report, duration, error, **kwargs):
    # A failed flush's report counts the batches it committed: the next flush skips them.
    outcome = "failed" if error is not None else str(report.outcome)
    observe_flush(outcome, duration, report.impressions_applied, report.impressions_dropped)


def on_flush_window_lapsed(sender, seen_by, **kwargs):
    flush_windows_lapsed.labels(seen_by).inc()


def on_buffer_went_back(sender, kind, **kwargs):
    buffer_went_back.labels(kind).inc()


def connect_signals():
    task_started.connect(on_task_started, dispatch_uid="casusult-metrics-task-started")
    task_finished.connect(on_task_finished, dispatch_uid="casusult-metrics-task-finished")
    queues_signals.sqs_receive_failed.connect(
        on_sqs_receive_failed, dispatch_uid="casusult-metrics-sqs-receive"
    )
    queues_signals.task_refused.connect(on_task_refused, dispatch_uid="casusult-metrics-refused")
    impressions_signals.impressions_recorded.connect(
        on_impressions_recorded, dispatch_uid="casusult-metrics-record"
    )
    impressions_signals.flush_finished.connect(
        on_flush_finished, dispatch_uid="casusult-metrics-flush"
    )
    impressions_signals.impressions_ignored.connect(
        on_impressions_ignored, dispatch_uid="casusult-metrics-ignored"
    )
    impressions_signals.flush_window_lapsed.connect(
        on_flush_window_lapsed, dispatch_uid="casusult-metrics-lapsed"
    )
    impressions_signals.buffer_went_back.connect(
        on_buffer_went_back, dispatch_uid="casusult-metrics-went-back"
    )


class PendingCollector:
    """Pending impressions and posts in the Redis buffer, read at scrape time (one pipeline)."""

    def collect(self):
        # This process's last measurement (no Redis call): one host, one clock.
        offset = impressions.clock_offset()
        if offset is not None:
            yield GaugeMetricFamily(
                "impressions_clock_offset_seconds",
                "This host's clock minus the buffer Redis's, as this process last measured it (a"
                " record call, a flush); beyond 5 s either way, fix the host's time sync.",
                value=offset,
            )
        up = GaugeMetricFamily("impressions_buffer_up", "1 when the Redis buffer answered.")
        try:
            entries, pending, in_snapshots, set_aside = pending_totals()
        except Exception as error:
            logger.info("metrics: pending counts unavailable (%s)", type(error).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "impressions_pending", "Impressions in Redis not yet flushed.", value=pending
        )
        yield GaugeMetricFamily(
            "impressions_pending_entries",
            "Pending (shard, post, day) counters: a post seen by viewers of several shards, or"
            " on several days, counts once per shard and day; the next flush's work.",
            value=entries,
        )
        yield GaugeMetricFamily(
            "impressions_in_snapshots",
            "Impressions taken from pending by flushes that have not finished (running, failed or"
            " killed), still in Redis: the next flush applies them. Growing: flushes fail.",
            value=in_snapshots,
        )
        yield GaugeMetricFamily(
            "impressions_set_aside_entries",
            "Buffer entries that no database takes (not written by the record script), set aside"
            " by flushes in Redis and not applied; above 0, read the flush log.",
            value=set_aside,
        )


# Seconds a scrape waits for the buffer's Redis: longer than a request, shorter than a scrape.
PENDING_REDIS_TIMEOUT = 0.5


def pending_totals():
    """(pending counters, impressions, impressions in snapshots, entries set aside) in the
    buffer, over every shard."""
    status = impressions.buffer_status(timeout=PENDING_REDIS_TIMEOUT)
    return (
        status.pending_entries,
        status.pending_impressions,
        status.in_snapshots,
        status.set_aside,
    )


class QueueCollector:
    """Tasks in each task backend's queues by state, read at scrape time (queues.stats).

    A backend whose server does not answer costs the scrape its client timeouts (RQ: SOCKET_TIMEOUT,
    SQS: a few seconds) and shows queue_backend_up 0.
    """

    def collect(self):
        up = GaugeMetricFamily(
            "queue_backend_up",
            "1 when the task backend's queue server answered.",
            labels=["backend"],
        )
        tasks = GaugeMetricFamily(
            "queue_tasks",
            "Tasks in each queue by state: RQ jobs queued, scheduled, started, failed; SQS"
            " messages visible, in_flight, delayed and in the dead-letter queue (dead_letter).",
            labels=["backend", "queue", "state"],
        )
        for found in all_backend_stats():
            if found.in_process:
                continue
            up.add_metric([found.alias], 0 if found.error else 1)
            for queue in found.queues:
                for state, number in queue.counts.items():
                    if number is not None:
                        tasks.add_metric([found.alias, queue.queue, state], number)
        yield up
        yield tasks


_pending_registry = CollectorRegistry()
_pending_registry.register(PendingCollector())
_queue_registry = CollectorRegistry()
_queue_registry.register(QueueCollector())


def is_multiprocess():
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def render_metrics():
    """The Prometheus text exposition of every metric (all processes of this host if set up)."""
    if is_multiprocess():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return (
        generate_latest(registry)
        + generate_latest(_pending_registry)
        + generate_latest(_queue_registry)
    )


def metrics_view(request):
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
