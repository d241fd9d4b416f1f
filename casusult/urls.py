"""The site's URLs: the timeline (HTML and JSON), accounts, the admin and django-rq's dashboard."""

from django.contrib import admin
from django.urls import include, path

from . import health, views

urlpatterns = [
    path("", views.timeline, name="timeline"),
    path("api/timeline/", views.timeline_api, name="timeline-api"),
    path("favicon.ico", views.favicon, name="favicon"),
    # Before Django's account URLs: its logout answers a GET with an empty 405.
    path("accounts/logout/", views.LogoutView.as_view(), name="logout"),
    path("accounts/", include("django.contrib.auth.urls")),
    # django-rq's dashboard (staff only), before admin/ whose catch-all would answer first.
    path("admin/rq/", include("queues.rq.dashboard")),
    path("admin/", admin.site.urls),
    # casusult.health.ProbeMiddleware answers these first (any Host, plain HTTP); the routes keep
    # them reversible and documented in one place.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
]
