"""The impressions app's configuration: registers the system checks (settings, counted model)
and the guard of `migrate impressions zero`."""

from django.apps import AppConfig
from django.db.models.signals import pre_migrate
from django.utils.translation import gettext_lazy as _


class ImpressionsConfig(AppConfig):
    name = "impressions"
    verbose_name = _("Impressions")

    def ready(self):
        # Here, not at the top: checks.py reaches the flush task and so the models, which are not
        # loaded yet when Django imports this module.
        from . import checks  # noqa: F401 (registers the system checks)
        from .migrate_guard import refuse_to_drop_the_ledger

        pre_migrate.connect(
            refuse_to_drop_the_ledger, sender=self, dispatch_uid="impressions-migrate-guard"
        )
