"""QueueStatus only gives the queue status page its place in the admin; its table stays empty."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class QueueStatus(models.Model):
    """The admin's entry for the queue status page (queues.admin); nothing is stored."""

    class Meta:
        # An empty table (migration 0003), never written: the page reads the backends' stats().
        # A model with no table at all (managed = False) breaks `manage.py dumpdata`.
        # view: the queue pages; change: their actions (queues.rq.dashboard).
        default_permissions = ("view", "change")
        verbose_name = verbose_name_plural = _("queue status")

    def __str__(self):
        return "queue status"
