"""Sets the visitor cookie that recording made for a new anonymous visitor on the response."""

from .conf import conf
from .viewers import NEW_VISITOR_COOKIE


class VisitorCookieMiddleware:
    """First-party, long-lived, HttpOnly, SameSite=Lax; Secure as IMPRESSIONS_VISITOR_COOKIE_SECURE."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        value = getattr(request, NEW_VISITOR_COOKIE, None)
        if value is not None:
            response.set_cookie(
                conf.VISITOR_COOKIE_NAME,
                value,
                max_age=conf.VISITOR_COOKIE_AGE,
                httponly=True,
                samesite="Lax",
                secure=conf.VISITOR_COOKIE_SECURE,
            )
        return response
