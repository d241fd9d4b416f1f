"""Sets the visitor cookie that recording made for a new anonymous visitor on the response."""

from django.utils.deprecation import MiddlewareMixin

from .conf import conf
from .viewers import NEW_VISITOR_COOKIE


class VisitorCookieMiddleware(MiddlewareMixin):
    """First-party, long-lived, HttpOnly, SameSite=Lax; Secure as IMPRESSIONS_VISITOR_COOKIE_SECURE.

    Sync and async (MiddlewareMixin, as Django's own middleware): under ASGI it keeps an async
    stack async, with no thread hop around the views below it.
    """

    def process_response(self, request, response):
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
