"""Sets the visitor cookie that recording made for a new anonymous visitor on the response."""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from .conf import conf
from .viewers import NEW_VISITOR_COOKIE


class VisitorCookieMiddleware:
    """First-party, long-lived, HttpOnly, SameSite=Lax; Secure as IMPRESSIONS_VISITOR_COOKIE_SECURE.

    Sync and async: under ASGI it awaits the views below it and sets the cookie in the event
    loop (it does no I/O), with no thread hop either way.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        return set_visitor_cookie(request, self.get_response(request))

    async def __acall__(self, request):
        return set_visitor_cookie(request, await self.get_response(request))


def set_visitor_cookie(request, response):
    """The cookie of a visitor that recording made for this request, set on `response`."""
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
