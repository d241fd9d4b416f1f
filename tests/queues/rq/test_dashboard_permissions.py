"""The django-rq dashboard follows Django permissions, redirects only within the site, answers 404
for what does not exist, and never shows a URL's credentials; against a real Redis."""

import pytest
import redis
from django.contrib.auth.models import Permission
from rq import Queue
from rq.serializers import JSONSerializer

from tests.queues import tasks as queue_tasks
from tests.queues.rq.support import run_burst

pytestmark = pytest.mark.django_db(transaction=True)

EVIL = "https://evil.example/"


@pytest.fixture
def queue(rq_url, settings):
    """The RQ backend with MAX_ATTEMPTS 1: a failing task lands in the failed registry at once."""
    settings.TASKS["default"]["OPTIONS"]["MAX_ATTEMPTS"] = 1
    return Queue("default", connection=redis.Redis.from_url(rq_url), serializer=JSONSerializer)


def failed_job(queue, name="dash"):
    """The id of a job that failed and sits in the failed registry."""
    result = queue_tasks.fail_until.enqueue(name, 2)
    run_burst()
    assert result.id in queue.failed_job_registry.get_job_ids()
    return result.id


def staff_client(client, django_user_model, *permissions):
    user = django_user_model.objects.create_user("operator", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    return client


@pytest.fixture
def no_permission(client, django_user_model):
    return staff_client(client, django_user_model)


@pytest.fixture
def viewer(client, django_user_model):
    return staff_client(client, django_user_model, "view_queuestatus")


@pytest.fixture
def operator(client, django_user_model):
    return staff_client(client, django_user_model, "view_queuestatus", "change_queuestatus")


def pages(job_id):
    return [
        "/admin/rq/",
        "/admin/rq/queues/0/",
        "/admin/rq/queues/0/details/",
        "/admin/rq/queues/0/finished/",
        "/admin/rq/queues/0/failed/",
        "/admin/rq/queues/0/scheduled/",
        "/admin/rq/queues/0/started/",
        "/admin/rq/queues/0/deferred/",
        f"/admin/rq/queues/0/{job_id}/",
        "/admin/rq/workers/0/",
    ]


def actions(job_id):
    """(method, path, data) of every changing URL, each with a harmless or refused effect."""
    return [
        ("post", "/admin/rq/queues/0/empty/", {}),
        ("get", "/admin/rq/queues/0/empty/", {}),  # its confirmation page
        ("post", "/admin/rq/queues/0/requeue-all/", {}),
        ("post", "/admin/rq/queues/0/failed/clear/", {}),
        ("post", f"/admin/rq/queues/0/{job_id}/delete/", {}),
        ("post", f"/admin/rq/queues/0/{job_id}/requeue/", {}),
        ("post", f"/admin/rq/queues/0/{job_id}/enqueue/", {}),
        ("post", f"/admin/rq/queues/0/{job_id}/stop/", {}),
        ("post", "/admin/rq/queues/confirm-action/0/", {"action": "delete"}),
        ("post", "/admin/rq/queues/actions/0/", {"action": "delete", "job_ids": [job_id]}),
    ]


def test_a_staff_user_without_permissions_gets_403_everywhere(no_permission, queue):
    job_id = failed_job(queue)
    for path in pages(job_id):
        assert no_permission.get(path).status_code == 403, path
    for method, path, data in actions(job_id):
        assert getattr(no_permission, method)(path, data).status_code == 403, path
    assert no_permission.get("/admin/rq/stats.json").status_code == 403
    assert no_permission.get("/admin/queues/queuestatus/").status_code == 403
    assert job_id in queue.failed_job_registry.get_job_ids()  # nothing happened to it


def test_view_permission_shows_every_page_and_changes_nothing(viewer, queue):
    job_id = failed_job(queue)
    for path in pages(job_id):
        assert viewer.get(path).status_code == 200, path
    assert viewer.get("/admin/rq/stats.json").status_code == 200
    assert viewer.get("/admin/queues/queuestatus/").status_code == 200
    for method, path, data in actions(job_id):
        assert getattr(viewer, method)(path, data).status_code == 403, path
    assert job_id in queue.failed_job_registry.get_job_ids()
    # A filtered scrape filters its own answer: django-rq kept the filtered registry, emptying
    # every later scrape of the process (and answering the next filter with a 500).
    assert viewer.get("/admin/rq/metrics/", {"name[]": "nothing"}).text == ""
    filtered = viewer.get("/admin/rq/metrics/", {"name[]": "rq_jobs"})
    assert filtered.status_code == 200 and "rq_jobs{" in filtered.text
    assert "rq_workers" not in filtered.text
    assert "rq_workers" in viewer.get("/admin/rq/metrics/").text


def test_change_permission_acts(operator, queue):
    job_id = failed_job(queue)
    assert operator.get("/admin/rq/queues/0/failed/").status_code == 200
    answer = operator.post(f"/admin/rq/queues/0/{job_id}/requeue/")
    assert answer.status_code == 302
    assert job_id in queue.get_job_ids()
    assert operator.post("/admin/rq/queues/0/empty/").status_code == 302
    assert queue.count == 0


def test_a_foreign_next_url_or_referer_never_becomes_a_redirect(operator, queue):
    job_id = failed_job(queue)
    for action in ("delete", "requeue", "stop"):
        answer = operator.post(
            "/admin/rq/queues/actions/0/",
            {"action": action, "job_ids": [job_id], "next_url": EVIL},
        )
        assert answer.status_code == 302
        assert answer.url == "/admin/rq/queues/0/", action
    # The confirmation page posts the Referer back as next_url; a foreign one is dropped.
    confirm = operator.post(
        "/admin/rq/queues/confirm-action/0/",
        {"action": "requeue", "_selected_action": ["nosuchjob"]},
        HTTP_REFERER=EVIL,
    )
    assert EVIL not in confirm.text
    bounced = operator.post("/admin/rq/queues/confirm-action/0/", {}, HTTP_REFERER=EVIL)
    assert bounced.status_code == 302 and bounced.url == "/admin/rq/queues/0/"
    # An http:// target is refused to a request that came over HTTPS.
    secure = operator.post(
        "/admin/rq/queues/actions/0/",
        {"action": "stop", "job_ids": [job_id], "next_url": "http://testserver/admin/"},
        secure=True,
    )
    assert secure.url == "/admin/rq/queues/0/"


def test_what_does_not_exist_is_404_not_500(operator, queue):
    job_id = failed_job(queue)
    missing = [
        "/admin/rq/queues/7/",
        "/admin/rq/queues/7/details/",
        "/admin/rq/queues/7/finished/",
        "/admin/rq/queues/7/failed/",
        "/admin/rq/queues/7/scheduled/",
        "/admin/rq/queues/7/started/",
        "/admin/rq/queues/7/deferred/",
        "/admin/rq/queues/7/empty/",
        "/admin/rq/queues/7/requeue-all/",
        "/admin/rq/queues/7/failed/clear/",
        f"/admin/rq/queues/7/{job_id}/",
        "/admin/rq/queues/0/nosuchjob/",
        "/admin/rq/queues/0/nosuchjob/results/1-0/",
        f"/admin/rq/queues/0/{job_id}/results/nosuchresult/",
        "/admin/rq/queues/0/nosuchjob/delete/",
        "/admin/rq/queues/0/nosuchjob/requeue/",
        "/admin/rq/queues/0/nosuchjob/enqueue/",
        "/admin/rq/queues/confirm-action/7/",
        "/admin/rq/queues/actions/7/",
        "/admin/rq/workers/7/",
        "/admin/rq/workers/0/nosuchworker/",
        "/admin/rq/workers/0/rq:worker:nosuchworker/",
        "/admin/rq/schedulers/0/",
        "/admin/rq/schedulers/7/",
        "/admin/rq/cron-schedulers/0/nosuch/",
        "/admin/rq/cron-schedulers/7/nosuch/jobs/a/b/",
    ]
    for path in missing:
        assert operator.get(path).status_code == 404, path
    assert operator.post("/admin/rq/queues/0/nosuchjob/stop/").status_code == 404
    # A posted id RQ cannot even look up (it raised ValueError: a 500).
    malformed = {"action": "delete", "_selected_action": ["a.b"], "job_ids": ["a.b"]}
    assert operator.post("/admin/rq/queues/confirm-action/0/", malformed).status_code == 404
    assert operator.post("/admin/rq/queues/actions/0/", malformed).status_code == 404
    assert operator.post(
        "/admin/rq/queues/actions/0/", {"action": "delete", "job_ids": ["nosuchjob"]}
    ).status_code in (302, 404)


def test_the_confirmation_page_escapes_what_was_posted(operator, queue):
    # Its template filtered django-rq's block with autoescape off: every posted value was markup.
    page = operator.post(
        "/admin/rq/queues/confirm-action/0/",
        {"action": "<b>x</b>", "_selected_action": ["nosuchjob"]},
    )
    assert page.status_code == 200
    assert '<table id="result_list">' in page.text  # django-rq's own markup is still markup
    assert "<b>x</b>" not in page.text
    assert 'name="action" value="&lt;b&gt;x&lt;/b&gt;"' in page.text


def test_the_pages_never_show_a_url_s_credentials(operator, queue):
    secret = "s3cret-Pa55"
    result = queue_tasks.fail_always.enqueue(f"redis://:{secret}@10.0.0.9:6379/0")
    run_burst()
    page = operator.get(f"/admin/rq/queues/0/{result.id}/")
    assert page.status_code == 200
    assert "redis://:***@10.0.0.9:6379/0" in page.text  # the arguments and the traceback
    assert secret not in page.text
    listing = operator.get("/admin/rq/queues/0/failed/")
    assert secret not in listing.text
