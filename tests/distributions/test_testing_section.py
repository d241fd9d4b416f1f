"""The API reference's "Testing a project that uses the app": its mixin, in the quick start's
project on the installed wheels, under `manage.py test`, serially and with --parallel 2."""

import textwrap

from tests.distributions.test_impressions_quickstart import PAGE

SECTION = "impressions/api.md"
# Each test makes article 1 again (reset_sequences) and is its viewer again: without an empty
# buffer, every test after the first saw its view counted as a reload, and pending counts of
# the process running beside it.
TESTS = textwrap.dedent(
    """
    from django.core.management import call_command
    from django.test import TransactionTestCase

    import impressions

    from .models import Article
    from .testing import EmptyImpressionsBuffer


    class Views:
        reset_sequences = True

        def test_counts(self):
            article = Article.objects.create(title="x")
            self.assertEqual(self.client.get("/").status_code, 200)
            self.assertEqual(impressions.pending_counts([article.pk]), {article.pk: 1})
            call_command("flush_impressions", verbosity=0)
            article.refresh_from_db()
            self.assertEqual(article.impressions, 1)
    """
)


def test_the_mixin_gives_each_test_and_process_an_empty_buffer(
    new_project, quickstart_database, quickstart_redis
):
    buffer_url, rq_url = quickstart_redis
    project = new_project("blog")
    database = quickstart_database
    project.apply(
        PAGE,
        {
            "redis://127.0.0.1:6379/2": buffer_url,
            "redis://127.0.0.1:6379/3": rq_url,
            '"NAME": "mysite"': f'"NAME": "{database["NAME"]}", "PORT": {database["PORT"]}',
            '"USER": "postgres"': f'"USER": "{database["USER"]}"',
            '"HOST": "127.0.0.1"': f'"HOST": "{database["HOST"]}"',
        },
    )
    project.apply(SECTION, {})
    with (project.path / "mysite" / "settings.py").open("a") as file:
        file.write(
            '\nTASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}\n'
            # As the section says: a loaded machine may answer after 50 ms (a count lost).
            "IMPRESSIONS_REDIS_TIMEOUT = 1\n"
        )
    tests = TESTS
    for name in ("One", "Two", "Three", "Four"):
        tests += (
            f"\n\nclass {name}(EmptyImpressionsBuffer, Views, TransactionTestCase):\n    pass\n"
        )
    (project.path / "blog" / "tests.py").write_text(tests)
    project.manage("makemigrations", "blog")

    for flags in ([], ["--parallel", "2"]):
        run = project.manage("test", "--noinput", *flags, check=False)
        assert run.returncode == 0, run.stderr[-3000:]
        assert "Ran 4 tests" in run.stderr
