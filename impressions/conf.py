"""Impressions settings, read lazily from django.conf.settings so override_settings works."""

import re
from collections.abc import Callable
from dataclasses import dataclass

from django.apps import apps
from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.db.models import QuerySet
from django.dispatch import receiver
from django.utils.formats import number_format
from django.utils.module_loading import import_string
from django.utils.translation import gettext

# Requests from these User-Agents are no views (searched, case-insensitive). Crawlers of search
# engines, AI, SEO tools, link previews of chat apps and social sites, uptime monitors, headless
# browsers. Not generic HTTP libraries: an app that shows posts to people may use them.
# "(?<!cu)bot": the phone maker Cubot puts its name in ordinary browsers' User-Agents. Neither
# "pinterest" nor "baidu": the in-app browsers of Pinterest ("[Pinterest/iOS]") and of Baidu's app
# ("baiduboxapp/… (Baidu; …)") carry them, and their crawlers say "bot" and "spider".
DEFAULT_IGNORE_USER_AGENTS = (
    r"(?<!cu)bot|crawl|spider|slurp|archiver|facebookexternalhit|facebookcatalog"
    r"|meta-externalagent|embedly|iframely|preview|vkshare|whatsapp|mastodon/|cardyb"
    r"|mediapartners|google-inspectiontool|googleother|headlesschrome|lighthouse|pingdom"
    r"|uptime|synthetics|healthcheck|kube-probe|googlehc|ahrefs|semrush|yandex|bytespider"
    r"|petalbot|perplexity|chatgpt|ccbot|w3c_validator"
)
# Browsers keep a cookie at most 400 days (RFC 6265bis); a longer max-age is cut to that.
MAX_COOKIE_AGE = 400 * 24 * 3600
# Characters RFC 6265 allows in a cookie name (a "token").
COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# Extra time a schedule guard outlives the flush delay: long enough for a busy worker to start the
# flush, short enough that a lost flush message is re-armed by the next request.
GUARD_GRACE_SECONDS = 60

# Upper bound of IMPRESSIONS_FLUSH_BATCH_SIZE and of flush_impressions --batch-size.
MAX_FLUSH_BATCH_SIZE = 1_000_000
# Bounds keep values inside what Redis (EXPIRE) and datetime arithmetic accept.
ONE_YEAR = 365 * 24 * 3600
MAX_REDIS_TIMEOUT = 3600
MAX_DAYS = 36500
MAX_SHARDS = 1024
MAX_TRUSTED_PROXIES = 32
# Upper bound of IMPRESSIONS_ROLLUP_PACE: the roll-up rests at most this many times as long as
# each batch took.
MAX_ROLLUP_PACE = 100
# Upper bound of the hourly budgets (Redis counters and Lua numbers stay exact far beyond).
MAX_HOURLY_BUDGET = 1_000_000_000

# The middleware that sets new visitors' cookies; without it anonymous viewers are digests only.
VISITOR_COOKIE_MIDDLEWARE = "impressions.middleware.VisitorCookieMiddleware"


def _whole(minimum, maximum):
    def valid(value):
        return (
            isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= maximum
        )

    return valid


def _seconds(value):
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and 0 < value <= MAX_REDIS_TIMEOUT
    )


def _bool(value):
    return isinstance(value, bool)


def _regex(value):
    if not isinstance(value, str):
        return False
    try:
        re.compile(value)
    except re.error:
        return False
    return True


def _redis_url(value):
    return isinstance(value, str) and value.startswith(("redis://", "rediss://", "unix://"))


# An origin as browsers send it in Origin: scheme://host[:port], no path. Any scheme: an iOS
# app's WKWebView sends capacitor://localhost or ionic://localhost, an extension
# chrome-extension://<id>. ASCII only: browsers send an IDN host in punycode (xn--…).
ORIGIN = re.compile(
    r"[a-z][a-z0-9+.-]*://(?:\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::(?P<port>[0-9]{1,5}))?",
    re.IGNORECASE | re.ASCII,
)
# The ports browsers leave out of Origin.
DEFAULT_PORTS = {"http": "80", "https": "443"}


def _origin(value):
    found = isinstance(value, str) and ORIGIN.fullmatch(value)
    return value == "*" or bool(found and int(found["port"] or 0) <= 65535)


def _origins(value):
    return isinstance(value, list | tuple) and all(_origin(x) for x in value)


def origin_key(origin):
    """`origin` as browsers send it: lower case, without its scheme's default port."""
    origin = origin.lower()
    scheme, _, rest = origin.partition("://")
    host, colon, port = rest.rpartition(":")
    if colon and "]" not in port and DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{host}"
    return origin


def _dotted_paths(value):
    return isinstance(value, list | tuple) and all(isinstance(x, str) and "." in x for x in value)


def _callables(value):
    return _dotted_paths(value) and not any(map(no_callable_reason, value))


def no_callable_reason(path):
    """Why dotted `path` names no callable ("" when it does): a typo in a setting of them is found
    at start-up, not when the page that calls them is opened."""
    try:
        found = import_string(path)
    except Exception as error:  # ImportError, or whatever importing the module raised
        return f"{type(error).__name__}: {error}"
    return "" if callable(found) else f"{type(found).__name__} is not callable"


@dataclass(frozen=True)
class Setting:
    """One setting: its default, the test a value must pass, and what a good value looks like."""

    default: object
    valid: Callable[[object], bool]
    expected: str


# Every setting of the app, its default and its limits: the only place they are defined.
# checks.py reports each value that fails its test (impressions.E005), all in one check run.
SETTINGS = {
    "IMPRESSIONS_REDIS_URL": Setting("redis://127.0.0.1:6379/0", _redis_url, "a redis://, rediss:// or unix:// URL"),
    "IMPRESSIONS_DEDUP_WINDOW": Setting(300, _whole(0, ONE_YEAR), f"a whole number of seconds from 0 to {ONE_YEAR}"),
    "IMPRESSIONS_FLUSH_DELAY": Setting(300, _whole(0, ONE_YEAR), f"a whole number of seconds from 0 to {ONE_YEAR}"),
    "IMPRESSIONS_FLUSH_BATCH_SIZE": Setting(20_000, _whole(1, MAX_FLUSH_BATCH_SIZE), f"a whole number from 1 to {MAX_FLUSH_BATCH_SIZE}"),
    "IMPRESSIONS_FLUSH_PARTS": Setting(1, _whole(1, MAX_SHARDS), f"a whole number from 1 to {MAX_SHARDS}, at most IMPRESSIONS_SHARDS"),
    "IMPRESSIONS_REDIS_TIMEOUT": Setting(0.05, _seconds, f"a number of seconds > 0 and <= {MAX_REDIS_TIMEOUT}"),
    "IMPRESSIONS_FLUSH_REDIS_TIMEOUT": Setting(10.0, _seconds, f"a number of seconds > 0 and <= {MAX_REDIS_TIMEOUT}"),
    "IMPRESSIONS_FLUSH_REPLICA_WAIT": Setting(0.5, _seconds, f"a number of seconds > 0 and <= {MAX_REDIS_TIMEOUT}"),
    "IMPRESSIONS_FLUSH_LOCK_TIMEOUT": Setting(60, lambda v: v is None or _seconds(v), f"a number of seconds > 0 and <= {MAX_REDIS_TIMEOUT}, or None to leave the database's lock_timeout"),
    "IMPRESSIONS_REDIS_CLUSTER": Setting("auto", lambda v: str(v).lower() in {"auto", "true", "false"}, "auto, true or false"),
    "IMPRESSIONS_COUNT_ANONYMOUS": Setting(True, _bool, "True or False"),
    "IMPRESSIONS_KEY_PREFIX": Setting("imp", lambda v: isinstance(v, str) and v and not set(v) & set("{}"), "a non-empty string without { or }"),
    "IMPRESSIONS_SHARDS": Setting(16, _whole(1, MAX_SHARDS), f"a whole number from 1 to {MAX_SHARDS}"),
    "IMPRESSIONS_LEDGER_RETENTION_DAYS": Setting(30, _whole(1, MAX_DAYS), f"a whole number of days from 1 to {MAX_DAYS}"),
    # The counted model has no sensible default: checks.py reports it missing (impressions.E001).
    "IMPRESSIONS_MODEL": Setting(None, lambda v: True, '"app_label.ModelName"'),
    "IMPRESSIONS_COUNT_FIELD": Setting("impressions", lambda v: True, "the name of an integer field"),
    "IMPRESSIONS_ROLLUP_BATCH_SECONDS": Setting(0.05, lambda v: v == 0 or _seconds(v), f"a number of seconds > 0 and <= {MAX_REDIS_TIMEOUT}, or 0 for fixed batches"),
    "IMPRESSIONS_ROLLUP_PACE": Setting(1.0, lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= MAX_ROLLUP_PACE, f"a number from 0 (no rest) to {MAX_ROLLUP_PACE}"),
    "IMPRESSIONS_HISTORY_DAYS": Setting(400, _whole(0, MAX_DAYS), f"a whole number of days from 0 (keep all) to {MAX_DAYS}"),
    "IMPRESSIONS_DASHBOARD_PANELS": Setting([], _callables, "a list of dotted paths of callables"),
    "IMPRESSIONS_ENABLED": Setting(True, _bool, "True or False"),
    # The flush and roll-up tasks' TASKS alias and queue (read once, when the tasks are defined).
    "IMPRESSIONS_TASK_BACKEND": Setting("default", lambda v: isinstance(v, str) and bool(v), "a TASKS alias"),
    "IMPRESSIONS_TASK_QUEUE": Setting("default", lambda v: isinstance(v, str) and bool(v), "a queue name of that backend"),
    # None: DEFAULT_IGNORE_USER_AGENTS.
    "IMPRESSIONS_IGNORE_USER_AGENTS": Setting(None, lambda v: v is None or _regex(v), "a regular expression (empty: ignore none), or None for the default"),
    # Invalid traffic: 0 turns a budget off (the defaults' assumptions: docs/operations/security.md).
    "IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR": Setting(2000, _whole(0, MAX_HOURLY_BUDGET), f"a whole number of new anonymous viewers from 0 (no limit) to {MAX_HOURLY_BUDGET}"),
    "IMPRESSIONS_VIEWER_IMPRESSIONS_PER_HOUR": Setting(10000, _whole(0, MAX_HOURLY_BUDGET), f"a whole number of impressions from 0 (no limit) to {MAX_HOURLY_BUDGET}"),
    "IMPRESSIONS_CROSS_SITE_ORIGINS": Setting([], _origins, 'a list of origins (scheme://host[:port], no path, an IDN host in punycode: "https://app.example.com"), or ["*"] for any'),
    "IMPRESSIONS_TRUSTED_PROXIES": Setting(0, _whole(0, MAX_TRUSTED_PROXIES), f"the number of proxies in front of the site that append to X-Forwarded-For, 0 to {MAX_TRUSTED_PROXIES}"),
    "IMPRESSIONS_VISITOR_COOKIE_NAME": Setting("visitor", lambda v: isinstance(v, str) and bool(COOKIE_NAME.fullmatch(v)), "a cookie name (letters, digits and !#$%&'*+-.^_`|~)"),
    "IMPRESSIONS_VISITOR_COOKIE_AGE": Setting(365 * 24 * 3600, _whole(1, MAX_COOKIE_AGE), f"a whole number of seconds from 1 to {MAX_COOKIE_AGE} (400 days)"),
    # None: as SESSION_COOKIE_SECURE.
    "IMPRESSIONS_VISITOR_COOKIE_SECURE": Setting(None, lambda v: v is None or _bool(v), "True, False, or None to follow SESSION_COOKIE_SECURE"),
}  # fmt: skip


class Settings:
    """One property per setting; values come from django.conf.settings, each read once and kept
    until a setting changes (override_settings sends setting_changed). A request reads several,
    and Django finds a setting left at its default only after an AttributeError, every time."""

    def __init__(self):
        self._values = {}

    def _get(self, name):
        try:
            return self._values[name]
        except KeyError:
            value = self._values[name] = getattr(django_settings, name, SETTINGS[name].default)
            return value

    def forget(self):
        self._values.clear()

    @property
    def REDIS_URL(self):
        """The impression buffer's Redis/Valkey (standalone or cluster mode)."""
        return self._get("IMPRESSIONS_REDIS_URL")

    @property
    def DEDUP_WINDOW(self):
        return self._get("IMPRESSIONS_DEDUP_WINDOW")

    @property
    def FLUSH_DELAY(self):
        return self._get("IMPRESSIONS_FLUSH_DELAY")

    @property
    def GUARD_TTL(self):
        return self.FLUSH_DELAY + GUARD_GRACE_SECONDS

    @property
    def FLUSH_BATCH_SIZE(self):
        return self._get("IMPRESSIONS_FLUSH_BATCH_SIZE")

    @property
    def FLUSH_PARTS(self):
        """Tasks a window's flush is split into, each over its share of the shards."""
        return self._get("IMPRESSIONS_FLUSH_PARTS")

    @property
    def REDIS_TIMEOUT(self):
        return self._get("IMPRESSIONS_REDIS_TIMEOUT")

    @property
    def FLUSH_REDIS_TIMEOUT(self):
        return self._get("IMPRESSIONS_FLUSH_REDIS_TIMEOUT")

    @property
    def FLUSH_LOCK_TIMEOUT(self):
        """Seconds a flush batch waits for a lock (a counted row, a day's) before it gives up, or
        None: the database's own lock_timeout."""
        return self._get("IMPRESSIONS_FLUSH_LOCK_TIMEOUT")

    @property
    def FLUSH_REPLICA_WAIT(self):
        return self._get("IMPRESSIONS_FLUSH_REPLICA_WAIT")

    @property
    def REDIS_CLUSTER(self):
        return str(self._get("IMPRESSIONS_REDIS_CLUSTER")).lower()

    @property
    def COUNT_ANONYMOUS(self):
        return self._get("IMPRESSIONS_COUNT_ANONYMOUS")

    @property
    def KEY_PREFIX(self):
        return self._get("IMPRESSIONS_KEY_PREFIX")

    @property
    def SHARDS(self):
        return self._get("IMPRESSIONS_SHARDS")

    @property
    def LEDGER_RETENTION_DAYS(self):
        return self._get("IMPRESSIONS_LEDGER_RETENTION_DAYS")

    @property
    def MODEL(self):
        """The counted model as "app_label.ModelName"."""
        return self._get("IMPRESSIONS_MODEL")

    @property
    def COUNT_FIELD(self):
        """The name of the counted model's integer field that flushes add to."""
        return self._get("IMPRESSIONS_COUNT_FIELD")

    @property
    def DASHBOARD_PANELS(self):
        """Dotted paths of callables(request) adding panels to the dashboard (see dashboard.py)."""
        return self._get("IMPRESSIONS_DASHBOARD_PANELS")

    @property
    def ROLLUP_BATCH_SECONDS(self):
        """The time a roll-up batch aims at (its rows adapt); 0: batches of a fixed size."""
        return self._get("IMPRESSIONS_ROLLUP_BATCH_SECONDS")

    @property
    def ROLLUP_PACE(self):
        """After each batch the roll-up rests this many times as long as the batch took."""
        return self._get("IMPRESSIONS_ROLLUP_PACE")

    @property
    def HISTORY_DAYS(self):
        return self._get("IMPRESSIONS_HISTORY_DAYS")

    @property
    def ENABLED(self):
        return self._get("IMPRESSIONS_ENABLED")

    @property
    def TASK_BACKEND(self):
        """The TASKS alias the flush and roll-up tasks are enqueued on."""
        return self._get("IMPRESSIONS_TASK_BACKEND")

    @property
    def TASK_QUEUE(self):
        """The queue of that backend they go to."""
        return self._get("IMPRESSIONS_TASK_QUEUE")

    @property
    def IGNORE_USER_AGENTS(self):
        pattern = self._get("IMPRESSIONS_IGNORE_USER_AGENTS")
        return DEFAULT_IGNORE_USER_AGENTS if pattern is None else pattern

    @property
    def IP_NEW_VIEWERS_PER_HOUR(self):
        """New anonymous viewers (visitor cookies issued, or cookie-less digests) an IP address
        may bring per clock hour; 0: no limit."""
        return self._get("IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR")

    @property
    def VIEWER_IMPRESSIONS_PER_HOUR(self):
        """Impressions one viewer may count per clock hour; 0: no limit."""
        return self._get("IMPRESSIONS_VIEWER_IMPRESSIONS_PER_HOUR")

    @property
    def SETS_VISITOR_COOKIE(self):
        """New anonymous visitors get a visitor cookie (the middleware is installed)."""
        return VISITOR_COOKIE_MIDDLEWARE in django_settings.MIDDLEWARE

    @property
    def CROSS_SITE_ORIGINS(self):
        """Origins of other sites whose pages' fetches of counted pages are views (they read the
        answer: the project's CORS lets them), as browsers send them (origin_key); "*": any."""
        return frozenset(
            origin_key(origin) for origin in self._get("IMPRESSIONS_CROSS_SITE_ORIGINS")
        )

    @property
    def TRUSTED_PROXIES(self):
        return self._get("IMPRESSIONS_TRUSTED_PROXIES")

    @property
    def VISITOR_COOKIE_NAME(self):
        return self._get("IMPRESSIONS_VISITOR_COOKIE_NAME")

    @property
    def VISITOR_COOKIE_AGE(self):
        return self._get("IMPRESSIONS_VISITOR_COOKIE_AGE")

    @property
    def VISITOR_COOKIE_SECURE(self):
        secure = self._get("IMPRESSIONS_VISITOR_COOKIE_SECURE")
        return django_settings.SESSION_COOKIE_SECURE if secure is None else secure


conf = Settings()


@receiver(setting_changed, dispatch_uid="impressions-conf-forget")
def _on_setting_changed(setting, **_):
    # Any setting: the kept values are few, and none may outlive a change it depends on.
    conf.forget()


def invalid_settings():
    """(name, value, expected) of each setting whose value fails its test, in SETTINGS order."""
    found = []
    for name, setting in SETTINGS.items():
        value = getattr(django_settings, name, setting.default)
        if not setting.valid(value):
            found.append((name, value, setting.expected))
    return found


def counted_model():
    """The model class IMPRESSIONS_MODEL names (checks.py reports a bad value at start-up)."""
    return apps.get_model(conf.MODEL)


def counts_into(kind, model):
    """Whether instances of model class `kind` are rows of the counted `model`'s table: `model`
    itself, a proxy of it or the model it proxies (one table), a multi-table child of it. Their
    id in that table is counted_id(), not always their pk."""
    return issubclass(kind._meta.concrete_model, model._meta.concrete_model)


def counted_id(instance, model):
    """The id in the counted `model`'s table of `instance` (of a kind that counts_into it): its
    pk, but for a multi-table child with a primary key of its own (not its parent link), the
    parent's id it holds. By pk, such a child's views counted into whichever row has its own
    number for an id."""
    return getattr(instance, model._meta.pk.attname, None)


def counted_rows():
    """Every row of the counted model: a plain QuerySet, past its managers. A
    default manager that hides rows (a blog's `objects` of published posts), or a base manager
    made one (Meta.base_manager_name), would have the flush drop a draft's impressions as those
    of an object that no longer exists, and the dashboard call it deleted."""
    return QuerySet(model=counted_model())


def counted_names():
    """The counted model's (verbose_name, verbose_name_plural): ("post", "posts"), for messages
    and labels; ("object", "objects") while IMPRESSIONS_MODEL names none (the checks say so)."""
    try:
        meta = counted_model()._meta
    except (LookupError, ValueError, AttributeError, TypeError):
        return gettext("object"), gettext("objects")
    return str(meta.verbose_name), str(meta.verbose_name_plural)


def counted_plural():
    return counted_names()[1]


def counted_objects(number):
    """1 post, 1,234 posts: a number of the counted model's objects."""
    singular, plural = counted_names()
    return f"{number_format(number)} {singular if number == 1 else plural}"
