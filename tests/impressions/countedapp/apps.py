"""The test-only counted app; installed by settings/test.py alone (no migrations: tables made by the test run)."""

from django.apps import AppConfig


class CountedAppConfig(AppConfig):
    name = "tests.impressions.countedapp"
    label = "countedapp"
    default_auto_field = "django.db.models.BigAutoField"
