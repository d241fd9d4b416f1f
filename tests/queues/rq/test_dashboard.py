"""django-rq's dashboard at /admin/rq/ over our JSON jobs, and the queue status admin page."""

import pytest
import redis
from django.tasks import TaskResultStatus, task_backends
from rq import Queue
from rq.serializers import JSONSerializer

from queues.rq.jobs import SERIALIZER
from queues.rq.worker import TaskJob, TaskWorker
from tests.queues import tasks as queue_tasks
from tests.queues.rq.support import run_burst

# transaction=True: the in-process worker closes the connection after a failed task (as it must
# after a timeout), which would end the test's own transaction.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_user("operator", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.fixture
def single_attempt(rq_url, settings):
    """The RQ backend with MAX_ATTEMPTS 1: a failing task lands in the failed registry at once."""
    settings.TASKS["default"]["OPTIONS"]["MAX_ATTEMPTS"] = 1
    return Queue("default", connection=redis.Redis.from_url(rq_url), serializer=JSONSerializer)


def failed_once(queue, name):
    """A job of fail_until(name, 2) that failed its first run and sits in the failed registry."""
    result = queue_tasks.fail_until.enqueue(name, 2)
    run_burst()
    assert result.id in queue.failed_job_registry.get_job_ids()
    return result


def test_requeue_from_the_dashboard_runs_the_task_through_our_worker(staff, single_attempt):
    result = failed_once(single_attempt, "dash")
    listing = staff.get("/admin/rq/queues/0/failed/")
    assert listing.status_code == 200
    assert result.id in listing.text
    detail = staff.get(f"/admin/rq/queues/0/{result.id}/")
    assert detail.status_code == 200
    assert "tests.queues.tasks.fail_until" in detail.text  # read with our JSON serializer

    requeued = staff.post(f"/admin/rq/queues/0/{result.id}/requeue/")
    assert requeued.status_code == 302
    run_burst()

    assert [attempt for attempt, _ in queue_tasks.attempts_of("dash")] == [1, 2]
    fetched = task_backends["default"].get_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL
    assert fetched.return_value == 2  # context.attempt went on counting: a second attempt
    assert not single_attempt.failed_job_registry.get_job_ids()


def test_requeue_all_failed_jobs(staff, single_attempt):
    results = [failed_once(single_attempt, name) for name in ("one", "two")]
    assert staff.post("/admin/rq/queues/0/requeue-all/").status_code == 302
    run_burst()
    for result in results:
        assert task_backends["default"].get_result(result.id).status == TaskResultStatus.SUCCESSFUL


def test_stop_is_disabled_with_a_reason(staff, single_attempt):
    result = failed_once(single_attempt, "stop")
    answer = staff.post(f"/admin/rq/queues/0/{result.id}/stop/", follow=True)
    assert "Stop is disabled" in answer.text
    bulk = staff.post(
        "/admin/rq/queues/actions/0/",
        {"action": "stop", "job_ids": [result.id], "next_url": "https://elsewhere.example/"},
    )
    assert bulk.status_code == 302
    assert bulk.url == "/admin/rq/queues/0/"  # not the foreign next_url
    assert result.id in single_attempt.failed_job_registry.get_job_ids()  # untouched


def test_the_dashboard_is_for_staff_only(client, django_user_model, rq_url):
    for path in ("/admin/rq/", "/admin/rq/queues/0/failed/"):
        assert client.get(path).status_code == 302  # to the admin login
    assert client.get("/admin/rq/stats.json").status_code == 401
    client.force_login(django_user_model.objects.create_user("visitor"))
    assert client.get("/admin/rq/").status_code == 302
    assert client.get("/admin/rq/stats.json").status_code == 401


def test_queue_status_page_shows_the_numbers_and_links_the_dashboard(staff, single_attempt):
    failed_once(single_attempt, "status")
    index = staff.get("/admin/")
    assert "/admin/queues/queuestatus/" in index.text
    page = staff.get("/admin/queues/queuestatus/")
    assert page.status_code == 200
    assert 'href="/admin/rq/"' in page.text
    assert "RQBackend" in page.text
    for state in ("queued", "scheduled", "started", "failed"):
        assert f'<th scope="col">{state}</th>' in page.text
    assert "<td>1</td>" in page.text  # the failed job
    dashboard = staff.get("/admin/rq/")
    assert dashboard.status_code == 200
    assert 'href="/admin/"' in dashboard.text  # and back to the admin


def test_an_unreachable_redis_answers_503_saying_so_not_500(staff, settings, dead_rq_url):
    settings.RQ_QUEUES = {
        "default": {"URL": dead_rq_url, "SERIALIZER": "rq.serializers.JSONSerializer"}
    }
    for page in ("/admin/rq/", "/admin/rq/queues/0/", "/admin/rq/queues/0/finished/"):
        answer = staff.get(page)
        assert answer.status_code == 503, page
        assert "The RQ Redis (RQ_QUEUES) cannot be reached" in answer.text
    answer = staff.get("/admin/rq/stats.json/")
    assert answer.status_code == 503 and "cannot be reached" in answer.json()["description"]


def test_a_worker_s_page_shows_the_job_it_runs(staff, rq_url):
    # django-rq read the worker's current job with pickle: the page was a 500 while a task ran.
    result = queue_tasks.record_marker.enqueue("busy")
    page = worker_page(staff, rq_url, result.id)
    assert page.status_code == 200
    assert result.id in page.text


@pytest.mark.parametrize(
    "change",
    [
        {"data": b"\x80\x04planted"},  # a pickle's data, which the worker is refusing: was a 500
        None,  # deleted from the dashboard while it runs: was a 404, "No such job."
    ],
)
def test_a_worker_s_page_answers_while_its_job_cannot_be_read(staff, rq_url, change):
    result = queue_tasks.record_marker.enqueue("busy")
    connection = redis.Redis.from_url(rq_url)

    def meanwhile():
        if change is None:
            connection.delete(f"rq:job:{result.id}")
        else:
            connection.hset(f"rq:job:{result.id}", mapping=change)

    page = worker_page(staff, rq_url, result.id, meanwhile)
    assert page.status_code == 200
    assert "Busy" in page.text or "busy" in page.text


def worker_page(staff, rq_url, job_id, meanwhile=lambda: None):
    """The dashboard's page of a worker that has just started the job `job_id`."""
    connection = redis.Redis.from_url(rq_url)
    worker = TaskWorker(
        ["default"], connection=connection, job_class=TaskJob, serializer=SERIALIZER
    )
    worker.register_birth()
    job = TaskJob.fetch(job_id, connection=connection, serializer=SERIALIZER)
    worker.prepare_execution(job)  # what the worker does as it starts the job
    worker.prepare_job_execution(job)
    meanwhile()
    try:
        return staff.get(f"/admin/rq/workers/0/{worker.key}/")
    finally:
        worker.register_death()
