"""The admin pages under a project's own locale: LANGUAGE_CODE "de" with USE_THOUSAND_SEPARATOR.

Django then formats every number a template prints, "3.333" as "3,333" and 1234 as "1.234": in an
SVG coordinate the browser refuses the value and draws nothing, in a data-* attribute a script
reads the wrong number, in a query string the page asked for is refused. What a person reads may
follow the locale, all of it alike (the numbers formatted in Python as those of the templates); what
a browser or a script reads must not. And the words the admin already has in that language (its
breadcrumbs' "Home") are in it on these pages too.
"""

import re
from datetime import timedelta

import pytest
from django.test import override_settings

from impressions import ranking, stats
from tests.factories import make_posts

from .history_rows import add_many

pytestmark = pytest.mark.django_db

GERMAN = override_settings(LANGUAGE_CODE="de", USE_THOUSAND_SEPARATOR=True)
# The attributes a browser or a script reads as a number (a length, a percentage, an id, a count).
NUMERIC = re.compile(
    r'\s((?:x|y|x1|x2|y1|y2|width|height|data-(?:count|pending|total|object-id)))="([^"]*)"'
)
PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?%?")


# What a person reads: the page's text, without its tags (and so without the attributes a
# browser or a script reads). One page, one number format: the numbers the app formats in Python
# read as Django formats the templates' ones, "7.035" beside "1.234", never "7,035".
TAGS = re.compile(r"<[^>]*>")
ENGLISH_GROUPING = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")


def visible_text(html):
    return TAGS.sub(" ", html)


def localized_attributes(html):
    """(name, value) of each numeric attribute that is not a plain number."""
    return [
        (name, value) for name, value in NUMERIC.findall(html) if not PLAIN_NUMBER.fullmatch(value)
    ]


@GERMAN
def test_charts_and_data_attributes_stay_plain_numbers(
    superuser_client, history_rows, standalone_buffer
):
    posts = make_posts(2)
    today = stats.today()
    history_rows(posts[0].id, today, 1234)
    history_rows(posts[1].id, today - timedelta(days=2), 2345)
    history_rows(12345, today, 3456)  # a deleted object's, with an id of five digits

    dashboard = superuser_client.get("/admin/impressions/dashboard/?range=7d")
    assert dashboard.status_code == 200
    html = dashboard.text
    assert 'data-total="7035"' in html
    assert f'data-day="{today.isoformat()}" data-count="4690"' in html
    assert 'data-object-id="12345"' in html
    assert localized_attributes(html) == []
    # What a person reads: every number in German, those made in Python as the templates' ones.
    assert ENGLISH_GROUPING.findall(visible_text(html)) == []
    assert 'id="range-total">7.035<' in html
    assert '<td class="count">4.690</td>' in html

    change = superuser_client.get(f"/admin/casusult/post/{posts[0].id}/change/")
    assert change.status_code == 200
    assert 'data-count="1234"' in change.text
    assert localized_attributes(change.text) == []
    assert ENGLISH_GROUPING.findall(visible_text(change.text)) == []
    assert "1.234 impressions from" in change.text  # the chart's summary, made in Python


@GERMAN
def test_the_ranked_pages_link_to_page_numbers_the_view_reads(
    superuser_client, standalone_buffer, monkeypatch
):
    # A page a row: page 1,001 is reached with 1,002 objects, not 50,000.
    monkeypatch.setattr(ranking, "PAGE_SIZE", 1)
    monkeypatch.setattr(ranking.ranked_page, "__defaults__", (1,))
    today = stats.today()
    add_many((object_id, today, object_id) for object_id in range(1, 1003))

    response = superuser_client.get("/admin/impressions/dashboard/objects/?range=today&page=1001")
    assert response.status_code == 200
    html = response.text
    assert 'href="?range=today&amp;page=1000" rel="prev"' in html
    assert 'href="?range=today&amp;page=1002" rel="next"' in html
    assert localized_attributes(html) == []
    # The link followed: the page it names, not a 400 for "1.002".
    followed = superuser_client.get("/admin/impressions/dashboard/objects/?range=today&page=1002")
    assert followed.status_code == 200

    past_end = superuser_client.get("/admin/impressions/dashboard/objects/?range=today&page=5000")
    assert past_end.status_code == 400
    assert 'href="?range=today&amp;page=1002">page 1.002, the last</a>' in past_end.text


@GERMAN
@pytest.mark.parametrize(
    "url",
    [
        "/admin/impressions/dashboard/",
        "/admin/impressions/dashboard/objects/",
        "/admin/queues/queuestatus/",
    ],
)
def test_breadcrumbs_say_home_in_the_admin_language(superuser_client, standalone_buffer, url):
    response = superuser_client.get(url)
    assert response.status_code == 200
    # "Start" is Django's own German for the admin's "Home", as on its own pages.
    assert re.search(r'<li><a href="/admin/">Start</a></li>', response.text)
    assert ">Home</a>" not in response.text
