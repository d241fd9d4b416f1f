"""The API reference's "Testing a project that uses the app": its mixin, in the quick start's
project on the installed wheels, under `manage.py test`, serially and with --parallel 2."""

import textwrap

QUICKSTART = "impressions/quickstart.md"
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


def test_the_mixin_gives_each_test_and_process_an_empty_buffer(new_project, quickstart_services):
    project = new_project("blog")
    project.apply(QUICKSTART, quickstart_services)
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
