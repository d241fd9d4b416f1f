"""The site's AppConfig: connects the Prometheus receivers when Django is ready."""

from django.apps import AppConfig


class CasusultConfig(AppConfig):
    name = "casusult"
    verbose_name = "Casusult"

    def ready(self):
        from . import metrics

        metrics.connect_signals()
