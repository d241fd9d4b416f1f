"""queues.E012: django-rq's own admin entry, which serves every django-rq view to any staff user."""

import pytest
from django.contrib import admin
from django.core.checks import Tags, run_checks
from django_rq.admin import QueueAdmin
from django_rq.models import Dashboard


def admin_entry_errors():
    return [m for m in run_checks(tags=[Tags.admin]) if m.id == "queues.E012"]


@pytest.fixture
def django_rq_admin_entry():
    """What django-rq's admin module registers unless RQ_SHOW_ADMIN_LINK is False."""
    admin.site.register(Dashboard, QueueAdmin)
    yield
    admin.site.unregister(Dashboard)


def test_django_rq_s_admin_entry_is_an_error_naming_the_setting(django_rq_admin_entry):
    [error] = admin_entry_errors()
    # Its path where the URLconf was loaded after the registration (as in a project), else its
    # URL name: the test's URLconf may have been loaded before.
    assert "admin/django_rq/dashboard/" in error.msg or "django_rq_dashboard" in error.msg
    assert "any staff user" in error.msg
    assert "RQ_SHOW_ADMIN_LINK = False" in error.hint


def test_the_site_without_it_passes():
    assert not admin.site.is_registered(Dashboard)  # settings.base: RQ_SHOW_ADMIN_LINK = False
    assert admin_entry_errors() == []
