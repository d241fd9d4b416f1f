"""The queue backends' quick start, verbatim, in fresh projects on the installed wheels: a task of
the project's own runs on RQ and on SQS (moto over HTTP), without the impressions app."""

import uuid

import pytest

from tests.distributions.conftest import code_blocks

PAGE = "queues/quickstart.md"


def test_the_pip_line_takes_both_extras():
    [(_, pip)] = [block for block in code_blocks(PAGE) if block[0] == "pip"]
    assert pip.split() == ["pip", "install", '"casusult-queues[rq,sqs]"']


def enqueue_reports(project, report, *lines):
    """Enqueue a write_report of each line; returns the project's INSTALLED_APPS, as printed by
    the same process."""
    code = "from reports.tasks import write_report\n" + "".join(
        f"write_report.enqueue({str(report)!r}, {line!r})\n" for line in lines
    )
    return project.shell(code + "from django.conf import settings; print(settings.INSTALLED_APPS)")


def test_a_task_of_its_own_runs_on_rq(new_project, quickstart_redis, tmp_path):
    _, rq_url = quickstart_redis
    project = new_project("reports")
    project.apply(PAGE, {"redis://127.0.0.1:6379/4": rq_url})
    # The optional dashboard's urls.py, whole (the line alone lacked startproject's `include`).
    [(directive, urls)] = [block for block in code_blocks(PAGE) if block[0].startswith("rq-urls")]
    (project.path / directive.split()[1]).write_text(urls)
    project.manage("check", "--fail-level", "WARNING")
    report = tmp_path / "report.txt"
    apps = enqueue_reports(project, report, "one", "two")
    assert not report.exists()  # enqueued, not run
    assert "impressions" not in apps

    project.manage("runworker", "--burst")

    assert report.read_text().splitlines() == ["one", "two"]


# A staff user without the queue permissions, in the quick start's project: the dashboard's pages
# and django-rq's own admin entry (which serves every django-rq view under
# /admin/django_rq/dashboard/, to any staff user, unless RQ_SHOW_ADMIN_LINK is False), then its
# "Empty queue" posted to each.
CLERK = """
from django.contrib.auth.models import User
from django.test import Client
clerk = User.objects.create_user("clerk", password="a-long-test-password", is_staff=True)
client = Client(HTTP_HOST="localhost")
client.force_login(clerk)
for url in ("/admin/rq/queues/0/", "/admin/django_rq/dashboard/queues/0/"):
    print(url, client.get(url).status_code, client.post(url + "empty/").status_code)
"""


def test_a_staff_user_without_the_queue_permissions_reaches_no_job(
    new_project, quickstart_redis, tmp_path
):
    _, rq_url = quickstart_redis
    project = new_project("reports")
    project.apply(PAGE, {"redis://127.0.0.1:6379/4": rq_url})
    [(directive, urls)] = [block for block in code_blocks(PAGE) if block[0].startswith("rq-urls")]
    (project.path / directive.split()[1]).write_text(urls)
    project.manage("migrate", "--noinput")
    report = tmp_path / "report.txt"
    enqueue_reports(project, report, "kept")

    answers = dict(line.split(" ", 1) for line in project.shell(CLERK).splitlines() if " " in line)

    assert answers == {
        "/admin/rq/queues/0/": "403 403",
        "/admin/django_rq/dashboard/queues/0/": "404 404",
    }
    project.manage("runworker", "--burst")
    assert report.read_text().splitlines() == ["kept"]  # the job was left on its queue


@pytest.mark.sqs
def test_a_task_of_its_own_runs_on_sqs(new_project, moto_aws_env, moto_sqs_client, tmp_path):
    queue = f"quickstart-{uuid.uuid4().hex[:8]}"
    project = new_project("reports")
    project.env.update(moto_aws_env)
    commands = project.apply(PAGE, {'"mysite-tasks"': f'"{queue}"'}, append="sqs")
    # The test's own choice, not the quick start's: --burst ends after a 1 s empty poll, not 20 s.
    with (project.path / "mysite" / "settings.py").open("a") as file:
        file.write('\nTASKS["default"]["OPTIONS"]["WAIT_TIME_SECONDS"] = 1\n')
    assert ("run", "python manage.py sqs_setup\n") in commands
    project.manage("sqs_setup")
    project.manage("check", "--fail-level", "WARNING")
    report = tmp_path / "report.txt"
    enqueue_reports(project, report, "three")

    project.manage("runworker", "--burst")

    assert report.read_text().splitlines() == ["three"]
    url = moto_sqs_client.get_queue_url(QueueName=queue)["QueueUrl"]
    attributes = moto_sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"  # acknowledged
    assert "RedrivePolicy" in attributes["Attributes"]  # sqs_setup made the dead-letter queue
