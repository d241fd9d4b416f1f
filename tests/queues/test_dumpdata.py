"""manage.py dumpdata of the whole database: the queues app's admin entry has an empty table."""

import io
import json

import pytest
from django.core.management import call_command

from queues.models import QueueStatus

pytestmark = pytest.mark.django_db


def test_dumpdata_of_the_queues_app_is_empty():
    out = io.StringIO()
    call_command("dumpdata", "queues", stdout=out)
    assert json.loads(out.getvalue()) == []


def test_dumpdata_of_every_app_but_django_rq_reads_every_table():
    # django-rq's own Dashboard model has no table: a project excludes it, as the docs say. The
    # test-only counted app's unmanaged models have none either until their own tests create one.
    out = io.StringIO()
    unmanaged = ["countedapp.SchemaPost", "countedapp.ArticleView"]
    call_command("dumpdata", exclude=["django_rq", *unmanaged], stdout=out)
    dumped = {row["model"] for row in json.loads(out.getvalue())}
    assert "impressions.historyrollup" in dumped
    assert not QueueStatus.objects.exists()
