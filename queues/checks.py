"""The deploy pass of the queue backends' system checks; each backend's checks are its check().

| id           | when                    | what                                                      |
| ------------ | ----------------------- | --------------------------------------------------------- |
| queues.E001  | every check, no network | an RQ backend's RQ_QUEUES entry names a cluster endpoint  |
| queues.E002  | check --deploy          | the live probe found a cluster-mode or sharded server     |
| queues.E003  | check --deploy          | the live probe could not reach the RQ Redis (fails closed) |
| queues.W001  | check --deploy          | the SQS queue has no redrive policy (no dead-letter queue) |
| queues.W002  | check --deploy          | the SQS redrive policy's maxReceiveCount < MAX_ATTEMPTS   |
| queues.W003  | check --deploy          | the SQS queue's redrive policy could not be read           |
| queues.E004  | every check             | a backend's OPTIONS has unknown keys                      |
| queues.E005  | every check             | a backend's OPTIONS value is bad (one error per key)      |
| queues.E006  | every check             | an RQ backend's queue is missing from RQ_QUEUES           |
| queues.E007  | every check             | an RQ backend's RQ_QUEUES entry names no JSON serializer  |
| queues.E008  | every check             | an RQ backend's queues are on different connections       |
| queues.E009  | every check, no network | an RQ_QUEUES entry django-rq cannot build a client from   |
| queues.W004  | every check             | RQ_QUEUES sets DEFAULT_TIMEOUT/DEFAULT_RESULT_TTL (unused) |
| queues.W005  | every check             | an RQ backend, and django_rq is not in INSTALLED_APPS      |
| queues.W006  | every check             | django_rq comes before queues in INSTALLED_APPS            |
| queues.W007  | every check             | an RQ backend, and RQ["JOB_CLASS"] is not our TaskJob       |
| queues.E010  | every check             | a TASK_MODULES entry cannot be imported or defines no task |
| queues.E011  | every check             | a backend of this app, and queues is not in INSTALLED_APPS |
| queues.W008  | every check (urls)      | the RQ dashboard is included where an earlier path takes it |
| queues.E012  | every check (admin)     | django-rq's own admin entry is registered (any staff user) |
| queues.E013  | every check             | an RQ backend's QUEUES is empty or a string, not a list    |

Never reuse a retired id.
"""

from django.apps import apps
from django.core import checks
from django.tasks import task_backends
from django.urls import NoReverseMatch, Resolver404, resolve, reverse

from .base import QueueBackend

DASHBOARD_NAMESPACE = "django_rq"  # queues.rq.dashboard's app_name, as django-rq's own


def check_backend_servers(app_configs=None, **kwargs):
    """Deploy check: each queue backend's check(deploy=True), once its static checks pass.

    django.tasks already runs check() on every command: its errors are not repeated here, and a
    backend they fail is not reached over the network.
    """
    errors = []
    for backend in task_backends.all():
        if not isinstance(backend, QueueBackend):
            continue
        if not any(message.is_serious() for message in backend.check()):
            errors += backend.check(deploy=True)
    return errors


def check_dashboard_reachable(app_configs=None, **kwargs):
    """queues.W008: the URLconf includes the RQ dashboard, but its path resolves elsewhere: a
    pattern before it takes it (admin/, whose catch-all answers 404 for every path under it)."""
    try:
        path = reverse(f"{DASHBOARD_NAMESPACE}:home")
    except NoReverseMatch:
        return []  # not included
    except Exception:  # a URLconf that does not import: Django's own checks say so
        return []
    try:
        match = resolve(path)
    except Resolver404:
        match = None
    if match is not None and DASHBOARD_NAMESPACE in match.namespaces:
        return []
    taken_by = f"'{match.view_name}'" if match is not None else "no view"
    return [
        checks.Warning(
            f"The RQ dashboard is included at {path}, but that path resolves to {taken_by}: a"
            " URL pattern before it takes it, so the dashboard answers 404.",
            hint="Put path('admin/rq/', include('queues.rq.dashboard')) before"
            " path('admin/', admin.site.urls) in the URLconf.",
            id="queues.W008",
        )
    ]


def check_django_rq_admin(app_configs=None, **kwargs):
    """queues.E012: django-rq's own admin entry (its Dashboard model, which django-rq registers on
    admin.site unless RQ_SHOW_ADMIN_LINK is False) serves every django-rq view to any staff user:
    none of queues.rq.dashboard's permissions, redaction or refusals apply there."""
    if not apps.is_installed("django_rq"):
        return []
    from django.contrib.admin.sites import all_sites
    from django_rq.models import Dashboard

    found = sorted(site.name for site in all_sites if site.is_registered(Dashboard))
    return [
        checks.Error(
            f"django-rq's admin entry is registered on the admin site {name!r}: its pages under"
            f" {admin_entry_path(name)} serve every django-rq view to any staff user, without"
            " the queue permissions, credential redaction and refusals of the RQ dashboard"
            " (queues.rq.dashboard): a staff user without 'Can view queue status' could read job"
            " arguments, empty a queue or delete jobs.",
            hint="Set RQ_SHOW_ADMIN_LINK = False (django-rq's setting) and mount the dashboard with"
            " path('admin/rq/', include('queues.rq.dashboard')), before path('admin/', …).",
            id="queues.E012",
        )
        for name in found
    ]


def admin_entry_path(site_name):
    """Where the admin site `site_name` serves django-rq's entry (its name, where the site's URLs
    are not in the URLconf)."""
    try:
        return reverse(f"{site_name}:django_rq_dashboard_changelist")
    except Exception:  # NoReverseMatch, or a URLconf that does not import
        return f"the URL named {site_name}:django_rq_dashboard_changelist"
