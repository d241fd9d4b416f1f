"""django-rq's dashboard over our RQ jobs, behind Django permissions, with Stop disabled.

Every django-rq view is wrapped here (django-rq itself is not patched):

- viewing any page needs `queues.view_queuestatus` (as the queue status page does), changing
  anything (empty a queue, delete, requeue, enqueue, any bulk action and its confirmation page)
  `queues.change_queuestatus`; a staff user without them gets 403, anyone else the admin login;
- every redirect target (`next_url`, the Referer a confirmation page sends back to, the answer's
  Location) must pass url_has_allowed_host_and_scheme for this request's host and scheme;
- a queue index, job id (in the URL or posted), worker key or scheduler that does not exist is a
  404, not django-rq's 500;
- a Redis that cannot be reached answers 503 with one line saying so, not a 500;
- every page passes through redis_endpoints.redact_text: whatever django-rq prints (connection
  details, job arguments, tracebacks), no URL's credentials reach the browser.

django-rq's metrics keep the registry a `name[]` filter made in place of the whole one, so one
filtered request emptied that process's RQ metrics for every later scrape: here the filter applies
to its own answer only.

Stop asks the worker to kill the work-horse process running the job; ours runs tasks in its own
process (RQ's SimpleWorker), so RQ would mark the job stopped while it runs on. Stop answers with a
message instead; a task ends on its own or at JOB_TIMEOUT.
"""

from functools import cache, wraps

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django_rq import stats_views
from django_rq import urls as rq_urls
from django_rq import views as rq_views
from django_rq.queues import get_queue_by_index
from django_rq.settings import get_queues_list
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Job, parse_job_id, validate_job_id
from rq.worker import Worker

from redis_endpoints import redact_text

VIEW_PERMISSION = "queues.view_queuestatus"
CHANGE_PERMISSION = "queues.change_queuestatus"
# django-rq's URL names of the pages that change something (the rest only show).
CHANGING_VIEWS = frozenset(
    {
        "clear",
        "requeue_all",
        "delete_failed_jobs",
        "delete_job",
        "requeue_job",
        "enqueue_job",
        "stop_job",
        "confirm_action",
        "actions",
    }
)
# The POST fields of the bulk actions (the confirmation page, then the action) that name jobs.
POSTED_JOB_IDS = ("_selected_action", "job_ids")
# Views with their own authentication (django-rq's API token, or a staff session).
API_VIEWS = frozenset({"home_json", "metrics"})

STOP_DISABLED = gettext_lazy(
    "Stop is disabled here: the RQ worker runs each task in its own process, with no work-horse"
    " process to kill. A task ends on its own, or at the backend's JOB_TIMEOUT."
)


def may_view(user):
    return user.has_perm(VIEW_PERMISSION) or user.has_perm(CHANGE_PERMISSION)


def may_change(user):
    return user.has_perm(CHANGE_PERMISSION)


def is_safe_target(request, url):
    """Whether redirecting to `url` keeps the user on this site (and on HTTPS if they were)."""
    return url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )


def jobs_page(queue_index):
    return reverse("django_rq:jobs", args=[queue_index])


def guard_redirect_inputs(request, queue_index):
    """Replace a foreign `next_url` (POST) or Referer by the queue's jobs page."""
    posted = request.POST if request.method == "POST" else {}
    if "next_url" in posted and not is_safe_target(request, posted["next_url"]):
        request.POST = posted.copy()
        request.POST["next_url"] = jobs_page(queue_index)
    referer = request.META.get("HTTP_REFERER")
    if referer and not is_safe_target(request, referer):
        del request.META["HTTP_REFERER"]


def ensure_exists(queue_index=None, job_id=None, key=None):
    """Http404 unless the queue (and the job, the worker) the URL names exist."""
    if queue_index is None:
        return
    if not 0 <= queue_index < len(get_queues_list()):
        raise Http404(gettext("No such queue."))
    connection = get_queue_by_index(queue_index).connection
    if job_id is not None and not Job.exists(parse_job_id(job_id), connection):
        raise Http404(gettext("No such job."))
    if key is not None:
        try:
            found = Worker.find_by_key(key, connection=connection)
        except ValueError:  # not an RQ worker key
            found = None
        if found is None:
            raise Http404(gettext("No such worker."))


def ensure_posted_jobs_named(request):
    """Http404 if a posted job id is none RQ can fetch (it would raise ValueError: a 500)."""
    if request.method != "POST":
        return
    for field in POSTED_JOB_IDS:
        for job_id in request.POST.getlist(field):
            try:
                validate_job_id(parse_job_id(job_id))
            except ValueError:
                raise Http404(gettext("No such job.")) from None


def redacted(response):
    """The response with credentials in any URL it prints hidden."""
    kind = response.get("Content-Type", "")
    if getattr(response, "streaming", False) or not kind.startswith(("text/", "application/json")):
        return response
    charset = response.charset or "utf-8"
    response.content = redact_text(response.content.decode(charset)).encode(charset)
    return response


UNREACHABLE = (RedisConnectionError, RedisTimeoutError)


def unreachable(error):
    return f"The RQ Redis (RQ_QUEUES) cannot be reached: {redact_text(str(error))}"


def guarded(name, view):
    """django-rq's view `name` behind the permissions, checks and redaction described above."""
    if name in API_VIEWS:

        @wraps(view)
        def api_view(request, *args, **kwargs):
            # A session of a staff user needs the view permission; the API token works as before.
            user = request.user
            if user.is_authenticated and user.is_staff and not may_view(user):
                return JsonResponse({"error": True, "description": "Forbidden"}, status=403)
            try:
                return redacted(view(request, *args, **kwargs))
            except UNREACHABLE as error:
                return JsonResponse({"error": True, "description": unreachable(error)}, status=503)

        return api_view

    allowed = may_change if name in CHANGING_VIEWS else may_view

    @wraps(view)
    def page(request, *args, **kwargs):
        if not allowed(request.user):
            raise PermissionDenied
        try:
            return checked_page(request, *args, **kwargs)
        except UNREACHABLE as error:
            return HttpResponse(unreachable(error), status=503, content_type="text/plain")

    def checked_page(request, *args, **kwargs):
        queue_index = kwargs.get("queue_index", kwargs.get("scheduler_index"))
        ensure_exists(queue_index, kwargs.get("job_id"), kwargs.get("key"))
        ensure_posted_jobs_named(request)
        if queue_index is not None:
            guard_redirect_inputs(request, queue_index)
        try:
            response = view(request, *args, **kwargs)
        except (IndexError, NoSuchJobError) as error:  # whatever the checks above did not foresee
            raise Http404(str(error)) from None
        except ImproperlyConfigured:  # the schedulers page needs rq-scheduler, which we do not use
            raise Http404(
                gettext("No scheduler here: RQ's own scheduler runs in the worker.")
            ) from None
        location = response.get("Location")
        if location is not None and not is_safe_target(request, location):
            response["Location"] = reverse("django_rq:home")
        return redacted(response)

    return staff_member_required(page)


@require_POST
def stop_job(request, queue_index, job_id):
    messages.error(request, STOP_DISABLED)
    return redirect("django_rq:job_detail", queue_index, job_id)


def actions(request, queue_index):
    """django-rq's bulk actions (delete, requeue), refusing stop."""
    if request.method == "POST" and request.POST.get("action") == "stop":
        messages.error(request, STOP_DISABLED)
        return redirect(request.POST.get("next_url") or jobs_page(queue_index))
    return rq_views.actions(request, queue_index)


@never_cache
def worker_details(request, queue_index, key):
    """django-rq's, reading the worker's current job as its queue does (our job class, JSON):
    django-rq's finds the worker with RQ's defaults, so a running job was read with pickle and
    the page was a 500 while the worker ran a task."""
    queue = get_queue_by_index(queue_index)
    worker = Worker.find_by_key(
        key, connection=queue.connection, job_class=queue.job_class, serializer=queue.serializer
    )
    if worker is None:
        raise Http404(gettext("No such worker."))
    context = {
        **rq_views.each_context(request),
        "queue": queue,
        "queue_index": queue_index,
        "worker": worker,
        "queue_names": ", ".join(worker.queue_names()),
        "job": current_job(worker),
        "total_working_time": worker.total_working_time,
    }
    return render(request, "django_rq/worker_details.html", context)


def current_job(worker):
    """The job `worker` runs, or None: also when it was deleted meantime (the page was a 404 of
    the job, not the worker's) or its data cannot be read (a planted job, being refused: the
    page's func_name raised, a 500)."""
    try:
        job = worker.get_current_job()
        if job is not None:
            job.func_name  # noqa: B018 (reads the job's data, as the page does)
    except (NoSuchJobError, DeserializationError):
        return None
    return job


@never_cache
def prometheus_metrics(request):
    """django-rq's metrics; with `name[]`, only those, from a registry this answer alone filters."""
    names = request.GET.getlist("name[]")
    client = stats_views.prometheus_client
    if not names or client is None or not stats_views.is_authorized(request):
        return stats_views.prometheus_metrics(request)
    restricted = rq_metrics_registry().restricted_registry(names)
    encoder, content_type = client.exposition.choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(restricted), headers={"Content-Type": content_type})


@cache
def rq_metrics_registry():
    registry = stats_views.prometheus_client.CollectorRegistry(auto_describe=True)
    registry.register(stats_views.RQCollector())
    return registry


# Ours in place of django-rq's, under the same names (its templates reverse them).
REPLACED = {
    "stop_job": stop_job,
    "actions": actions,
    "worker_details": worker_details,
    "metrics": prometheus_metrics,
}

app_name = "django_rq"
urlpatterns = [
    URLPattern(
        pattern.pattern,
        guarded(pattern.name, REPLACED.get(pattern.name, pattern.callback)),
        pattern.default_args,
        pattern.name,
    )
    for pattern in rq_urls.urlpatterns
]
