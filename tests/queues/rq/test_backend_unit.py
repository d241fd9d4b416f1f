"""RQBackend and its job format without a server: OPTIONS, and which jobs the worker refuses."""

import pytest
import redis
from django.tasks import task_backends
from rq.job import Callback, Job, Webhook

from queues.exceptions import QueueConfigurationError, RefusedJob
from queues.rq import jobs
from queues.rq.worker import TaskJob, run_task
from tests.queues.rq.support import RQ_BACKEND

TASK_ARGS = ("tests.queues.tasks.record_marker", ["x"], {})


def test_unknown_option_and_missing_url_name_the_alias(settings):
    settings.TASKS = {"other": {"BACKEND": RQ_BACKEND, "OPTIONS": {"URL": "redis://x", "URLS": 1}}}
    with pytest.raises(QueueConfigurationError, match=r"TASKS\['other'\].*URLS"):
        task_backends["other"]
    settings.TASKS = {"other": {"BACKEND": RQ_BACKEND}}
    with pytest.raises(QueueConfigurationError, match=r"TASKS\['other'\].*URL"):
        task_backends["other"]


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
