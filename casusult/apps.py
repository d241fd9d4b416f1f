"""The site's AppConfig: connects the Prometheus receivers when Django is ready."""

from django.apps import AppConfig


class CasusultConfig(AppConfig):
    name = "casusult"
    verbose_name = "Casusult"

    def ready(self):
        from django.core import checks

        from . import checks as site_checks
        from . import health, metrics

        metrics.connect_signals()
        checks.register(health.check_detail_networks)
        checks.register(health.check_probes_first)
        checks.register(site_checks.check_task_option_variables)
