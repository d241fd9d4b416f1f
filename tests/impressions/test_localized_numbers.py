"""One page, one number format: under a project's locale (LANGUAGE_CODE "de" with
USE_THOUSAND_SEPARATOR) the numbers the apps format in Python read as Django formats those of the
templates, "7.035" beside "4.690", never "7,035" beside "4.690"."""

import re
from datetime import timedelta

import pytest
from django.test import override_settings

from impressions import stats
from tests.factories import make_posts

pytestmark = pytest.mark.django_db

GERMAN = override_settings(LANGUAGE_CODE="de", USE_THOUSAND_SEPARATOR=True)
# What a person reads: the page's text, without its tags (and so without the attributes a
# browser or a script reads, which stay plain numbers: test_localized_admin.py).
TAGS = re.compile(r"<[^>]*>")
ENGLISH_GROUPING = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")


def visible_text(html):
    return TAGS.sub(" ", html)


@GERMAN
def test_the_dashboard_formats_every_number_as_the_locale_does(
    superuser_client, history_rows, standalone_buffer
):
    posts = make_posts(2)
    today = stats.today()
    history_rows(posts[0].id, today, 1234)
    history_rows(posts[1].id, today - timedelta(days=2), 2345)
    history_rows(posts[1].id, today - timedelta(days=9), 3456)  # in the period before

    response = superuser_client.get("/admin/impressions/dashboard/?range=7d")
    assert response.status_code == 200
    text = visible_text(response.text)
    assert ENGLISH_GROUPING.findall(text) == []
    assert re.search(r'id="range-total">3\.579<', response.text)  # the total, formatted in Python
    assert "3.456 in the period before" in text
    assert '<td class="count">1.234</td>' in response.text  # a table cell, by the template


@GERMAN
def test_a_post_page_formats_its_counts_as_the_locale_does(
    superuser_client, history_rows, standalone_buffer
):
    post = make_posts(1)[0]
    history_rows(post.id, stats.today() - timedelta(days=1), 12345)

    response = superuser_client.get(f"/admin/casusult/post/{post.id}/change/")
    assert response.status_code == 200
    text = visible_text(response.text)
    assert ENGLISH_GROUPING.findall(text) == []
    assert "12.345" in text
