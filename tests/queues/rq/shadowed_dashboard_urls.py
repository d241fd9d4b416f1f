"""A project's URLconf with the RQ dashboard after admin/, whose catch-all takes its path."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("admin/rq/", include("queues.rq.dashboard")),
]
