"""A project's URLconf that routes none of the probe paths (the apps' quick start has none)."""

from django.http import HttpResponseNotFound

urlpatterns: list = []


def not_found(request, exception):
    return HttpResponseNotFound("not here")


handler404 = not_found
