"""The Permissions-Policy header (Django sends the other security headers itself), and Django's
debug pages left readable under the Content-Security-Policy in development."""

from django.conf import settings


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
