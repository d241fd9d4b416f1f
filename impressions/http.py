"""The HttpRequest under a request wrapper.

Django REST framework hands its views a `rest_framework.request.Request` that holds the
HttpRequest in `_request` and reads through to it; what VisitorCookieMiddleware reads (the
new visitor cookie, the ids of a page loaded into a frame) and what Django's handler made (an
ASGIRequest) are the HttpRequest's, not the wrapper's.
"""


def http_request(request):
    """The HttpRequest that `request` wraps (Django REST framework's Request), else `request`."""
    return getattr(request, "_request", request)


def is_wrapped(request):
    """`request` wraps an HttpRequest: its `user` is the wrapper's (DRF's authenticators')."""
    return http_request(request) is not request
