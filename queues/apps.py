"""The queues app: registers the deploy check (each backend's own checks are its check()), the
RQ dashboard's URL check and the check of django-rq's own admin entry."""

from django.apps import AppConfig
from django.core import checks
from django.utils.translation import gettext_lazy as _

from .checks import check_backend_servers, check_dashboard_reachable, check_django_rq_admin


class QueuesConfig(AppConfig):
    name = "queues"
    # QueueStatus's id, whatever the project's DEFAULT_AUTO_FIELD: as its migrations say.
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = _("Queues")

    def ready(self):
        checks.register(check_backend_servers, checks.Tags.compatibility, deploy=True)
        checks.register(check_dashboard_reachable, checks.Tags.urls)
        checks.register(check_django_rq_admin, checks.Tags.admin)
