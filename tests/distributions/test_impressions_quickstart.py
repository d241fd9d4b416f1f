"""The impressions quick start, verbatim, in a fresh project on the installed wheels.

A project from `django-admin startproject`, an app of its own (`blog`, counting `Article`), the
quick start's settings, files and commands; then real requests to `runserver`, `runworker --burst`
on RQ, and the counts in PostgreSQL; the dashboard renders for a staff user only.
"""

import http.cookiejar
import re
import time
import urllib.parse
import urllib.request

import psycopg
import pytest

from settings.base import LOCAL_REDIS_URL
from tests.distributions.conftest import code_blocks

PAGE = "impressions/quickstart.md"
ARTICLES = 5
FLUSH_DELAY = 1  # seconds; the quick start's default is five minutes


def browser(name):
    """An HTTP client with its own cookie jar and browser: one viewer (two anonymous visitors
    with one address and one User-Agent are one viewer on the day they arrive)."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    opener.addheaders = [("User-Agent", f"Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0 {name}")]
    return opener


def wait_until_serving(url, process, deadline=60):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert process.poll() is None, process.stdout.read()
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"runserver did not answer at {url}")


def log_in(viewer, base, username, password):
    page = viewer.open(f"{base}/admin/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    form = {"username": username, "password": password, "csrfmiddlewaretoken": token,
            "next": "/admin/"}  # fmt: skip
    answer = viewer.open(f"{base}/admin/login/", urllib.parse.urlencode(form).encode())
    assert answer.geturl().endswith("/admin/"), "the staff user could not log in"


def counts(database):
    """The articles' impressions column, sorted, as PostgreSQL holds it (read from here: a
    `manage.py shell` each time took ~0.6 s for the same rows)."""
    with psycopg.connect(
        dbname=database["NAME"], user=database["USER"], host=database["HOST"],
        port=database["PORT"],
    ) as connection:  # fmt: skip
        rows = connection.execute("SELECT impressions FROM blog_article ORDER BY impressions")
        return [impressions for (impressions,) in rows]


def test_the_pip_line_names_the_distributions_the_tests_install():
    [(_, pip)] = [block for block in code_blocks(PAGE) if block[0] == "pip"]
    assert pip.split() == [
        "pip", "install", '"casusult-impressions[postgresql]"', '"casusult-queues[rq]"'
    ]  # fmt: skip


def test_the_quick_starts_take_redis_databases_no_other_project_uses():
    """Projects on one buffer count into each other's models, and one worker takes another's
    jobs: the quick starts' Redis databases are neither the demo site's (`make run`) nor each
    other's, nor the buffer the queue's."""
    redis_url = re.compile(r'"(redis://[^"]+)"')

    def urls(page):
        return [url for _, code in code_blocks(page) for url in redis_url.findall(code)]

    buffer, impressions_queue = urls(PAGE)
    [queues_queue] = urls("queues/quickstart.md")
    taken = {LOCAL_REDIS_URL, buffer, impressions_queue, queues_queue}
    assert len(taken) == 4, (LOCAL_REDIS_URL, buffer, impressions_queue, queues_queue)


def test_the_quick_start_counts_exactly_and_shows_the_dashboard(
    new_project, quickstart_database, quickstart_services, free_port
):
    project = new_project("blog")
    database = quickstart_database
    commands = project.apply(PAGE, quickstart_services)
    # The test's own choice, not the quick start's: a flush one second after the first view.
    with (project.path / "mysite" / "settings.py").open("a") as file:
        file.write(f"\nIMPRESSIONS_FLUSH_DELAY = {FLUSH_DELAY}\n")
    run_lines = [line for kind, code in commands if kind == "run" for line in code.splitlines()]
    assert run_lines[:2] == ["python manage.py makemigrations blog", "python manage.py migrate"]
    project.manage("check", "--fail-level", "WARNING")
    project.manage("makemigrations", "blog")
    project.manage("migrate", "--noinput")
    project.shell(  # createsuperuser and a few articles, in one process
        "from django.contrib.auth.models import User\n"
        "User.objects.create_superuser('staff', 's@example.com', 'a-long-test-password')\n"
        "from blog.models import Article\n"
        f"Article.objects.bulk_create(Article(title=f'article {{n}}') for n in range({ARTICLES}))"
    )

    server = project.start_manage("runserver", f"127.0.0.1:{free_port}", "--noreload")
    base = f"http://127.0.0.1:{free_port}"
    try:
        wait_until_serving(f"{base}/admin/login/", server)
        first, second, staff = browser("first"), browser("second"), browser("staff")
        flush_due = None
        for viewer, views in ((first, 3), (second, 1)):  # a reload counts once
            for _ in range(views):
                assert viewer.open(f"{base}/").read().decode().count("article ") == ARTICLES
                # The first view scheduled the flush before it answered: due by then + the delay.
                flush_due = flush_due or time.monotonic() + FLUSH_DELAY
        log_in(staff, base, "staff", "a-long-test-password")
        staff.open(f"{base}/").read()
        anonymous_dashboard = browser("anonymous").open(f"{base}/admin/impressions/dashboard/")
        assert "/admin/login/" in anonymous_dashboard.geturl()
        dashboard = staff.open(f"{base}/admin/impressions/dashboard/").read().decode()
        assert "Impressions dashboard" in dashboard
        articles_admin = staff.open(f"{base}/admin/blog/article/").read().decode()
        assert "pending" in articles_admin
    finally:
        server.terminate()
        server.wait(timeout=30)

    assert counts(database) == [0] * ARTICLES  # nothing before the flush
    time.sleep(max(0.0, flush_due + 0.5 - time.monotonic()))  # the commands above took a while
    worker = project.manage("runworker", "--burst")
    assert "flush_impressions_task state=SUCCESSFUL" in worker.stderr
    # Two anonymous viewers and the staff user, once each.
    assert counts(database) == [3] * ARTICLES
    project.manage("flush_impressions")  # the quick start's "flush now": nothing left to add
    assert counts(database) == [3] * ARTICLES
