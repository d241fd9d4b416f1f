"""Panels the site adds to the impressions dashboard (IMPRESSIONS_DASHBOARD_PANELS).

The impressions app must not import queues, so the site, which may use both, hands the
dashboard the task queues' numbers.
"""

from contextlib import suppress

from django.urls import NoReverseMatch, reverse

from queues.admin import rq_dashboard_url
from queues.stats import all_backend_stats, describe

# The queue status page's permissions (QueueStatusAdmin: view, or change, which implies it).
VIEW_QUEUES, CHANGE_QUEUES = "queues.view_queuestatus", "queues.change_queuestatus"


def queue_panel(request):
    """Every task backend's queue numbers, as on the queue status admin page; only for users who
    may view that page (the dashboard's own view permission does not show it)."""
    user = request.user
    if not (user.has_perm(VIEW_QUEUES) or user.has_perm(CHANGE_QUEUES)):
        return None
    rows = []
    for found in all_backend_stats():
        name = f"{found.alias} ({found.backend})"
        if found.in_process:
            rows.append((name, found.in_process_note))
        elif found.error:
            rows.append((name, f"unavailable: {found.error}"))
        for queue in found.queues:
            rows.append((f"{name} {queue.queue}", describe(queue.counts)))
    links = []
    with suppress(NoReverseMatch):  # on the admin site showing the dashboard, where it has the page
        status_url = reverse("admin:queues_queuestatus_changelist", current_app=request.current_app)
        links.append(("Queue status", status_url))
    if url := rq_dashboard_url():
        links.append(("RQ dashboard (django-rq)", url))
    return {"title": "Task queues", "rows": rows, "links": links}
