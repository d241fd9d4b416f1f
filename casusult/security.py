"""The Permissions-Policy header (Django sends the other security headers itself)."""

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
