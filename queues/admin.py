"""Admin: the queue status page, each task backend's numbers, linking to django-rq's dashboard."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.tasks import task_backends
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext

from .models import QueueStatus
from .stats import all_backend_stats


def rq_dashboard_url():
    """The dashboard URL of the first backend that has one the project mounts (django-rq's, under
    the django_rq namespace, for RQ); else None."""
    for backend in task_backends.all():
        if name := getattr(backend, "dashboard_url_name", None):
            try:
                return reverse(name)
            except NoReverseMatch:
                continue
    return None


@admin.register(QueueStatus)
class QueueStatusAdmin(admin.ModelAdmin):
    """Read-only: the list page shows the backends' stats() instead of rows."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        request.current_app = self.admin_site.name  # its {% url 'admin:…' %} stay on this site
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Queue status"),
            "opts": self.opts,
            "backends": all_backend_stats(),
            "rq_dashboard_url": rq_dashboard_url(),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/queues/status.html", context)
