from django.contrib import admin
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.timeline, name="timeline"),
    path("api/timeline/", views.timeline_api, name="timeline-api"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
