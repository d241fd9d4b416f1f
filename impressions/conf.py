"""Impressions settings, read lazily from django.conf.settings so override_settings works."""

import re

from django.apps import apps
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

# Requests from these User-Agents are no views (searched, case-insensitive). Crawlers of search
# engines, AI, SEO tools, link previews of chat apps and social sites, uptime monitors, headless
# browsers. Not generic HTTP libraries: an app that shows posts to people may use them.
# "(?<!cu)bot": the phone maker Cubot puts its name in ordinary browsers' User-Agents.
DEFAULT_IGNORE_USER_AGENTS = (
    r"(?<!cu)bot|crawl|spider|slurp|archiver|facebookexternalhit|facebookcatalog"
    r"|meta-externalagent|embedly|preview|pinterest|vkshare|whatsapp|mediapartners"
    r"|headlesschrome|lighthouse|pingdom|uptime|ahrefs|semrush|yandex|baidu|bytespider"
    r"|petalbot|perplexity|chatgpt|ccbot|w3c_validator"
)
# Browsers keep a cookie at most 400 days (RFC 6265bis); a longer max-age is cut to that.
MAX_COOKIE_AGE = 400 * 24 * 3600
# Characters RFC 6265 allows in a cookie name (a "token").
COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# Extra time a schedule guard outlives the flush delay: long enough for a busy worker to start the
# flush, short enough that a lost flush message is re-armed by the next request.
GUARD_GRACE_SECONDS = 60

DEFAULTS = {
    "IMPRESSIONS_DEDUP_WINDOW": 300,
    "IMPRESSIONS_FLUSH_DELAY": 300,
    "IMPRESSIONS_FLUSH_BATCH_SIZE": 5000,
    "IMPRESSIONS_REDIS_TIMEOUT": 0.05,
    "IMPRESSIONS_FLUSH_REDIS_TIMEOUT": 10.0,
    "IMPRESSIONS_REDIS_CLUSTER": "auto",
    "IMPRESSIONS_COUNT_ANONYMOUS": True,
    "IMPRESSIONS_KEY_PREFIX": "imp",
    "IMPRESSIONS_SHARDS": 16,
    "IMPRESSIONS_LEDGER_RETENTION_DAYS": 30,
    # The counted model has no sensible default: checks.py reports it missing (impressions.E001).
    "IMPRESSIONS_MODEL": None,
    "IMPRESSIONS_COUNT_FIELD": "impressions",
    "IMPRESSIONS_HISTORY_DAYS": 400,
    "IMPRESSIONS_DASHBOARD_PANELS": [],
    "IMPRESSIONS_ENABLED": True,
    "IMPRESSIONS_IGNORE_USER_AGENTS": None,  # None: DEFAULT_IGNORE_USER_AGENTS
    "IMPRESSIONS_TRUSTED_PROXIES": 0,
    "IMPRESSIONS_VISITOR_COOKIE_NAME": "visitor",
    "IMPRESSIONS_VISITOR_COOKIE_AGE": 365 * 24 * 3600,
    "IMPRESSIONS_VISITOR_COOKIE_SECURE": None,  # None: as SESSION_COOKIE_SECURE
}

# Upper bound of IMPRESSIONS_FLUSH_BATCH_SIZE and of flush_impressions --batch-size.
MAX_FLUSH_BATCH_SIZE = 1_000_000


class Settings:
    """One property per setting; values come from django.conf.settings at access time."""

    def _get(self, name):
        return getattr(django_settings, name, DEFAULTS[name])

    @property
    def REDIS_URL(self):
        return django_settings.REDIS_URL

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
    def REDIS_TIMEOUT(self):
        return self._get("IMPRESSIONS_REDIS_TIMEOUT")

    @property
    def FLUSH_REDIS_TIMEOUT(self):
        return self._get("IMPRESSIONS_FLUSH_REDIS_TIMEOUT")

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
    def HISTORY_DAYS(self):
        return self._get("IMPRESSIONS_HISTORY_DAYS")

    @property
    def ENABLED(self):
        return self._get("IMPRESSIONS_ENABLED")

    @property
    def IGNORE_USER_AGENTS(self):
        pattern = self._get("IMPRESSIONS_IGNORE_USER_AGENTS")
        return DEFAULT_IGNORE_USER_AGENTS if pattern is None else pattern

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

# Bounds keep values inside what Redis (EXPIRE) and datetime arithmetic accept.
ONE_YEAR = 365 * 24 * 3600

# (name, check, what a good value looks like); run by AppConfig.ready() so every command fails on
# a bad value, also when it was set in a settings module rather than the environment.
RULES = [
    ("IMPRESSIONS_DEDUP_WINDOW", lambda v: _whole(v, 0, ONE_YEAR), "a whole number of seconds from 0 to 31536000"),
    ("IMPRESSIONS_FLUSH_DELAY", lambda v: _whole(v, 0, ONE_YEAR), "a whole number of seconds from 0 to 31536000"),
    ("IMPRESSIONS_FLUSH_BATCH_SIZE", lambda v: _whole(v, 1, MAX_FLUSH_BATCH_SIZE), f"a whole number from 1 to {MAX_FLUSH_BATCH_SIZE}"),
    ("IMPRESSIONS_REDIS_TIMEOUT", lambda v: _seconds(v), "a number of seconds > 0 and <= 3600"),
    ("IMPRESSIONS_FLUSH_REDIS_TIMEOUT", lambda v: _seconds(v), "a number of seconds > 0 and <= 3600"),
    ("IMPRESSIONS_REDIS_CLUSTER", lambda v: str(v).lower() in {"auto", "true", "false"}, "auto, true or false"),
    ("IMPRESSIONS_COUNT_ANONYMOUS", lambda v: isinstance(v, bool), "True or False"),
    ("IMPRESSIONS_KEY_PREFIX", lambda v: isinstance(v, str) and v and not set(v) & set("{}"), "a non-empty string without { or }"),
    ("IMPRESSIONS_SHARDS", lambda v: _whole(v, 1, 1024), "a whole number from 1 to 1024"),
    ("IMPRESSIONS_LEDGER_RETENTION_DAYS", lambda v: _whole(v, 1, 36500), "a whole number of days from 1 to 36500"),
    ("IMPRESSIONS_DASHBOARD_PANELS", lambda v: isinstance(v, list | tuple) and all(isinstance(x, str) and "." in x for x in v), "a list of dotted paths of callables"),
    ("IMPRESSIONS_HISTORY_DAYS", lambda v: _whole(v, 0, 36500), "a whole number of days from 0 (keep all) to 36500"),
    ("IMPRESSIONS_ENABLED", lambda v: isinstance(v, bool), "True or False"),
    ("IMPRESSIONS_IGNORE_USER_AGENTS", lambda v: v is None or _regex(v), "a regular expression (empty: ignore none), or None for the default"),
    ("IMPRESSIONS_TRUSTED_PROXIES", lambda v: _whole(v, 0, 32), "the number of proxies in front of the site that append to X-Forwarded-For, 0 to 32"),
    ("IMPRESSIONS_VISITOR_COOKIE_NAME", lambda v: isinstance(v, str) and COOKIE_NAME.fullmatch(v), "a cookie name (letters, digits and !#$%&'*+-.^_`|~)"),
    ("IMPRESSIONS_VISITOR_COOKIE_AGE", lambda v: _whole(v, 1, MAX_COOKIE_AGE), "a whole number of seconds from 1 to 34560000 (400 days)"),
    ("IMPRESSIONS_VISITOR_COOKIE_SECURE", lambda v: v is None or isinstance(v, bool), "True, False, or None to follow SESSION_COOKIE_SECURE"),
]  # fmt: skip


def _whole(value, minimum, maximum):
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= maximum


def _seconds(value):
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 3600


def _regex(value):
    if not isinstance(value, str):
        return False
    try:
        re.compile(value)
    except re.error:
        return False
    return True


def validate():
    """Raise ImproperlyConfigured naming the first impressions setting with a bad value."""
    for name, is_valid, expected in RULES:
        value = getattr(django_settings, name, DEFAULTS[name])
        if not is_valid(value):
            raise ImproperlyConfigured(f"{name}={value!r} is not valid: use {expected}.")


def counted_model():
    """The model class IMPRESSIONS_MODEL names (checks.py reports a bad value at start-up)."""
    return apps.get_model(conf.MODEL)
