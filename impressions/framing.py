"""Whether the browser shows a counted page in the frame it was loaded into.

A page loaded into a frame (Fetch Metadata `Sec-Fetch-Dest`: iframe, frame, embed, object,
fencedframe) is shown only if its response lets that frame's parent show it. Another site's hidden
`<iframe>` of a page the site forbids to frame counted each of that site's visitors as a viewer of
a page nobody saw. The decision needs the response: the headers it carries, or those Django's
XFrameOptionsMiddleware and ContentSecurityPolicyMiddleware will add to it, as they would.

- An enforced Content-Security-Policy with `frame-ancestors` decides, and X-Frame-Options is then
  ignored (as browsers do): `'none'` refuses every frame, only `'self'` every frame but a
  same-origin one (Sec-Fetch-Site), any other source (a host, a scheme, `*`) is taken as allowed:
  the request does not name its parent, and the project lets some other site frame it.
- Otherwise X-Frame-Options: DENY refuses every frame, SAMEORIGIN all but same-origin ones,
  conflicting values every frame; none (a view decorated `xframe_options_exempt`, a project
  without the middleware) or another value (ALLOW-FROM, which browsers ignore) allows framing.
- A fenced frame also needs `Supports-Loading-Mode: fenced-frame`, which Django never sends.
"""

import functools

from django.conf import settings
from django.http import HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.csp import ContentSecurityPolicyMiddleware
from django.utils.csp import CSP, build_policy
from django.utils.module_loading import import_string

FRAME_DESTINATIONS = frozenset({"iframe", "frame", "embed", "object", "fencedframe"})


def is_frame(request):
    return request.META.get("HTTP_SEC_FETCH_DEST", "").lower() in FRAME_DESTINATIONS


def refused(request, response=None):
    """The browser will not show `response` in the frame `request` loads it into. `response`
    None: decided as the project's settings would for a response of its own, which is all a
    project without VisitorCookieMiddleware can know when the view records."""
    if response is None:
        response = HttpResponse()
    same_origin = request.META.get("HTTP_SEC_FETCH_SITE", "").lower() == "same-origin"
    fenced = request.META.get("HTTP_SEC_FETCH_DEST", "").lower() == "fencedframe"
    if fenced and "fenced-frame" not in response.get("Supports-Loading-Mode", "").lower():
        return True
    ancestors = frame_ancestors(request, response)
    if ancestors is not None:
        return refused_by_frame_ancestors(ancestors, same_origin)
    values = {
        value.strip().lower()
        for value in x_frame_options(request, response).split(",")
        if value.strip()
    }
    if len(values) > 1:
        return bool(values & {"deny", "sameorigin", "allowall"})
    return values == {"deny"} or (values == {"sameorigin"} and not same_origin)


def refused_by_frame_ancestors(policies, same_origin):
    """`policies`: the source lists of `frame-ancestors` of each enforced policy; each must
    allow the frame."""
    for sources in policies:
        sources = {source.lower() for source in sources} - {CSP.NONE}
        if not sources or (sources == {CSP.SELF} and not same_origin):
            return True
    return False


def frame_ancestors(request, response):
    """The `frame-ancestors` source lists of the enforced policies the response carries or
    ContentSecurityPolicyMiddleware will give it; None: none has the directive."""
    header = response.get(CSP.HEADER_ENFORCE)
    if header is None and middleware_installed(ContentSecurityPolicyMiddleware):
        # As the middleware does: a view's csp_override config, else SECURE_CSP, rendered as
        # it renders it (a directive's value may be one string, a set, None or False: left out).
        config = getattr(response, "_csp_config", settings.SECURE_CSP)
        header = build_policy(config) if config else None
    found = []
    for policy in (header or "").split(","):
        for directive in policy.split(";"):
            name, *sources = directive.split() or [""]
            if name.lower() == "frame-ancestors":
                found.append(sources)
                break  # a directive's second appearance in a policy is ignored
    return found or None


def x_frame_options(request, response):
    """The X-Frame-Options the response carries, or the one XFrameOptionsMiddleware will give it
    ("": none)."""
    value = response.get("X-Frame-Options")
    if value is not None:
        return value
    if getattr(response, "xframe_options_exempt", False):
        return ""
    middleware = middleware_installed(XFrameOptionsMiddleware)
    if middleware is None:
        return ""
    return middleware.get_xframe_options_value(request, response) or ""


def middleware_installed(kind):
    """An instance of the first class of MIDDLEWARE that is `kind` or a subclass, else None."""
    return installed(tuple(settings.MIDDLEWARE), kind)


@functools.lru_cache(maxsize=8)
def installed(middleware, kind):
    for path in middleware:
        try:
            found = import_string(path)
        except ImportError:
            continue
        if isinstance(found, type) and issubclass(found, kind):
            return found(lambda request: None)
    return None
