"""django-rq's dashboard over our RQ jobs, with Stop disabled: our worker cannot honour it.

django-rq reads our jobs with the JSON serializer (settings.RQ_QUEUES), and a requeue only puts a
job back on its queue, where our worker's job class runs it like any other. Stop asks the worker
to kill the work-horse process running the job; ours runs tasks in its own process (RQ's
SimpleWorker), so RQ would mark the job stopped while it runs on. Stop answers with a message
instead; a task ends on its own or at JOB_TIMEOUT.
"""

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django_rq import urls as rq_urls
from django_rq import views as rq_views

STOP_DISABLED = (
    "Stop is disabled here: the RQ worker runs each task in its own process, with no work-horse"
    " process to kill. A task ends on its own, or at the backend's JOB_TIMEOUT."
)


@staff_member_required
@require_POST
def stop_job(request, queue_index, job_id):
    messages.error(request, STOP_DISABLED)
    return redirect("django_rq:job_detail", queue_index, job_id)


@staff_member_required
def actions(request, queue_index):
    """django-rq's bulk actions (delete, requeue), refusing stop."""
    if request.method == "POST" and request.POST.get("action") == "stop":
        messages.error(request, STOP_DISABLED)
        back = request.POST.get("next_url", "")
        if not url_has_allowed_host_and_scheme(back, {request.get_host()}):
            back = reverse("django_rq:jobs", args=[queue_index])
        return redirect(back)
    return rq_views.actions(request, queue_index)


app_name = "django_rq"
# Ours first: the first pattern that matches a path wins; the names stay django-rq's for its
# templates.
urlpatterns = [
    path("queues/<int:queue_index>/<str:job_id>/stop/", stop_job, name="stop_job"),
    path("queues/actions/<int:queue_index>/", actions, name="actions"),
    *rq_urls.urlpatterns,
]
