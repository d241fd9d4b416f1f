"""Fixtures of the impressions tests: staff and plain users' clients, a history to read."""

from datetime import date

import pytest
from django.contrib.auth import get_user_model

from .history_rows import add_impressions


@pytest.fixture
def staff_client(client):
    """A logged-in staff user who is not a superuser (the dashboard asks for staff only)."""
    user = get_user_model().objects.create_user("editor", password="pw", is_staff=True)
    client.force_login(user)
    return client


@pytest.fixture
def superuser_client(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def plain_client(client):
    user = get_user_model().objects.create_user("visitor", password="pw")
    client.force_login(user)
    return client


@pytest.fixture
def history_rows():
    """Add history rows as the flush would: add(object_id, day, count)."""
    return add_impressions


@pytest.fixture
def wednesday():
    """A fixed 'today' in the middle of an ISO week and a month: 2026-11-18."""
    return date(2026, 11, 18)
