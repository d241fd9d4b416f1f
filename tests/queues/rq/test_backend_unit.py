"""RQBackend and its job format without a server: OPTIONS, and which jobs the worker refuses."""

import re

import pytest
import redis
import rq.defaults
from django.tasks import task_backends
from rq.job import Callback, Job, Webhook
from rq.serializers import JSONSerializer

from queues.exceptions import QueueConfigurationError, RefusedJob
from queues.rq import jobs
from queues.rq.connection import refusal_remedy
from queues.rq.worker import TaskJob, run_task
from tests.queues.rq.support import RQ_BACKEND, rq_settings

TASK_ARGS = ("tests.queues.tasks.record_marker", ["x"], {})


def ids_and_messages(backend):
    return [(error.id, error.msg) for error in backend.check()]


def test_an_unknown_option_names_the_alias(settings):
    settings.RQ_QUEUES = rq_settings("redis://x")["RQ_QUEUES"]
    settings.TASKS = {"other": {"BACKEND": RQ_BACKEND, "OPTIONS": {"URL": "redis://x"}}}
    [(check_id, message)] = ids_and_messages(task_backends["other"])
    assert check_id == "queues.E004"
    assert message == "TASKS['other']['OPTIONS'] has unknown key(s) URL."
    with pytest.raises(QueueConfigurationError, match=r"TASKS\['other'\].*URL"):
        task_backends["other"].connection()


def test_a_queue_missing_from_rq_queues_is_e006(settings):
    settings.RQ_QUEUES = {}
    settings.TASKS = {"other": {"BACKEND": RQ_BACKEND, "QUEUES": ["jobs"]}}
    [(check_id, message)] = ids_and_messages(task_backends["other"])
    assert check_id == "queues.E006"
    assert "'jobs'" in message and "RQ_QUEUES" in message
    with pytest.raises(QueueConfigurationError, match="RQ_QUEUES does not define"):
        task_backends["other"].connection()


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ([], "TASKS['other']['QUEUES'] names no queue."),
        # Django made a set of its letters: seven E006, "Add RQ_QUEUES['a'] …", for 'default'.
        (
            "default",
            "TASKS['other']['QUEUES'] is the string 'default', not a list: Django reads each of"
            " its letters as a queue.",
        ),
    ],
)
def test_an_rq_backend_with_no_queue_list_is_e013(settings, queues, message):
    # Django reads QUEUES = [] as "any queue"; an RQ backend needs an RQ_QUEUES entry for its
    # connection: the check passed, and runworker died on min() of an empty set.
    settings.RQ_QUEUES = rq_settings("redis://x")["RQ_QUEUES"]
    settings.TASKS = {"other": {"BACKEND": RQ_BACKEND, "QUEUES": queues}}
    assert ids_and_messages(task_backends["other"]) == [("queues.E013", message)]
    with pytest.raises(QueueConfigurationError, match=re.escape(message)):
        task_backends["other"].connection()


@pytest.mark.parametrize(
    "serializer", [None, "rq.serializers.DefaultSerializer", "pickle", "no.such.Serializer"]
)
def test_a_queue_without_the_json_serializer_is_e007(settings, serializer):
    entry = {"URL": "redis://127.0.0.1:1/0"}
    if serializer is not None:
        entry["SERIALIZER"] = serializer
    settings.RQ_QUEUES = {"default": entry}
    settings.TASKS = {"default": {"BACKEND": RQ_BACKEND}}
    [(check_id, message)] = ids_and_messages(task_backends["default"])
    assert check_id == "queues.E007"
    assert "JSON" in message


def test_the_json_serializer_may_be_named_or_given(settings):
    settings.RQ_QUEUES = {"default": {"URL": "redis://127.0.0.1:1/0", "SERIALIZER": JSONSerializer}}
    settings.TASKS = {"default": {"BACKEND": RQ_BACKEND}}
    assert ids_and_messages(task_backends["default"]) == []


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"URL": "redis://:pw@h:6379/0?cluster=false"}, "no connection option 'cluster'"),
        ({"URL": "redis://:pw@h/0?ssl_cert_reqs=none"}, "only a rediss:// URL takes"),
        ({"URL": "rediss://:pw@h/0?ssl_cert_reqs=CERT_NONE"}, "takes none, optional or required"),
        ({"URL": "redis://:pw@h/0?db=x"}, "Invalid value for 'db'"),
        # redis-py took this one for database 0, maybe the impression buffer's: no error at all.
        ({"URL": "redis://:pw@h:6379/abc"}, "path is no database number"),
        ({"URL": "redis://:pw@h:6379/-1"}, "path is no database number"),
        ({"URL": "redis://:pw@h:6379/1 "}, "ends with whitespace"),
        ({"URL": "redis://:pw@s3?cret@h:6379/1"}, "not percent-encoded"),
        ({"URL": "redis://:pw@s3/cret@h:6379/1"}, "not percent-encoded"),
        ({"URL": "redis://:p#w@h:6379/1"}, "not percent-encoded"),
        ({"HOST": "h", "PASSWORD": "pw"}, "django-rq needs its 'PORT' key too"),
        ({"UNIX_SOCKET_PATH": "/run/redis.sock"}, "django-rq needs its 'DB' key too"),
        # django-rq connects to a socket with its DB alone: the server refused the client (E003)
        # with a hint to put PASSWORD next to HOST, where it already was.
        (
            {"UNIX_SOCKET_PATH": "/run/redis.sock", "DB": 2, "PASSWORD": "pw"},
            "connects to UNIX_SOCKET_PATH without its PASSWORD",
        ),
        (
            {"UNIX_SOCKET_PATH": "/run/redis.sock", "DB": 2, "USERNAME": "u", "PASSWORD": "pw"},
            "without its USERNAME and PASSWORD",
        ),
        (
            {"HOST": "h", "PORT": 6379, "REDIS_CLIENT_KWARGS": {"sockettimeout": 1}},
            "'sockettimeout'",
        ),
        # RQ reads bytes: the worker died at start-up ('str' object has no attribute 'decode').
        ({"URL": "redis://:pw@h:6379/0?decode_responses=True"}, "decode_responses"),
        (
            {"HOST": "h", "PORT": 6379, "REDIS_CLIENT_KWARGS": {"decode_responses": True}},
            "decode_responses",
        ),
    ],
)
def test_an_entry_django_rq_cannot_build_a_client_from_is_e009(settings, entry, problem):
    # Each raised a TypeError, ValueError or KeyError from check --deploy, runworker or an enqueue
    # (a CERT_NONE was even reported as cluster mode); now the plain checks say what is wrong.
    settings.RQ_QUEUES = {"default": {**entry, "SERIALIZER": JSONSerializer}}
    settings.TASKS = {"default": {"BACKEND": RQ_BACKEND}}
    [(check_id, message)] = ids_and_messages(task_backends["default"])
    assert check_id == "queues.E009"
    assert problem in message
    assert "pw" not in message


@pytest.mark.parametrize(
    "entry",
    [
        {"URL": "redis://[::1]:6379"},
        {"URL": "redis://LOCALHOST?db=3&socket_timeout=2&health_check_interval=30"},
        {"URL": "rediss://user:p%40ss@h?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem"},
        {"URL": "unix:///run/redis.sock?db=2"},
        {"URL": "unix:///run/redis@main.sock?db=2"},  # an @ in the path: no credentials
        {"UNIX_SOCKET_PATH": "/run/redis.sock", "DB": 2},
        {"HOST": "::1", "PORT": 6379, "USERNAME": "u", "PASSWORD": "p@ss", "SSL": True},
    ],
)
def test_entries_django_rq_builds_a_client_from_pass(settings, entry):
    settings.RQ_QUEUES = {"default": {**entry, "SERIALIZER": JSONSerializer}}
    settings.TASKS = {"default": {"BACKEND": RQ_BACKEND}}
    assert ids_and_messages(task_backends["default"]) == []


def test_every_problem_of_every_queue_is_reported_in_one_run(settings):
    settings.RQ_QUEUES = {
        "a": {"URL": "redis://one:6379/0", "SERIALIZER": "rq.serializers.JSONSerializer"},
        "b": {"URL": "rediss://x.serverless.use1.cache.amazonaws.com:6379", "DEFAULT_TIMEOUT": 9},
    }
    settings.TASKS = {
        "default": {"BACKEND": RQ_BACKEND, "QUEUES": ["a", "b", "c"], "OPTIONS": {"RETRY": 1}}
    }
    ids = sorted(error.id for error in task_backends["default"].check())
    assert ids == [
        "queues.E001",  # b: a cluster endpoint
        "queues.E004",  # RETRY
        "queues.E006",  # c: not in RQ_QUEUES
        "queues.E007",  # b: no JSON serializer
        "queues.E008",  # a and b on different connections
        "queues.W004",  # b: DEFAULT_TIMEOUT, which the tasks do not use
    ]


def job(func=jobs.TRAMPOLINE, job_class=Job, **options):
    """A job as rq would store it (nothing is written: the client never connects)."""
    return job_class.create(
        func, args=TASK_ARGS, connection=redis.Redis(), serializer=jobs.SERIALIZER, **options
    )


def test_only_the_trampoline_with_no_callbacks_or_webhooks_is_ours():
    assert f"{run_task.__module__}.{run_task.__name__}" == jobs.TRAMPOLINE
    assert jobs.refusal(job()) is None
    assert "not queues.rq.worker.run_task" in jobs.refusal(job("os.system"))
    callback = Callback("os.system")
    assert jobs.refusal(job(on_success=callback)) == "job carries callbacks"
    assert jobs.refusal(job(on_failure=callback)) == "job carries callbacks"
    assert jobs.refusal(job(on_stopped=callback)) == "job carries callbacks"
    webhook = Webhook("https://example.com/hook", "finished")
    assert jobs.refusal(job(webhooks=[webhook])) == "job carries webhooks"


def test_the_worker_job_class_resolves_nothing_but_the_trampoline():
    assert job(job_class=TaskJob).func is run_task
    with pytest.raises(RefusedJob, match=r"os\.system"):
        job("os.system", job_class=TaskJob).func  # noqa: B018
    carrying = job(job_class=TaskJob, on_success=Callback("os.system"))
    assert carrying.success_callback is None
    with pytest.raises(RefusedJob, match="callbacks"):
        carrying.func  # noqa: B018


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (["queues", "django_rq"], []),
        (["queues"], ["queues.W005"]),  # the dashboard's templates are django_rq's
        (["django_rq", "queues"], ["queues.W006"]),  # django-rq's rqworker would win
    ],
)
def test_django_rq_must_be_installed_after_this_app(settings, order, expected):
    settings.RQ_QUEUES = {"default": {"URL": "redis://127.0.0.1:1/0", "SERIALIZER": JSONSerializer}}
    settings.TASKS = {"default": {"BACKEND": RQ_BACKEND}}
    others = [app for app in settings.INSTALLED_APPS if app not in ("queues", "django_rq")]
    settings.INSTALLED_APPS = others + order
    assert [check_id for check_id, _ in ids_and_messages(task_backends["default"])] == expected


@pytest.mark.parametrize(
    ("rq", "expected"),
    [
        ({"JOB_CLASS": "queues.rq.worker.TaskJob"}, []),
        ({"JOB_CLASS": TaskJob}, []),
        ({}, ["queues.W007"]),  # django-rq's default: RQ's own Job
        ({"JOB_CLASS": "rq.job.Job"}, ["queues.W007"]),
        ({"JOB_CLASS": "no.such.Job"}, ["queues.W007"]),
    ],
)
def test_django_rq_must_build_our_job_class(settings, rq, expected):
    settings.RQ_QUEUES = {"default": {"URL": "redis://127.0.0.1:1/0", "SERIALIZER": JSONSerializer}}
    settings.TASKS = {"default": {"BACKEND": RQ_BACKEND}}
    settings.RQ = rq
    assert [check_id for check_id, _ in ids_and_messages(task_backends["default"])] == expected


@pytest.mark.parametrize(("prefix", "keys"), [(None, "~rq:*"), ("myapp", "~myapp:*")])
def test_the_acl_hint_names_the_keys_rq_writes(monkeypatch, prefix, keys):
    # rq 3.0 takes its key prefix from the environment (RQ_KEY_PREFIX) at import; before, rq:.
    if prefix is None:
        monkeypatch.delattr(rq.defaults, "RQ_KEY_PREFIX", raising=False)
    else:
        monkeypatch.setattr(rq.defaults, "RQ_KEY_PREFIX", prefix, raising=False)
    hint = refusal_remedy(redis.exceptions.NoPermissionError("NOPERM"), "RQ_QUEUES['default']")
    channels = keys.replace("~", "&").replace(":*", ":pubsub:*")
    assert f"ACL SETUSER name {keys} ~queues-probe:* {channels} +@all -@dangerous +info." in hint
