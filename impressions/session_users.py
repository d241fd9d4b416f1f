"""The user id behind a session cookie, remembered five minutes per process: no query per view.

Resolving `request.user` costs two queries (the session, then the user) that a JSON timeline
would not make otherwise, which was most of what recording cost a logged-in viewer. The answer
(a user id, or None for a session without a login) is kept per session key for TTL_SECONDS.
A login or logout changes the session key, so it is seen at once; a session ended on the server
while the browser still sends its key (a password changed elsewhere) is seen within the TTL.

Only a user that comes from the session is remembered: the lazy `request.user` of Django's
AuthenticationMiddleware, not resolved yet. A user another middleware of the project set (a
token's, an API key's) is read as it is, as is one resolved already (no query more). Under
Django REST framework the user is what DRF's authenticators found (a token, a JWT, or the session through SessionAuthentication),
resolved already by the view: it is read as it is, neither taken from nor kept in this memory.
Remembered, a token user was the anonymous viewer of the session cookie the same browser sent,
and an anonymous request of that session later counted as the token user.
"""

import hashlib
import math
import threading
import time
from collections import OrderedDict

from django.conf import settings
from django.utils.functional import SimpleLazyObject, empty

from .http import is_wrapped

# As long as the default de-duplication window: a viewer browsing for a while is resolved once.
TTL_SECONDS = 300
MAX_ENTRIES = 10_000

# Where the lazy user of Django's AuthenticationMiddleware is made (from_the_session).
AUTH_MIDDLEWARE = "django.contrib.auth.middleware"
_lock = threading.Lock()
_entries = OrderedDict()  # session key digest -> (user id or None, monotonic time resolved)
_lapses_at = math.inf  # when the oldest entry's TTL is over: before it, nothing to forget


def user_id(request):
    """The id of the request's logged-in user, or None; `request.user` only on a cache miss.

    Every call first forgets the sessions past their TTL (a float compared until one is): not
    only a new session's, so that a process then serving anonymous viewers, or sessions it
    knows, does not keep a logged-in user's id for as long as that lasts."""
    now = time.monotonic()
    if now >= _lapses_at:
        with _lock:
            _forget_lapsed(now)
    user = getattr(request, "user", None)
    if user is None:
        return None
    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not session_key or is_wrapped(request) or not from_the_session(request, user):
        # No session: an AnonymousUser costs no query. Django REST framework's user, or one a
        # middleware of the project set (a token, an API key): not necessarily the session's.
        # One resolved already costs nothing more to read.
        return user.pk if user.is_authenticated else None
    # A digest, not the key itself: this memory holds no usable session key.
    digest = hashlib.blake2b(session_key.encode(), digest_size=16).digest()
    entry = _entries.get(digest)
    if entry is not None and now - entry[1] < TTL_SECONDS:
        return entry[0]
    resolved = user.pk if user.is_authenticated else None
    with _lock:
        _entries[digest] = (resolved, now)
        _entries.move_to_end(digest)
        while len(_entries) > MAX_ENTRIES:
            _entries.popitem(last=False)
        _forget_lapsed(now)
    return resolved


def _forget_lapsed(now):
    """Drop the entries past their TTL, oldest first, and note when the next one is (the lock
    held): not when 10,000 newer ones came (a user id, kept for days on a quiet process)."""
    global _lapses_at
    while _entries:
        resolved_at = next(iter(_entries.values()))[1]
        if now - resolved_at < TTL_SECONDS:
            _lapses_at = resolved_at + TTL_SECONDS
            return
        _entries.popitem(last=False)
    _lapses_at = math.inf


def from_the_session(request, user):
    """`user` is the lazy one Django's AuthenticationMiddleware set, not resolved yet: the
    session's. Another middleware may replace it (request.user = a token's user, at once or
    lazily), and one resolved already is read as it is."""
    return (
        isinstance(user, SimpleLazyObject)
        and user._wrapped is empty
        and getattr(user._setupfunc, "__module__", None) == AUTH_MIDDLEWARE
        and not hasattr(request, "_cached_user")
    )


def forget():
    """Drop what this process remembers (tests)."""
    global _lapses_at
    with _lock:
        _entries.clear()
        _lapses_at = math.inf
