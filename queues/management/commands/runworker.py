"""manage.py runworker: run the worker of the configured task backend."""

import logging

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from django.tasks.exceptions import InvalidTaskBackend
from django.utils.module_loading import import_string

from queues.arguments import port_number, positive_int
from queues.health import bind_health_server
from queues.runner import remedy_text, run_workers, unreachable_errors
from redis_endpoints import redact_text, redacting_logger


class Command(BaseCommand):
    help = "Run the worker of a task backend (RQ or SQS) until stopped, or with --burst until idle."
    # The system checks run first (a bad setting of any app stops the worker); the RQ backend's
    # live cluster-mode probe then runs before the worker writes anything.

    def add_arguments(self, parser):
        parser.add_argument("--backend", default=DEFAULT_TASK_BACKEND_ALIAS, help="TASKS alias")
        parser.add_argument(
            "--queue", action="append", dest="queues", metavar="NAME", help="RQ queue (repeat)"
        )
        parser.add_argument("--burst", action="store_true", help="run what is due, then exit")
        parser.add_argument("--max-jobs", type=positive_int, help="exit after N jobs")
        parser.add_argument("--concurrency", type=positive_int, default=1, help="worker processes")
        parser.add_argument(
            "--health-port", type=port_number, help="serve /healthz /readyz /metrics on this port"
        )
        parser.add_argument(
            "--health-host",
            default="127.0.0.1",
            help="address for --health-port (0.0.0.0 in a pod)",
        )

    def handle(self, *, backend, queues, burst, max_jobs, concurrency, **options):
        show_task_lines()
        try:
            task_backend = task_backends[backend]
        except InvalidTaskBackend as error:
            raise CommandError(str(error)) from None
        worker_path = getattr(task_backend, "worker_class", None)
        if not worker_path:
            raise CommandError(
                f"TASKS[{backend!r}] uses {type(task_backend).__name__}, which has no worker "
                "(point TASKS at queues.rq.backend.RQBackend or queues.sqs.backend.SQSBackend)."
            )
        try:
            task_backend.ensure_valid()
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        worker_class = import_string(worker_path)
        probes = None
        if options["health_port"]:
            try:
                probes = bind_health_server(
                    options["health_port"],
                    options["health_host"],
                    job_timeout=task_backend.options.get("JOB_TIMEOUT"),
                )
            except OSError as error:
                raise CommandError(
                    f"--health-port {options['health_port']} on {options['health_host']}: "
                    f"cannot listen there ({error.strerror or error})."
                ) from None
        try:
            code = run_workers(
                worker_class,
                task_backend,
                queues=queues,
                burst=burst,
                max_jobs=max_jobs,
                concurrency=concurrency,
                probes=probes,
            )
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        except unreachable_errors(worker_class) as error:
            raise CommandError(
                f"TASKS[{backend!r}] ({type(task_backend).__name__}): the queue server is"
                f" unreachable or refused: {redact_text(str(error))}"
                + remedy_text(worker_class, error)
            ) from None
        if code:
            raise SystemExit(code)


def show_task_lines():
    """The worker's one line per task (INFO on queues.worker) on stderr, where the project's
    LOGGING gives that logger no handler: Python would show its warnings alone (a new project's
    worker printed failures and nothing for the tasks that succeeded). A project that routes it
    anywhere keeps its own choice."""
    worker_log = redacting_logger("queues.worker")
    if worker_log.hasHandlers():
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    worker_log.addHandler(handler)
    if worker_log.level == logging.NOTSET:
        worker_log.setLevel(logging.INFO)
