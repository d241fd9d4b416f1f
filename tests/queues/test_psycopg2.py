"""The workers of a project on psycopg2 (Django takes it when psycopg 3 is not installed): a
`runworker` child process that cannot import psycopg 3 (tests.processes.on_psycopg2)."""

import json
import time
import uuid

import pytest
from django.db import connection

from tests.impressions.support import database_url_for_subprocess
from tests.processes import on_psycopg2, run_python
from tests.queues import tasks as queue_tasks
from tests.queues.rq.support import worker_env


@pytest.mark.django_db(transaction=True)
def test_a_timed_out_task_s_query_is_cancelled_on_psycopg2(rq_url, settings, manage, tmp_path):
    """The worker stops a task inside a query at its JOB_TIMEOUT on psycopg2 too, and the query
    on the server. psycopg2 runs a signal's handler only once the query returns: the timeout
    waited for the query's end (30 s here; forever for a lock never granted)."""
    settings.TASKS["default"]["OPTIONS"]["JOB_TIMEOUT"] = 1
    tag = uuid.uuid4().hex
    queue_tasks.hold_database.enqueue(30, tag)
    queue_tasks.record_marker.enqueue("after")
    env = worker_env(
        rq_url,
        RQ_JOB_TIMEOUT="1",
        DATABASE_URL=database_url_for_subprocess(connection),
        **on_psycopg2(tmp_path),
    )
    started = time.monotonic()
    result = manage("runworker", "--burst", env=env)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15
    assert "outcome=timed-out" in result.stderr
    assert queue_tasks.markers() == ["querying", "after"]
    assert queue_tasks.no_query_held(tag)


# A query of 30 s in execution.time_limit(1) (the SQS worker's timeout) on psycopg2.
QUERY_PAST_THE_LIMIT = """
import json
import time

import django
django.setup()
from django.db import connection

from queues.execution import TaskTimeout, time_limit

started = time.monotonic()
try:
    with time_limit(1), connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(30)")
    raised = ""
except TaskTimeout as error:
    raised = str(error)
print(json.dumps({
    "driver": connection.Database.__name__,
    "raised": raised,
    "seconds": time.monotonic() - started,
}))
"""


@pytest.mark.django_db(transaction=True)
def test_a_task_s_time_limit_stops_its_query_on_psycopg2(tmp_path):
    env = {"DATABASE_URL": database_url_for_subprocess(connection), **on_psycopg2(tmp_path)}
    child = run_python(QUERY_PAST_THE_LIMIT, env=env)
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout.strip().splitlines()[-1])
    assert out["driver"] == "psycopg2"
    assert "JOB_TIMEOUT (1 s)" in out["raised"]
    assert out["seconds"] < 10
