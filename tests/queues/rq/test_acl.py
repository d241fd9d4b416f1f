"""RQ under the Redis ACL user that queues.E003's hint gives (ACL SETUSER …): enqueueing, the
worker and its scheduler, failures, the dashboard and its actions, /metrics, /readyz, check
--deploy and queue_stats all work (ACL LOG stays empty), and the user may not run what none of
them needs: the server's administration, and commands that reach past its keys (FLUSHALL, KEYS).

A redis-server of our own, whose ACL the test sets.
"""

import io
import re
import shutil
import tempfile
from datetime import timedelta

import pytest
import redis
from django.core.management import call_command
from django.tasks import task_backends
from django.utils import timezone

import devservices
from queues.rq.connection import refusal_remedy
from tests.queues import tasks as queue_tasks
from tests.queues.rq.support import rq_settings, run_burst

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "rq-Pa55"
# What RQ's user never needs, and could do harm with: other databases' keys and the server's.
NEVER = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("KEYS", "*"),
    ("CONFIG", "SET", "maxmemory", "1"),
    ("ACL", "SETUSER", "rq", "+@all"),
    ("CLIENT", "KILL", "TYPE", "normal"),
    ("SHUTDOWN",),
]


def hinted_rules():
    """The rules of queues.E003's hint for an ACL's NOPERM: `ACL SETUSER name <rules>.`"""
    hint = refusal_remedy(redis.exceptions.NoPermissionError("NOPERM"), "RQ_QUEUES['default']")
    return re.search(r"ACL SETUSER name (.+)\.$", hint).group(1).split()


@pytest.fixture
def acl_rq(settings):
    """RQ as ACL user `rq` with the hint's rules on a redis-server of our own; yields its
    administrator client."""
    workdir = tempfile.mkdtemp(prefix="rq-acl-")
    port = devservices.free_port()
    process = devservices.start_redis_server(port, workdir)
    admin = redis.Redis(port=port)
    try:
        admin.execute_command("ACL", "SETUSER", "rq", "on", f">{PASSWORD}", *hinted_rules())
        url = f"redis://rq:{PASSWORD}@127.0.0.1:{port}/0"
        for name, value in rq_settings(url, TASK_MODULES=settings.TEST_TASK_MODULES).items():
            setattr(settings, name, value)
        settings.TASKS["default"]["OPTIONS"]["MAX_ATTEMPTS"] = 1
        queue_tasks.markers_client().delete(queue_tasks.MARKERS)
        admin.execute_command("ACL", "LOG", "RESET")
        yield admin
    finally:
        queue_tasks.markers_client().delete(queue_tasks.MARKERS)
        process.kill()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def test_every_path_works_under_the_hinted_acl(acl_rq, admin_client):
    deleted = queue_tasks.record_marker.enqueue("deleted")
    assert admin_client.post(f"/admin/rq/queues/0/{deleted.id}/delete/").status_code == 302
    done = queue_tasks.record_marker.enqueue("now")
    failed = queue_tasks.fail_until.enqueue("dash", 2)
    queue_tasks.record_marker.using(run_after=timezone.now() + timedelta(seconds=1)).enqueue(
        "later"
    )
    queue_tasks.record_marker.using(run_after=timezone.now() + timedelta(hours=1)).enqueue("far")
    run_burst()
    for page in ("/admin/rq/", "/admin/rq/queues/0/", "/admin/rq/queues/0/failed/",
                 "/admin/rq/queues/0/scheduled/", "/admin/rq/queues/0/finished/",
                 f"/admin/rq/queues/0/{failed.id}/", "/admin/rq/workers/0/",
                 "/admin/queues/queuestatus/", "/metrics", "/readyz"):  # fmt: skip
        assert admin_client.get(page).status_code == 200, page
    assert admin_client.post(f"/admin/rq/queues/0/{failed.id}/requeue/").status_code == 302
    run_burst()
    call_command("queue_stats", stdout=io.StringIO())
    call_command("check", "--deploy", stdout=io.StringIO())
    task_backends["default"].ping()
    assert task_backends["default"].get_result(done.id).status.name == "SUCCESSFUL"
    assert acl_rq.execute_command("ACL", "LOG") == []
    assert acl_rq.zcard("rq:scheduled:default") >= 1  # "far" waits there


@pytest.mark.parametrize("command", NEVER, ids=lambda command: command[0])
def test_the_hinted_acl_refuses_what_rq_never_needs(acl_rq, settings, command):
    user = redis.Redis.from_url(settings.RQ_QUEUES["default"]["URL"])
    with pytest.raises(redis.exceptions.NoPermissionError):
        user.execute_command(*command)
