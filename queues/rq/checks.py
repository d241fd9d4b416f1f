"""RQBackend's system checks (ids: see queues.checks): its RQ_QUEUES entries, then the live server."""

import redis
from django.apps import apps
from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from redis_endpoints import redact, redact_text

from ..exceptions import QueueConfigurationError
from .cluster import REMEDY, cluster_endpoint_reason, probe_cluster_reason
from .connection import (
    JSON_SERIALIZER,
    connection_key,
    connection_problem,
    endpoint_url,
    queue_config,
    refusal_remedy,
    uses_json_serializer,
)

# The job class django-rq must build our jobs with (RQ["JOB_CLASS"]).
JOB_CLASS = "queues.rq.worker.TaskJob"
# RQ_QUEUES keys the backend's tasks do not use: its OPTIONS say JOB_TIMEOUT and RESULT_TTL.
IGNORED_QUEUE_KEYS = {"DEFAULT_TIMEOUT": "JOB_TIMEOUT", "DEFAULT_RESULT_TTL": "RESULT_TTL"}


def rq_backend_errors(backend, deploy):
    """Every problem of one RQBackend's queues (no network); with `deploy`, the live server's."""
    where = f"TASKS[{backend.alias!r}]"
    if deploy:
        return live_errors(backend, where)
    errors = app_order_warnings(where) + job_class_warnings(where)
    if problem := no_queue_message(backend):
        return [
            *errors,
            checks.Error(
                problem,
                hint='Name the RQ_QUEUES queues it uses in a list ("QUEUES": ["default"]), or leave'
                " QUEUES out: its default is the queue 'default'.",
                id="queues.E013",
            ),
        ]
    connections = set()
    for name in sorted(backend.queues):
        config = queue_config(name)
        if config is None:
            errors.append(
                checks.Error(
                    f"{where} uses the RQ queue {name!r}, which RQ_QUEUES does not define.",
                    hint=f'Add RQ_QUEUES[{name!r}] = {{"URL": "redis://…", "SERIALIZER":'
                    f' "{JSON_SERIALIZER}"}} (django-rq\'s settings: one definition of the'
                    " connection, shared with its dashboard).",
                    id="queues.E006",
                )
            )
            continue
        errors += queue_errors(where, name, config)
        connections.add(connection_key(config))
    if len(connections) > 1:
        errors.append(
            checks.Error(
                f"{where}: the RQ queues {', '.join(sorted(backend.queues))} are on different"
                " Redis connections in RQ_QUEUES; one worker serves them all over one connection.",
                hint="Give them the same connection, or one TASKS backend per connection.",
                id="queues.E008",
            )
        )
    return errors


def no_queue_message(backend):
    """What is wrong with an RQ backend's QUEUES that names no list of queues ("" if nothing):
    empty, Django takes it for any queue, which has no RQ_QUEUES connection; a string, Django
    makes a set of its letters."""
    where = f"TASKS[{backend.alias!r}]['QUEUES']"
    if isinstance(backend.queues_setting, str):
        return (
            f"{where} is the string {backend.queues_setting!r}, not a list: Django reads each of"
            " its letters as a queue."
        )
    return "" if backend.queues else f"{where} names no queue."


def app_order_warnings(where):
    """queues.W005/W006: django_rq installed (the dashboard's templates), after this app (whose
    rqworker and friends, pointing to runworker, must win over django-rq's)."""
    names = [config.name for config in apps.get_app_configs()]
    if "django_rq" not in names:
        return [
            checks.Warning(
                f"{where} is an RQ backend and 'django_rq' is not in INSTALLED_APPS: the RQ"
                " dashboard (queues.rq.dashboard's URLs) has no templates and answers 500.",
                hint="Add 'django_rq' to INSTALLED_APPS, after 'queues'.",
                id="queues.W005",
            )
        ]
    # Without "queues" installed at all, queues.E011 (QueueBackend.check) says so.
    if "queues" in names and names.index("django_rq") < names.index("queues"):
        return [
            checks.Warning(
                "'django_rq' comes before 'queues' in INSTALLED_APPS: django-rq's rqworker,"
                " rqworker-pool, rqenqueue, rqcron and rqscheduler commands replace this app's,"
                " which point to runworker (django-rq's worker would run our jobs without our job"
                " class), and its dashboard templates replace this app's fixed ones.",
                hint="Put 'queues' before 'django_rq' in INSTALLED_APPS.",
                id="queues.W006",
            )
        ]
    return []


def job_class_warnings(where):
    """queues.W007: RQ["JOB_CLASS"] is not our job class (or a subclass of it)."""
    named = getattr(settings, "RQ", {}).get("JOB_CLASS")
    job_class = named
    if isinstance(named, str):
        try:
            job_class = import_string(named)
        except ImportError:
            job_class = None
    paths = {f"{c.__module__}.{c.__qualname__}" for c in getattr(job_class, "__mro__", ())}
    if JOB_CLASS in paths:
        return []
    return [
        checks.Warning(
            f"{where} is an RQ backend and RQ['JOB_CLASS'] is {named!r}, not {JOB_CLASS}: the"
            " queues django-rq builds (its dashboard's) read our jobs with that class, which"
            " resolves whatever function or callbacks a job planted in Redis names when asked.",
            hint=f'Set RQ = {{"JOB_CLASS": "{JOB_CLASS}"}}.',
            id="queues.W007",
        )
    ]


def queue_errors(where, name, config):
    """The static problems of RQ_QUEUES[name] (no network)."""
    errors = []
    entry = f"RQ_QUEUES[{name!r}] (used by {where})"
    if not uses_json_serializer(config):
        errors.append(
            checks.Error(
                f"{entry} names the serializer {config.get('SERIALIZER')!r}; the RQ backend writes"
                " JSON jobs and refuses anything else (django-rq's default, pickle, would run"
                " whatever code a job planted in Redis names).",
                hint=f'Set RQ_QUEUES[{name!r}]["SERIALIZER"] = "{JSON_SERIALIZER}".',
                id="queues.E007",
            )
        )
    if problem := connection_problem(config):
        errors.append(
            checks.Error(
                f"{entry} names a connection django-rq cannot make: {redact_text(problem)}.",
                hint="Give it a URL redis-py takes (redis://, rediss:// or unix://, with its"
                " query options), or HOST with PORT, or UNIX_SOCKET_PATH with DB.",
                id="queues.E009",
            )
        )
    url = endpoint_url(config)
    if reason := cluster_endpoint_reason(url):
        errors.append(
            checks.Error(
                f"{entry} points RQ at a cluster-mode Redis ({reason}); RQ fails there with"
                " CROSSSLOT errors.",
                hint=REMEDY,
                id="queues.E001",
            )
        )
    for key, option in IGNORED_QUEUE_KEYS.items():
        if key in config:
            errors.append(
                checks.Warning(
                    f"{entry} sets {key}, which the RQ backend's tasks do not use.",
                    hint=f"Set the backend's OPTIONS {option!r} instead, and remove {key}.",
                    id="queues.W004",
                )
            )
    return errors


def live_errors(backend, where):
    """queues.E002/E003: the server behind the backend's connection, probed."""
    url = redact(backend.url) if backend.url else "its RQ_QUEUES entry"
    entry = f"RQ_QUEUES[{backend.connection_queue!r}]"
    try:
        reason = probe_cluster_reason(backend.raw_connection())
    except redis.RedisError as error:
        if remedy := refusal_remedy(error, entry):  # the server answered, and refused
            return [
                checks.Error(
                    f"{where}: the RQ Redis at {url} refused the client of {entry}"
                    f" ({redact_text(str(error))}).",
                    hint=remedy,
                    id="queues.E003",
                )
            ]
        return [
            checks.Error(
                f"{where}: could not reach the RQ Redis at {url} to verify it is not in cluster"
                f" mode ({redact_text(str(error))}).",
                hint="Run the deploy checks where the Redis is reachable, or fix its RQ_QUEUES"
                " entry.",
                id="queues.E003",
            )
        ]
    except QueueConfigurationError:
        return []  # reported by the static pass
    if reason:
        return [
            checks.Error(
                f"{where}: the Redis at {url} cannot host RQ: {reason}.",
                hint=REMEDY,
                id="queues.E002",
            )
        ]
    return []
