"""Typed readers for environment variables; a bad value fails start-up naming the variable.

They check that a value parses (a number, a boolean, a URL); the apps' system checks judge
whether it is in range, naming the setting (the same name where a variable maps to a setting;
for a TASKS option, casusult.E002 names the variable too).
"""

import os
import re
import urllib.parse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from redis_endpoints import credentials_misread, has_unreadable_database, redact, redact_text

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}
UNSET = object()


def _raw(name, default):
    value = os.environ.get(name)
    if value is None:
        if default is UNSET:
            raise ImproperlyConfigured(f"The environment variable {name} is required.")
        return None
    return value.strip()


def env_str(name, default=UNSET):
    value = _raw(name, default)
    return default if value is None else value


def env_bool(name, default=UNSET):
    value = _raw(name, default)
    if value is None:
        return default
    if value.lower() in TRUE_WORDS:
        return True
    if value.lower() in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(
        f"The environment variable {name}={value!r} is not a boolean (use true or false)."
    )


def env_int(name, default=UNSET, *, minimum=None, maximum=None):
    value = _raw(name, default)
    if value is None:
        return default
    try:
        if not value.isascii():  # int() would take other scripts' digits
            raise ValueError(value)
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"The environment variable {name}={value!r} is not a whole number."
        ) from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ImproperlyConfigured(f"The environment variable {name}={number} must be {bounds}.")
    return number


def env_float(name, default=UNSET, *, minimum=None, maximum=None):
    value = _raw(name, default)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"The environment variable {name}={value!r} is not a number."
        ) from None
    if number != number:  # nan
        raise ImproperlyConfigured(f"The environment variable {name}={value!r} is not a number.")
    if minimum is not None and not number >= minimum:
        raise ImproperlyConfigured(
            f"The environment variable {name}={number} must be >= {minimum}."
        )
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(
            f"The environment variable {name}={number} must be <= {maximum}."
        )
    return number


def env_list(name, default=UNSET):
    value = _raw(name, default)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


# What Django compares an ALLOWED_HOSTS entry with: the Host header's name, lower-cased, without
# its port or trailing dot (django.http.request.split_domain_port). An entry of another form (an
# IPv6 address without brackets, a port, a scheme, a "*." prefix, a trailing dot) matches no
# request, and a site given only such entries answers 400 to every page, its probes healthy.
HOST_NAME = re.compile(r"[a-z0-9.-]*[a-z0-9-]|\[[a-f0-9]*:[a-f0-9.:]+\]")


def env_hosts(name, default=UNSET):
    hosts = env_list(name, default)
    for host in hosts:
        if host != "*" and not HOST_NAME.fullmatch(host.removeprefix(".").lower()):
            raise ImproperlyConfigured(
                f"The environment variable {name} lists {host!r}, which no request's Host header"
                " can match: give host names and addresses without scheme, port or trailing dot,"
                " an IPv6 address in brackets ([2001:db8::1]), .example.com for a domain and its"
                " subdomains."
            )
    return hosts


# What LOG_LEVEL may say: the levels Python's logging and gunicorn's --log-level both take.
LOG_LEVELS = {"debug", "info", "warning", "error", "critical"}


def env_choice(name, choices, default=UNSET):
    value = _raw(name, default)
    if value is None:
        return default
    if value.lower() not in choices:
        raise ImproperlyConfigured(
            f"The environment variable {name}={value!r} is not one of: {', '.join(sorted(choices))}."
        )
    return value.lower()


def env_database(name="DATABASE_URL", default=UNSET):
    value = _raw(name, default)
    url = default if value is None else value
    if problem := database_url_problem(url):
        raise ImproperlyConfigured(
            f"The environment variable {name} {problem}: it must be a URL such as"
            " postgres://USER:PASSWORD@HOST:PORT/NAME or sqlite:///PATH."
        )
    try:
        database = dj_database_url.parse(
            url,
            # Seconds a thread keeps its connection; the ASGI app sets 0 (casusult/asgi.py).
            conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
            conn_health_checks=True,
        )
    except ValueError as error:
        raise ImproperlyConfigured(
            f"The environment variable {name} is malformed: {redact_text(str(error))}"
        ) from None
    if database["ENGINE"] == "django.db.backends.sqlite3":
        # Django's remedy for "database is locked": a transaction that reads, then writes (a
        # flush's batch) was refused at once while another held the write lock (a racing flush,
        # a login); BEGIN IMMEDIATE waits for it instead, up to the busy timeout. Every
        # transaction waits so, Django's probe of JSON support at start-up too (after 5 s, a
        # command failed its checks: "SQLite does not support JSONFields"): 20 s.
        options = database.setdefault("OPTIONS", {})
        options.setdefault("transaction_mode", "IMMEDIATE")
        options.setdefault("timeout", 20)
    return database


# dj-database-url's own spelling of an in-memory SQLite database (its "port" is no number).
IN_MEMORY_SQLITE = "sqlite://:memory:"


def database_url_problem(url):
    """What is wrong with `url` as a DATABASE_URL, or None; shown as redis_url_problem shows it.

    A scheme dj-database-url does not know, and a URL without a database name (but sqlite://,
    an in-memory database), are refused here rather than later, at the first query.
    """
    if url == IN_MEMORY_SQLITE:
        return None
    # The database name read raw (url_problem has read it): cut at the last @ as the redacted
    # parts are, postgres://db/app?sslrootcert=/etc/pki/ca@main.pem had no path ("names no
    # database", host 'main.pem').
    return url_problem(
        url,
        dj_database_url.ENGINE_SCHEMES,
        lambda scheme, parts, shown: _database_url_rest(
            scheme, urllib.parse.urlsplit(url).path, shown
        ),
    )


def _database_url_rest(scheme, path, shown):
    if not path.strip("/") and scheme != "sqlite":  # sqlite:// is an in-memory database
        return f"names no database ({shown}, no /NAME after it)"
    return None


REDIS_SCHEMES = ("redis", "rediss", "unix")
SCHEME_PREFIX = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def env_redis_url(name, default=UNSET):
    value = _raw(name, default)
    url = default if value is None else value
    problem = None if url is None else redis_url_problem(url)
    if problem:
        raise ImproperlyConfigured(
            f"The environment variable {name} {problem}: it must be a redis://HOST:PORT/DB,"
            " rediss://HOST:PORT/DB or unix:///PATH URL."
        )
    return url


def redis_url_problem(url):
    """What is wrong with `url` as a Redis URL, or None (shown as url_problem shows it)."""
    # The socket's path and the host read raw (url_problem has ruled out a misread): cut at the
    # last @ as the redacted parts are, unix:///run/redis@main.sock had no path ("names no socket
    # path") and rediss://:pw@/0?ssl_ca_certs=/etc/ca@main.pem the host "main.pem".
    problem = url_problem(
        url,
        REDIS_SCHEMES,
        lambda scheme, parts, shown: _redis_url_rest(scheme, urllib.parse.urlsplit(url)),
    )
    # The URL itself: url_problem parsed it redacted, whose path an @ in the query can garble.
    if problem is None and has_unreadable_database(url):
        return "has a path that is no database number /0, /1, …"
    return problem


def _redis_url_rest(scheme, raw):
    if scheme == "unix":
        return None if raw.path else "names no socket path (scheme 'unix')"
    if not raw.hostname:
        return f"has an empty host (scheme {scheme!r})"
    return None


def url_problem(url, schemes, rest_problem):
    """What is wrong with `url`, or None: it is empty, has no scheme:// or one not in `schemes`,
    has a port that is no number, or what rest_problem(scheme, parts, shown) says of the rest.

    It shows the scheme and the host, never the rest: text without a scheme is not shown at all,
    as it may be the password itself (redis_endpoints.redact would print it as ***), and the host
    is read after the credentials are cut off (a password may hold / or @).
    """
    if not url:
        return "is empty"
    scheme = SCHEME_PREFIX.match(url)
    if scheme is None:
        return (
            f"does not start with a scheme:// (its {len(url)} characters are not shown: without"
            " one they may be a password)"
        )
    scheme = scheme.group(1)  # redis-py, dj-database-url and the apps read these in lower case
    try:
        parts = urllib.parse.urlsplit(redact(url))
    except ValueError:  # an unclosed [ of an IPv6 host: urlsplit cannot tell where the host is
        return f"has a host with an unclosed [ (scheme {scheme!r})"
    host = parts.hostname or ""
    shown = f"scheme {scheme!r}, host {host!r}" if host else f"scheme {scheme!r}, no host"
    if scheme not in schemes:
        return f"has an unknown scheme ({shown})"
    try:
        parts.port  # noqa: B018 (raises ValueError for a port that is no number)
    except ValueError:
        return f"has a port that is not a number from 0 to 65535 ({shown})"
    if credentials_misread(url):
        return (
            f"has a user name or password holding a /, ? or # that is not percent-encoded"
            f" ({shown}): clients end the host there, and would take part of the password for"
            " the host or port. Write them %2F, %3F and %23 (and an @ in them %40)"
        )
    return rest_problem(scheme, parts, shown)


def from_env(readers, prefix=""):
    """{key: value} for each key of `readers` whose variable (prefix + key) is set, read by its
    reader. A variable left unset sets nothing, so the app's own default applies."""
    return {
        key: reader(prefix + key) for key, reader in readers.items() if prefix + key in os.environ
    }
