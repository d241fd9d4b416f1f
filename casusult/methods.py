"""GET and HEAD only: any other method is a 405 with an Allow header, as JSON for the API and with
the site's look for its pages, whether or not the request carries a CSRF token."""

from functools import wraps

from django.http import JsonResponse
from django.shortcuts import render
from django.utils.log import log_response
from django.views.decorators.csrf import csrf_exempt

SAFE_METHODS = ("GET", "HEAD")


def safe_methods_only(refuse):
    """A decorator answering methods other than GET and HEAD with refuse(request), made a 405."""

    def decorator(view):
        @wraps(view)
        def only_safe(request, *args, **kwargs):
            if request.method in SAFE_METHODS:
                return view(request, *args, **kwargs)
            response = refuse(request)
            response.status_code = 405
            response["Allow"] = ", ".join(SAFE_METHODS)
            log_response(
                "Method Not Allowed (%s): %s",
                request.method,
                request.path,
                response=response,
                request=request,
            )
            return response

        # Exempt from CSRF: only GET and HEAD reach the view, and they change nothing, so there is
        # nothing for a cross-site request to forge; every other method gets this 405 instead of
        # the CSRF failure page.
        return csrf_exempt(only_safe)

    return decorator


def json_refusal(request):
    return JsonResponse({"error": f"{request.method} is not allowed here: use GET or HEAD"})


def page_refusal(request):
    return render(request, "casusult/method_not_allowed.html", {"method": request.method})


# The JSON API and the probes.
api_safe_methods = safe_methods_only(json_refusal)
# The HTML pages.
page_safe_methods = safe_methods_only(page_refusal)
