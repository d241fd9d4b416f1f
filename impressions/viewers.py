"""Who views a timeline page, with no server-side state: the user, a visitor cookie, or a digest.

- Logged in: the user id.
- Anonymous with a visitor cookie: the cookie's random id, from the day after the cookie was
  made. On that first day the visitor keeps the digest it arrived with (stored in the cookie), so
  the page that set the cookie and the pages after it are one viewer and a reload counts once.
- Anonymous without cookies (or on its first request): a digest of the day's secret salt, the
  client IP and the User-Agent, as cookie-less analytics do. Neither is stored, only the digest.
- Not viewers at all: requests other than GET (a HEAD or OPTIONS shows nobody anything), browser
  prefetches, a page loaded as an image, script or other subresource or by an opaque (no-cors)
  request of another origin's page (Fetch Metadata), another site's fetch() unless
  IMPRESSIONS_CROSS_SITE_ORIGINS trusts it, a page loaded into a frame its response forbids
  (X-Frame-Options, CSP frame-ancestors: framing.py), and User-Agents matching
  IMPRESSIONS_IGNORE_USER_AGENTS.
- Not counted: a new anonymous viewer beyond its IP address's hourly budget (budgets.py); it gets
  no cookie either.
"""

import functools
import hashlib
import hmac
import re
import secrets
from operator import attrgetter
from typing import NamedTuple

from django.conf import settings
from django.core import signing
from django.db.models import Model

from redis_endpoints import redacting_logger

from . import framing
from .batches import in_bigint
from .budgets import grant_new_viewer
from .conf import conf, counted_id, counted_model, counts_into
from .http import http_request
from .recorder import record_impressions, record_loss
from .redis_client import REDIS_FAILURES
from .salt import daily_salt, utc_day
from .session_users import user_id
from .signals import impressions_ignored

logger = redacting_logger(__name__)

# The request attribute that carries a new visitor cookie to VisitorCookieMiddleware (on the
# HttpRequest, the middleware's, under a wrapper such as Django REST framework's Request).
NEW_VISITOR_COOKIE = "_impressions_new_visitor_cookie"
COOKIE_SIGNING_SALT = "impressions.viewers.visitor"
# The request attribute that carries the ids a view recorded for a page loaded into a frame to
# VisitorCookieMiddleware, which counts them once the response shows whether the frame is allowed:
# a list of (the request the view recorded with, its ids), on the HttpRequest.
PENDING_FRAME_IDS = "_impressions_pending_frame_ids"
# Set on the HttpRequest once VisitorCookieMiddleware has its response: a view that records after
# that (in a streaming response's iterator) is decided at once, as without the middleware.
RESPONSE_SEEN = "_impressions_response_seen"
# Cookie payload "<id>.<day it was made, YYYYMMDD>.<the digest it arrived with>".
COOKIE_PAYLOAD = re.compile(r"([A-Za-z0-9_-]{16})\.(\d{8})\.([0-9a-f]{32})")
# Browsers announce a prefetch (or a prerender, which may never be shown) in one of these.
PREFETCH_HEADERS = ("HTTP_SEC_PURPOSE", "HTTP_PURPOSE", "HTTP_X_PURPOSE", "HTTP_X_MOZ")
PREFETCH_WORDS = ("prefetch", "preview")
# Fetch Metadata (Sec-Fetch-Dest): what the browser does with the answer. These never display a
# page: another site's <img>, <script> or <link rel=stylesheet> pointing at the timeline counted
# each of its visitors as a viewer.
SUBRESOURCE_DESTINATIONS = frozenset(
    {
        "audio",
        "audioworklet",
        "font",
        "image",
        "json",
        "manifest",
        "paintworklet",
        "report",
        "script",
        "serviceworker",
        "sharedworker",
        "style",
        "track",
        "video",
        "worker",
        "xslt",
    }
)


class Viewer(NamedTuple):
    key: str | None  # the viewer key in Redis; None: not counted
    # "method", "bot", "prefetch", "subresource", "cross-site": no view; "rate": beyond a budget
    ignored: str | None = None
    new_cookie: str | None = None  # a visitor cookie to set on the response


NOT_COUNTED = Viewer(None)


def record_request(request, posts):
    """Count `posts` as seen by the request's viewer; never raises into the view.

    A page loaded into a frame is counted once its response is known, by VisitorCookieMiddleware
    (record_frame): whether the browser shows it there depends on the headers of the response
    (framing.py). Without that middleware, it is decided now, from the project's settings."""
    if not conf.ENABLED:
        return None
    try:
        post_ids = served_ids(posts)
        if not post_ids:
            return None
        if (
            framing.is_frame(request)
            and conf.SETS_VISITOR_COOKIE
            and not getattr(http_request(request), RESPONSE_SEEN, False)
        ):
            # The request itself is kept: under Django REST framework, its user is DRF's.
            pending = getattr(http_request(request), PENDING_FRAME_IDS, None)
            if pending is None:
                pending = []
                setattr(http_request(request), PENDING_FRAME_IDS, pending)
            pending.append((request, post_ids))
            return None
        return record_ids(request, post_ids)
    except Exception:
        logger.exception("recording impressions failed; the page is served without them")
        return None


def record_frame(request, response):
    """Count the posts a view recorded for a page loaded into a frame, now that its `response`
    is known (VisitorCookieMiddleware); never raises. The last record call's result."""
    result = None
    for recorded_with, post_ids in getattr(request, PENDING_FRAME_IDS, None) or ():
        result = record_ids(recorded_with, post_ids, response)
    setattr(request, PENDING_FRAME_IDS, None)
    return result


def record_ids(request, post_ids, response=None):
    try:
        if framing.is_frame(request) and framing.refused(request, response):
            impressions_ignored.send(record_request, reason="frame", served=len(post_ids))
            return None
        try:
            viewer = identify(request)
        except (*REDIS_FAILURES, LookupError) as error:  # the day's salt, the address's budget
            return record_loss(len(post_ids), "a new cookie-less viewer", error)
        if viewer.ignored:
            impressions_ignored.send(record_request, reason=viewer.ignored, served=len(post_ids))
            return None
        if viewer.new_cookie:
            setattr(http_request(request), NEW_VISITOR_COOKIE, viewer.new_cookie)
        if viewer.key is None:
            return None
        return record_impressions(viewer.key, post_ids)
    except Exception:
        logger.exception("recording impressions failed; the page is served without them")
        return None


def served_ids(posts):
    """The ids to count of the objects a view passes (or its one object). Left out, with a
    warning, so that the page's others still count: objects without a pk (an unsaved instance, a
    bare id) and instances of another model (their id would count the counted model's object of
    that id)."""
    if hasattr(posts, "pk"):
        posts = [posts]  # a detail view's one object
    posts = list(posts)
    model = counted_model()
    # One check per class on the page, not per object: a page is of one class or a few.
    kinds = set(map(type, posts))
    if len(kinds) == 1 and (attname := counted_attname(*kinds, model)) is not None:
        # The usual page, all of the counted model: its ids read in one loop in C (a Python step
        # and an isinstance() per object were a tenth of a first view's CPU here).
        try:
            post_ids = list(map(attrgetter(attname), posts))
        except AttributeError:  # counted_id's None: the checks below say what went wrong
            pass
        else:
            if None not in post_ids:
                return post_ids
    others = {kind for kind in kinds if issubclass(kind, Model) and not counts_into(kind, model)}
    post_ids = [
        counted_id(post, model) if isinstance(post, Model) else as_id(getattr(post, "pk", None))
        for post in posts
        if type(post) not in others
    ]
    missing = post_ids.count(None)
    no_ids = post_ids.count(NO_ID)
    if others or missing or no_ids:
        post_ids = [post_id for post_id in post_ids if post_id is not None and post_id is not NO_ID]
        reasons = sorted(f"{kind._meta.label} is not {model._meta.label}" for kind in others)
        if missing:
            reasons.append(f"{missing} without a pk (unsaved, or a bare id)")
        if no_ids:
            reasons.append(f"{no_ids} whose pk is no integer id (a bigint's)")
        logger.warning(
            "impressions.record: %d of %d objects left out, not counted: %s",
            len(posts) - len(post_ids),
            len(posts),
            "; ".join(reasons),
        )
    return post_ids


@functools.lru_cache(maxsize=256)
def counted_attname(kind, model):
    """The attribute that holds counted_id() of instances of class `kind`: a model class that
    counts_into `model`; else None (another model's, or no model instance)."""
    if isinstance(kind, type) and issubclass(kind, Model) and counts_into(kind, model):
        return model._meta.pk.attname
    return None


# The pk of an object that is not a model instance (a search hit, a wrapper) which no id is.
NO_ID = object()


def as_id(pk):
    """The id a non-model object's pk counts as (an integer, or its digits), None without a pk,
    else NO_ID: a slug or a UUID failed the whole page in the record call, and an integer past a
    bigint was counted, then set aside by every flush."""
    if pk is None:
        return None
    try:
        number = int(pk)
    except (TypeError, ValueError):
        return NO_ID
    return number if in_bigint(number) else NO_ID


def identify(request):
    """The Viewer of a request; raises a redis error when a new cookie-less viewer needs Redis (the
    day's salt, its address's budget) and Redis does not answer."""
    if request.method != "GET":
        return Viewer(None, ignored="method")
    if is_prefetch(request):
        return Viewer(None, ignored="prefetch")
    if is_subresource(request):
        return Viewer(None, ignored="subresource")
    if is_untrusted_cross_site_fetch(request):
        return Viewer(None, ignored="cross-site")
    if is_ignored_user_agent(request.META.get("HTTP_USER_AGENT", "")):
        return Viewer(None, ignored="bot")
    logged_in = user_id(request)
    if logged_in is not None:
        return Viewer(f"u:{logged_in}")
    if not conf.COUNT_ANONYMOUS:
        return NOT_COUNTED
    today = utc_day()
    resigned = []
    visitor = read_visitor_cookie(request, resigned)
    if visitor is not None:
        visitor_id, day, arrival_digest = visitor
        cookie = resigned[0] if resigned else None
        if day == today:
            return Viewer(f"a:{arrival_digest}", new_cookie=cookie)
        return Viewer(
            f"v:{hashlib.blake2b(visitor_id.encode(), digest_size=12).hexdigest()}",
            new_cookie=cookie,
        )
    ip = client_ip(request)
    digest = client_digest(ip, request.META.get("HTTP_USER_AGENT", ""), today)
    # A new viewer: within its address's hourly budget, or not counted and given no cookie.
    sets_cookie = conf.SETS_VISITOR_COOKIE
    if not grant_new_viewer(ip, today, digest, sets_cookie):
        return Viewer(None, ignored="rate")
    cookie = make_visitor_cookie(today, digest) if sets_cookie else None
    return Viewer(f"a:{digest}", new_cookie=cookie)


def is_prefetch(request):
    meta = request.META
    for header in PREFETCH_HEADERS:
        value = meta.get(header)
        if value and any(word in value.lower() for word in PREFETCH_WORDS):
            return True
    return False


def is_subresource(request):
    """A browser loads the answer where it shows nobody the posts: as an image, script, style…
    (Sec-Fetch-Dest), or as an opaque answer to a no-cors request from another origin's page,
    which that page cannot read (a `fetch(url, {mode: "no-cors"})`). Clients that send no Fetch
    Metadata (apps, scripts, older browsers) are not affected."""
    meta = request.META
    if meta.get("HTTP_SEC_FETCH_DEST", "").lower() in SUBRESOURCE_DESTINATIONS:
        return True
    return meta.get("HTTP_SEC_FETCH_MODE", "").lower() == "no-cors" and meta.get(
        "HTTP_SEC_FETCH_SITE", ""
    ).lower() in ("cross-site", "same-site")


def is_untrusted_cross_site_fetch(request):
    """A script of another site's page fetched the page (`fetch()`, XMLHttpRequest: cors mode)
    and that site is not in IMPRESSIONS_CROSS_SITE_ORIGINS. A simple GET needs no preflight, so
    the request is made whatever the project's CORS says; only the answer's CORS headers, written
    after the view, let the page read it, and without them nobody sees the posts. A sibling site
    (same-site: app.example.com fetching api.example.com) is the project's own and counts."""
    meta = request.META
    if meta.get("HTTP_SEC_FETCH_MODE", "").lower() != "cors":
        return False
    if meta.get("HTTP_SEC_FETCH_SITE", "").lower() != "cross-site":
        return False
    trusted = conf.CROSS_SITE_ORIGINS
    return "*" not in trusted and meta.get("HTTP_ORIGIN", "").lower() not in trusted


def is_ignored_user_agent(user_agent):
    pattern = conf.IGNORE_USER_AGENTS
    if not pattern:
        return False
    if len(user_agent) > 512:  # too long to keep: rare, and searched each time
        return compiled(pattern).search(user_agent) is not None
    return matches(pattern, user_agent)


# Browsers send few distinct User-Agents, and a search of the default pattern through one takes
# tens of microseconds: the answers are kept.
@functools.lru_cache(maxsize=4096)
def matches(pattern, user_agent):
    return compiled(pattern).search(user_agent) is not None


@functools.lru_cache(maxsize=8)
def compiled(pattern):
    return re.compile(pattern, re.IGNORECASE)


def client_ip(request):
    """REMOTE_ADDR, or with N trusted proxies the address the outermost of them saw.

    Each proxy appends the address it received the request from to X-Forwarded-For; entries to
    the left of those N are the client's to write, so they are never read.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    hops = conf.TRUSTED_PROXIES
    if not hops:
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    chain = [part.strip() for part in forwarded.split(",") if part.strip()] + [remote]
    return without_port(chain[max(0, len(chain) - 1 - hops)])


def without_port(entry):
    """The address of an X-Forwarded-For entry. Some proxies (Azure Application Gateway, IIS ARR)
    append the port too, `192.0.2.1:51234` or `[2001:db8::1]:51234`: a client changes it with
    each connection, and as part of the address it made each one a new viewer and budget."""
    if entry.startswith("["):
        end = entry.find("]")
        return entry[1:end] if end > 0 else entry
    if entry.count(":") == 1:  # IPv4 and a port; IPv6 has two colons at least
        return entry.partition(":")[0]
    return entry


def client_digest(ip, user_agent, day):
    """32 hex digits of HMAC(the day's salt, client IP and User-Agent): same client, same day."""
    message = f"{ip}\n{user_agent}"
    return hmac.new(daily_salt(day), message.encode(), hashlib.sha256).hexdigest()[:32]


def make_visitor_cookie(day, arrival_digest):
    visitor_id = secrets.token_urlsafe(12)
    return signing.Signer(salt=COOKIE_SIGNING_SALT).sign(f"{visitor_id}.{day}.{arrival_digest}")


def read_visitor_cookie(request, resigned=None):
    """(id, day made, arrival digest) of a valid visitor cookie, else None (a new one is set).

    A cookie signed with a key of SECRET_KEY_FALLBACKS (SECRET_KEY rotated) is valid, and
    `resigned`, a list, gets it signed with SECRET_KEY, to be set again: the visitor stays the
    same viewer once the old key is dropped from the fallbacks, if it came back meanwhile. (Not
    signed again, every such cookie would make a new viewer then, from its address's budget.)
    """
    value = request.COOKIES.get(conf.VISITOR_COOKIE_NAME)
    if not value or len(value) > 200:
        return None
    try:
        payload = signing.Signer(salt=COOKIE_SIGNING_SALT, fallback_keys=[]).unsign(value)
    except signing.BadSignature:
        if not settings.SECRET_KEY_FALLBACKS:
            return None
        try:  # signed with a key before the current one?
            payload = signing.Signer(salt=COOKIE_SIGNING_SALT).unsign(value)
        except signing.BadSignature:
            return None
        if resigned is not None and COOKIE_PAYLOAD.fullmatch(payload):
            resigned.append(signing.Signer(salt=COOKIE_SIGNING_SALT).sign(payload))
    match = COOKIE_PAYLOAD.fullmatch(payload)
    return match.groups() if match else None
