"""The impressions app's configuration: registers the system checks (settings, counted model)."""

from django.apps import AppConfig


class ImpressionsConfig(AppConfig):
    name = "impressions"
    verbose_name = "Impressions"

    def ready(self):
        # Here, not at the top: checks.py reaches the flush task and so the models, which are not
        # loaded yet when Django imports this module.
        from . import checks  # noqa: F401 (registers the system checks)
