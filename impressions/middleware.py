"""Sets the visitor cookie that recording made for a new anonymous visitor on the response, and
counts a page loaded into a frame once its response shows whether the browser will show it."""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.utils.cache import patch_vary_headers

from .conf import conf
from .redis_client import release_thread_connections
from .viewers import NEW_VISITOR_COOKIE, PENDING_FRAME_IDS, RESPONSE_SEEN, record_frame


class VisitorCookieMiddleware:
    """First-party, long-lived, HttpOnly, SameSite=Lax; Secure as IMPRESSIONS_VISITOR_COOKIE_SECURE.

    Sync and async: under ASGI it awaits the views below it and sets the cookie in the event
    loop (that does no I/O), with no thread hop either way; only a page loaded into a frame that
    a view recorded is counted in Django's thread for the request's sync work (session, Redis).
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
        response = self.get_response(request)
        setattr(request, RESPONSE_SEEN, True)
        if getattr(request, PENDING_FRAME_IDS, None):
            record_pending_frame(request, response)
        return set_visitor_cookie(request, response)

    async def __acall__(self, request):
        response = await self.get_response(request)
        setattr(request, RESPONSE_SEEN, True)
        if getattr(request, PENDING_FRAME_IDS, None):
            # Session and Redis calls block: in Django's thread for the request's sync work.
            await sync_to_async(record_pending_frame)(request, response)
        return set_visitor_cookie(request, response)


def record_pending_frame(request, response):
    try:
        record_frame(request, response)
    finally:
        if isinstance(request, ASGIRequest):  # as impressions.record does (api.py)
            release_thread_connections()


def set_visitor_cookie(request, response):
    """The cookie of a visitor that recording made for this request, set on `response`.

    With `Vary: Cookie`, as Django's session middleware sets with its cookie: a cache (Django's
    own per-site cache among them) then keeps no response that sets it, and does not hand one new
    visitor's cookie to every visitor after it, who would all be one viewer from then on.
    """
    value = getattr(request, NEW_VISITOR_COOKIE, None)
    if value is not None:
        patch_vary_headers(response, ("Cookie",))
        response.set_cookie(
            conf.VISITOR_COOKIE_NAME,
            value,
            max_age=conf.VISITOR_COOKIE_AGE,
            httponly=True,
            samesite="Lax",
            secure=conf.VISITOR_COOKIE_SECURE,
        )
    return response
