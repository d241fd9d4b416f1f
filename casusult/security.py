"""The Permissions-Policy header (Django sends the other security headers itself), Django's
debug pages left readable under the Content-Security-Policy in development, and the admin's
malformed requests answered with a 4xx instead of Django's 500."""

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import BadRequest, ValidationError
from django.http import Http404


def permissions_policy_header(policy):
    """`camera=(), geolocation=(self)` for {"camera": [], "geolocation": ["self"]}."""
    parts = []
    for feature, origins in policy.items():
        if "*" in origins:
            parts.append(f"{feature}=*")
            continue
        allowed = " ".join(origin if origin == "self" else f'"{origin}"' for origin in origins)
        parts.append(f"{feature}=({allowed})")
    return ", ".join(parts)


class PermissionsPolicyMiddleware:
    """Adds Permissions-Policy from settings.PERMISSIONS_POLICY ({} or unset: no header)."""

    def __init__(self, get_response):
        self.get_response = get_response
        self._built = (None, "")  # (the policy, its header): built again only when it changes

    def __call__(self, request):
        response = self.get_response(request)
        policy = getattr(settings, "PERMISSIONS_POLICY", None)
        if policy and "Permissions-Policy" not in response:
            if self._built[0] is not policy:
                self._built = (policy, permissions_policy_header(policy))
            response["Permissions-Policy"] = self._built[1]
        return response


# Django's technical 404 and 500 pages (DEBUG only) say this; ours never do.
TECHNICAL_PAGE_MARK = b"<code>DEBUG = True</code>"


class DebugPagesWithoutPolicyMiddleware:
    """settings.dev only: Django's technical 404 and 500 pages carry an inline style and script
    without the CSP nonce, which the policy would refuse, leaving them unstyled and broken.
    Those pages, and only they, are sent without the policy. Place it after
    ContentSecurityPolicyMiddleware, which then sees the opt-out."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            settings.DEBUG
            and response.status_code in (404, 500)
            and not response.streaming
            and TECHNICAL_PAGE_MARK in response.content
        ):
            response._csp_config = {}  # an empty policy: ContentSecurityPolicyMiddleware skips it
        return response


class AdminMalformedRequestMiddleware:
    """Requests that Django's admin answers with a 500, answered with a 4xx before its views run:

    - a NUL byte in the path or the query string of an admin page (400): PostgreSQL refuses a NUL
      in text, so an object id (`/admin/impressions/flush/%00/change/`), a changelist filter
      (`?body=%00`) or the "view on site" shortcut compared with a text column raised DataError;
    - "view on site" (`/admin/r/<content type>/<id>/`) of a model without `get_absolute_url`
      (404, as Django answers once it has the object): Django looked the object up first, and
      django-rq's Dashboard model has no table (relation "django_rq_dashboard" does not exist).

    Only pages of admin sites (app name `admin`); the public pages answer malformed input
    themselves (the timeline's cursor: a 400 in the API's JSON).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        match = request.resolver_match
        if match is None or "admin" not in match.app_names:
            return None
        if "\x00" in request.path or any(
            "\x00" in key or any("\x00" in value for value in values)
            for key, values in request.GET.lists()
        ):
            raise BadRequest("A NUL byte in the path or query string of an admin page.")
        user = getattr(request, "user", None)
        staff = user is not None and user.is_active and user.is_staff  # others: to the login
        if match.url_name == "view_on_site" and staff and not has_site_pages(view_kwargs):
            raise Http404("That object has no page on the site.")
        return None


def has_site_pages(view_kwargs):
    """False when the content type of "view on site" names a model without `get_absolute_url`
    (Django's shortcut would answer 404 for it, after looking the object up)."""
    try:
        content_type = ContentType.objects.get_for_id(view_kwargs["content_type_id"])
    except (ContentType.DoesNotExist, ValueError, ValidationError):
        return True  # Django's shortcut answers 404 itself
    model = content_type.model_class()
    return model is not None and hasattr(model, "get_absolute_url")
