"""queues.W008: the RQ dashboard included where an earlier URL pattern takes its path."""

from django.core.checks import Tags, run_checks
from django.test import override_settings
from django.urls import resolve

from queues.checks import check_dashboard_reachable


def dashboard_warnings():
    return [m for m in run_checks(tags=[Tags.urls]) if m.id == "queues.W008"]


@override_settings(ROOT_URLCONF="tests.queues.rq.shadowed_dashboard_urls")
def test_a_dashboard_after_admin_is_a_warning_naming_the_order():
    [warning] = dashboard_warnings()
    assert "included at /admin/rq/, but that path resolves to 'admin:" in warning.msg
    assert "before path('admin/', admin.site.urls)" in warning.hint
    # What the warning is about: admin's catch-all, which answers 404 for every path under it.
    assert resolve("/admin/rq/").func.__name__ == "catch_all_view"


def test_the_site_s_order_and_a_project_without_the_dashboard_pass():
    assert dashboard_warnings() == []  # casusult/urls.py: admin/rq/ before admin/
    with override_settings(ROOT_URLCONF="tests.queues.probe_urls"):
        assert check_dashboard_reachable() == []
