"""Which Redis/Valkey URLs name a cluster-mode endpoint, from the text alone (no network); the
one redaction of credentials in URLs that everything printing a URL uses; how a rediss://
server's certificate the URL does not trust is told apart, and remedied; and how a standalone
client leaves a primary that a failover demoted.

Both the impression buffer (which then picks RedisCluster) and the RQ backend (which then refuses
the endpoint) need this; it lives here so that neither app imports the other, and the site's
settings may use it too. Standard library only.
"""

# The distribution's version (distributions/redis_endpoints/pyproject.toml reads it), semantic.
__version__ = "0.1.0"

import copyreg
import functools
import logging
import re
import ssl
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

SERVERLESS_HOST = re.compile(r"\.serverless\.[a-z0-9-]+\.cache\.amazonaws\.com(\.cn)?$")
CLUSTER_WORDS = {"1", "true", "yes", "on"}


def cluster_endpoint_reason(url: str) -> str | None:
    """Why `url` is a known cluster-mode endpoint, or None."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme.endswith("+cluster") or parts.scheme.startswith("rediss+cluster"):
        return f"the URL scheme {parts.scheme!r} is a cluster scheme"
    if SERVERLESS_HOST.search(host):
        return f"{host} is an ElastiCache Serverless endpoint, which always runs in cluster mode"
    if ".clustercfg." in f".{host}.":
        return f"{host} is an ElastiCache cluster configuration endpoint"
    query = urllib.parse.parse_qs(parts.query)
    if any(value.lower() in CLUSTER_WORDS for value in query.get("cluster", [])):
        return "the URL says cluster=true"
    return None


def without_cluster_flag(url: str) -> str:
    """`url` without its ?cluster= parameter, which says the mode here and which redis-py would
    pass on to its connections as an unknown keyword argument."""
    head, question, query = url.partition("?")
    if not question:
        return url
    query, hash_mark, fragment = query.partition("#")
    kept = [pair for pair in query.split("&") if pair.partition("=")[0] != "cluster"]
    return f"{head}{'?' if kept else ''}{'&'.join(kept)}{hash_mark}{fragment}"


def whitespace_problem(url: object) -> str | None:
    """Why a URL that begins or ends with whitespace is refused, or None: redis-py reads it as
    part of the scheme, the host or the database, and a message that shows the URL (stripped,
    credentials hidden) would look right."""
    if isinstance(url, str) and url != url.strip():
        return "it begins or ends with whitespace (a space or a line break from an env file?)"
    return None


def credentials_misread(url: str) -> bool:
    """Whether a raw /, ? or # in the user name or password of `url` makes redis-py (and
    dj-database-url, and urllib) read another host: the first of them ends the host there, so the
    host taken is part of the password's text (which it is sent) or none (localhost), and the
    rest of the password lands in the path, the query or the fragment.

    Read with the credentials cut off at the last @ (as redact() does), the URL has the host it
    means; read raw, it has no host or another port, or an @ where none of a well-formed URL is
    (the user name's / ? # came before it, or the password holds an @ before its / ? #): in the path (the database), the fragment, or
    a query item that is no name=value (a CA file's path, `?ssl_ca_certs=/etc/ca@2026/ca.pem`,
    is one). Percent-encoded credentials (%2F %3F %23 %40) are read right.

    A unix:// URL's authority holds credentials alone (none, or `[user]:password@`) and its path
    is a file's, where an @ is no stray (`unix:///run/redis@main.sock`): there, a misread is an
    authority the / ? # cut before its @ (`unix://:pa/ss@/run/redis.sock`).
    """
    try:
        meant = urllib.parse.urlsplit(redact(url))
        raw = urllib.parse.urlsplit(url)
        raw.port  # noqa: B018 (the password's text after a ':' taken for the port)
    except ValueError:
        return True
    if raw.scheme.lower() == "unix":
        authority = raw.netloc
        cut = authority and not authority.endswith("@") and ("@" in authority or ":" in authority)
        return bool(cut) and "@" in raw.path + raw.query + raw.fragment
    # No raw host but one meant, unless the @ is a query value's after an authority or a path
    # (rediss://:pw@/0?ssl_ca_certs=/ca@1.pem, rediss:///0?ssl_ca_certs=/ca@1.pem: no host).
    if meant.hostname and not raw.hostname and "@" not in raw.netloc and not raw.path:
        return True
    # Whether or not the raw authority has credentials: a raw / ? # in the user name leaves none
    # (redis://s3?cret:pw@host/0 reads the host s3, postgres://s3/cret:pw@db/app also sends it the
    # database name cret:pw@db/app).
    stray = "@" in raw.path or "@" in raw.fragment
    return stray or any("@" in item and "=" not in item for item in re.split("[&;]", raw.query))


CREDENTIALS_PROBLEM = (
    "its user name or password holds a /, ? or # that is not percent-encoded: redis-py ends the"
    " host there, and would send the password to a host read from its text, or to localhost."
    " Write them %2F, %3F and %23 (and an @ in them %40)"
)


def has_unreadable_database(url: str) -> bool:
    """Whether a redis:// or rediss:// URL's path is no database number (/abc, /7/x, /-1):
    redis-py reads /<n> as the database to SELECT, and quietly uses database 0 for a path it
    cannot read, so the queue or the buffer would share another's database. Callers do not show
    the path: a raw password holding a / would put part of itself there."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("redis", "rediss"):
        return False
    if "db" in urllib.parse.parse_qs(parts.query):  # ?db=N wins over the path
        return False
    path = urllib.parse.unquote(parts.path).strip("/")
    return bool(path) and not re.fullmatch(r"\d+", path)


# What redis-py raises when a URL's query names an option its connections do not take.
UNKNOWN_OPTION = re.compile(r"unexpected keyword argument '(\w+)'")


def refused_options(url: str, error: BaseException) -> str:
    """In words, why redis-py refused to build a connection from `url`'s options (`error`: its
    TypeError, ValueError or RedisError, raised before any network call)."""
    name = found[1] if (found := UNKNOWN_OPTION.search(str(error))) else None
    if name and name.startswith("ssl") and not url.lower().startswith("rediss:"):
        return f"its query option {name}= is a TLS option, which only a rediss:// URL takes"
    if name:
        return f"redis-py takes no connection option {name!r}"
    if "SSL Certificate Requirements" in str(error):
        return f"redis-py refuses it ({error}): ssl_cert_reqs= takes none, optional or required"
    return f"redis-py refuses it ({redact_text(str(error))})"


REDACTED = "***"
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# A URL inside free text (an error message, a log line, a page): up to a space, quote or bracket;
# its scheme from the first letter of a run of scheme characters (group 1). Looked for from each
# run's start only: from each letter, a run of 100,000 (a hex dump) took 5 s.
URL_IN_TEXT = re.compile(r"(?<![A-Za-z0-9+.-])[0-9+.-]*([A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+)")
# Query parameters and key=value pairs that carry credentials (redis-py reads ?password=).
SECRET_KEY = re.compile(r"pass|pwd|secret|token|auth|cred|sig|key|session", re.IGNORECASE)
SECRET_PAIR = re.compile(r"\b(password|passwd|pwd|secret|token)(\s*[=:]\s*)([^\s&;,'\"]+)", re.I)
PATH_CHARACTERS = re.compile(r"[/?#]")


def redact(url: str) -> str:
    """`url` with its credentials replaced by ***, fit for logs, pages and error messages.

    Any scheme. The password goes, and so does a lone user name (it may be a token); the user name
    of a user:password pair stays. A raw password may hold `@`, `/`, `?` or `#`, so the credentials
    run to the last `@`. Query parameters named like a secret (`?password=`, `token`, `key`…) are
    replaced too, percent-encoded names included. Text that is not a URL is replaced whole: it may
    be the secret itself.
    """
    text = str(url).strip()
    match = SCHEME.match(text)
    if not match:
        return REDACTED if text else text
    scheme, rest = text[: match.end()], text[match.end() :]
    at = rest.rfind("@")
    if at >= 0:
        credentials, rest = rest[:at], rest[at + 1 :]
        user, colon, _ = credentials.partition(":")
        keep_user = colon and not PATH_CHARACTERS.search(user)
        rest = f"{user}:{REDACTED}@{rest}" if keep_user else f"{REDACTED}@{rest}"
    return scheme + redact_query(rest)


def redact_query(rest: str) -> str:
    """`rest` (a URL after its scheme) with the values of secret-named query parameters hidden."""
    head, question, query = rest.partition("?")
    if not question:
        return rest
    query, hash_mark, fragment = query.partition("#")
    pairs = re.split(r"([&;])", query)
    for index in range(0, len(pairs), 2):
        name, equals, _ = pairs[index].partition("=")
        if equals and SECRET_KEY.search(urllib.parse.unquote(name)):
            pairs[index] = f"{name}={REDACTED}"
    return f"{head}?{''.join(pairs)}{hash_mark}{fragment}"


def redact_text(text: str) -> str:
    """`text` with every URL in it redacted (redact()), and `password=…`-style pairs hidden."""
    text = URL_IN_TEXT.sub(
        lambda found: found.string[found.start() : found.start(1)] + redact(found[1]), str(text)
    )
    return SECRET_PAIR.sub(lambda found: f"{found[1]}{found[2]}{REDACTED}", text)


# What every LogRecord has; any other attribute is a field given with extra=.
RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def redact_record(record: logging.LogRecord) -> None:
    """Redact `record` in place (redact_text), where it holds something to hide: its message with
    its arguments merged in; its traceback, formatted here (exc_text; exc_info is cleared, so
    that no formatter or error tracker formats the raw exception again); its stack and its
    string extra= fields. A record with nothing to hide is left as it is: its message template
    and arguments, its exception (an error tracker groups by them)."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed call: its parts, as logging would otherwise report them
        try:
            message = f"{record.msg} {record.args!r}"
        except Exception:  # not even those print: the handler reports it (never the caller)
            message = None
    if message is not None and (redacted := redact_text(message)) != message:
        record.msg, record.args = redacted, ()
    if record.exc_info and not record.exc_text:
        text = logging.Formatter().formatException(record.exc_info)
        if redact_text(text) != text:
            record.exc_text, record.exc_info = text, None
    if record.exc_text:
        record.exc_text = redact_text(record.exc_text)
        record.exc_info = None
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)
    for name, value in list(vars(record).items()):
        if name not in RECORD_ATTRIBUTES and isinstance(value, str):
            setattr(record, name, redact_text(value))


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record it sees (redact_record) and lets it through.

    On a logger, it runs once per record logged there, before any handler of the project's
    logging config; in a project's LOGGING, `{"()": "redis_endpoints.RedactingFilter"}` on a
    handler redacts other loggers' records too (django.request's tracebacks, botocore's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def redacting_logger(name: str) -> logging.Logger:
    """logging.getLogger(name) with a RedactingFilter (added once): the apps log through these, so
    their lines carry no credentials whatever logging config the project has."""
    logger = logging.getLogger(name)
    if not any(isinstance(each, RedactingFilter) for each in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger


# The remedy for a rediss:// server whose certificate its URL does not trust, as checks give it.
UNTRUSTED_CERTIFICATE_HINT = (
    "Name the CA that signed it in the URL's query, as redis-py reads it:"
    " rediss://host:6379/0?ssl_ca_certs=/path/ca.pem, and reach the server by a name its"
    " certificate holds."
)


def refused_certificate(error: BaseException | None) -> bool:
    """Whether the TLS handshake failed on the server's certificate (an unknown CA, another name):
    the server answered, its URL is wrong, as with refused credentials."""
    while error is not None:
        if isinstance(error, ssl.SSLCertVerificationError):
            return True
        if "certificate verify failed" in str(error).lower():  # redis-py keeps only the text
            return True
        error = error.__cause__ or error.__context__
    return False


# What a primary that a failover demoted to a replica answers, as redis-py keeps its text (a
# ReadOnlyError drops the READONLY code; a pipeline's error or Redis 6's script error holds the
# text further on): every write is refused, and a command blocked in it (RQ's wait for jobs) is
# unblocked; an EXEC whose MULTI was queued before the demotion is refused whole (Redis 7 says
# EXECABORT with the READONLY text, Redis 6.0 this). Valkey answers alike; Redis before 5 said
# "slave".
DEMOTED_ANSWERS = (
    "You can't write against a read only replica",
    "You can't write against a read only slave",
    "UNBLOCKED force unblock from blocking operation",
    "Transaction contains write commands but instance is now a read-only",
)


def demoted_primary(error: BaseException) -> bool:
    """Whether `error` is the answer of a failover's demoted primary (DEMOTED_ANSWERS), whose
    command then wrote nothing: a read-only replica takes no write from a client (a script that
    writes stops at its first write, refused)."""
    text = str(error)
    return any(answer in text for answer in DEMOTED_ANSWERS)


# Seconds a connection that a demoted primary refused again after it reconnected (the endpoint
# still leads there: a DNS name moves seconds after the failover) keeps its connection before it
# reconnects once more: each of its commands until then is refused at once, where a reconnection
# each (a TLS handshake, on ElastiCache) of every command of every process met the same refusal.
DEMOTED_RECONNECT_SPACING = 1.0


class ReconnectsWhenDemoted:
    """A mixin of redis-py Connection classes: a connection that read a demoted primary's answer
    is closed before its next command, which opens a new one to where the endpoint (a DNS name,
    a proxy, ElastiCache's primary endpoint) leads by then: the new primary. redis-py's standalone
    pool would keep it on the old primary, refused, for as long as the process lives (its
    Sentinel client closes it the same way). The replies already asked for (a pipeline's) are
    read first. Refused again, it reconnects once DEMOTED_RECONNECT_SPACING has passed."""

    demoted = False
    reconnected_at = float("-inf")  # time.monotonic() of its last such reconnection

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except Exception as error:
            if demoted_primary(error):
                self.demoted = True
            raise

    def send_packed_command(self, *args: Any, **kwargs: Any) -> Any:
        if self.demoted:
            now = time.monotonic()
            if now - self.reconnected_at >= DEMOTED_RECONNECT_SPACING:
                self.demoted, self.reconnected_at = False, now
                self.disconnect()  # type: ignore[attr-defined]
        return super().send_packed_command(*args, **kwargs)  # type: ignore[misc]


def reconnect_when_demoted(client: Any) -> Any:
    """Give the connections a standalone redis-py `client` opens from now on ReconnectsWhenDemoted;
    returns the client. Not for a cluster client, which follows a failover itself."""
    pool = client.connection_pool
    pool.connection_class = _reconnecting(pool.connection_class)
    return client


@functools.cache
def _reconnecting(connection_class: type) -> type:
    if issubclass(connection_class, ReconnectsWhenDemoted):
        return connection_class
    name = f"ReconnectsWhenDemoted{connection_class.__name__}"
    base_metaclass: Any = type(connection_class)
    metaclass = _pickled_as_made(base_metaclass)
    made: type = metaclass(
        name, (ReconnectsWhenDemoted, connection_class), {"__module__": __name__}
    )
    return made


@functools.cache
def _pickled_as_made(metaclass: Any) -> Any:
    """A metaclass (of `metaclass`) whose classes pickle as the _reconnecting() call that makes
    them: a process that unpickles one has made none (multiprocessing's spawn or forkserver
    start, rq's where fork is not), so no name in this module would find it there."""
    made = type(f"PickledAsMade{metaclass.__name__}", (metaclass,), {"__module__": __name__})
    copyreg.pickle(made, lambda cls: (_reconnecting, (cls.__bases__[1],)))
    return made


def once_more_when_demoted[T](client: Any, call: Callable[[], T]) -> T:
    """call(), and once more if a demoted primary refused it (it wrote nothing there), after
    closing the idle connections of `client`'s pool (they lead to the same server): for a call
    safe to repeat, on a standalone `client` made reconnect_when_demoted."""
    try:
        return call()
    except Exception as error:
        if not demoted_primary(error):
            raise
    client.connection_pool.disconnect(inuse_connections=False)
    return call()
