"""The RQ job format: JSON data that calls one fixed trampoline with a task's path and arguments.

Every job of ours calls `run_task(task_path, args, kwargs)` (queues.rq.worker), which imports the
path and runs it only if it is a django.tasks Task. Any other job (another callable, callbacks,
webhooks, a pickle) is refused by the worker's job class, so a job planted in Redis never runs.
"""

from django.tasks import TaskResultStatus
from rq.serializers import JSONSerializer

TRAMPOLINE = "queues.rq.worker.run_task"
SERIALIZER = JSONSerializer

RQ_STATUS = {
    "queued": TaskResultStatus.READY,
    "scheduled": TaskResultStatus.READY,
    "deferred": TaskResultStatus.READY,
    "started": TaskResultStatus.RUNNING,
    "finished": TaskResultStatus.SUCCESSFUL,
    "failed": TaskResultStatus.FAILED,
    "stopped": TaskResultStatus.FAILED,
    "canceled": TaskResultStatus.FAILED,
}


def trampoline_arguments(task, result):
    """The job arguments of `result` (a TaskResult of `task`): what run_task receives."""
    return (task.module_path, result.args, result.kwargs)


def attempt_workers(job):
    """The workers of the job's attempts so far (TaskResult.worker_ids), oldest first.

    The worker keeps them in the job's meta, so that `context.attempt` counts RQ's retries.
    """
    return list(job.meta.get("worker_ids", []))


def task_status(job):
    """The django.tasks status of an RQ job."""
    rq_status = job.get_status()
    return RQ_STATUS.get(getattr(rq_status, "value", rq_status), TaskResultStatus.READY)


def refusal(job):
    """Why `job` is not one of ours and must not run, or None."""
    if job.func_name != TRAMPOLINE or job.instance is not None:
        return f"job calls {job.func_name!r}, not {TRAMPOLINE}"
    names = (job._success_callback_name, job._failure_callback_name)
    if any(names) or job._stopped_callback_name:
        return "job carries callbacks"
    if job.webhooks:
        return "job carries webhooks"
    return None
