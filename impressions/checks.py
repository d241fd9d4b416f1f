"""System checks of the impressions app.

| id                 | when              | what                                                    |
| ------------------ | ----------------- | ------------------------------------------------------- |
| impressions.E001   | every check       | IMPRESSIONS_MODEL missing, malformed or not installed   |
| impressions.E002   | every check       | IMPRESSIONS_COUNT_FIELD is not a field of that model    |
| impressions.E003   | every check       | IMPRESSIONS_COUNT_FIELD is not an integer field, or is the primary key |
| impressions.E004   | every check       | the counted model's primary key is not an integer       |
| impressions.W001   | check --deploy    | the task backend cannot defer: every flush runs at once |
| impressions.W002   | check --deploy    | the task backend never runs tasks: nothing is flushed   |
| impressions.E005   | every check       | an IMPRESSIONS_* setting has a bad value (one per setting) |
| impressions.W003   | every command     | no VisitorCookieMiddleware: anonymous viewers by digest |
| impressions.W004   | check --deploy    | a proxy in front, no trusted proxies: one address for all |
| impressions.E006   | every check       | IMPRESSIONS_FLUSH_PARTS is more than IMPRESSIONS_SHARDS |
| impressions.E007   | every check       | TASKS has no IMPRESSIONS_TASK_BACKEND or no IMPRESSIONS_TASK_QUEUE |
| impressions.E008   | check --deploy    | the buffer's server refuses IMPRESSIONS_REDIS_URL (credentials, a db on a cluster, an ACL's NOPERM), or its TLS certificate is not trusted |
| impressions.W005   | every check       | an IMPRESSIONS_* setting this app does not have (a typo?) |
| impressions.E009   | every check       | DATABASE_ROUTERS writes the counted model or the history elsewhere than 'default' |
| impressions.E010   | every check       | IMPRESSIONS_COUNT_FIELD is inherited from a multi-table parent |
| impressions.W006   | every check       | a Redis cache in CACHES is the buffer's database: cache.clear() empties it |
| impressions.W007   | check --deploy    | the buffer's server evicts any key when full (maxmemory-policy allkeys-*) |
| impressions.E011   | every check       | IMPRESSIONS_FLUSH_REPLICA_WAIT is not below IMPRESSIONS_FLUSH_REDIS_TIMEOUT |
| impressions.W008   | every check       | IMPRESSIONS_COUNT_FIELD is narrower than 64 bits in the database |
| impressions.E012   | database checks   | PostgreSQL cannot UPDATE the counted column (a view that is not updatable) |
| impressions.W009   | every check       | SQLite without transaction_mode IMMEDIATE: two flushes at once fail |
| impressions.W010   | database checks   | the role may not create temporary tables (PostgreSQL): every flush batch needs one |
| impressions.W011   | database checks   | the role lacks a privilege on a table the flush or the roll-up reads or writes |

Never reuse a retired id.
"""

import difflib
import re

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, models, router, transaction
from django.tasks.backends.dummy import DummyBackend
from redis.connection import parse_url
from redis.exceptions import AuthenticationError, NoPermissionError

from redis_endpoints import (
    UNTRUSTED_CERTIFICATE_HINT,
    redact,
    redact_text,
    refused_certificate,
    whitespace_problem,
)

from .api import ping
from .conf import (
    SETTINGS,
    VISITOR_COOKIE_MIDDLEWARE,
    conf,
    invalid_settings,
    no_callable_reason,
)
from .redis_client import database_of, eviction_policies, get_client, url_options_problem
from .tasks import UnusableTask, flush_impressions_task

# Seconds the deploy check waits for the buffer's PING.
BUFFER_PROBE_TIMEOUT = 2.0


@checks.register()
def check_settings(app_configs=None, **kwargs):
    """Every IMPRESSIONS_* setting whose value is bad, each its own error (conf.SETTINGS)."""
    invalid = invalid_settings()
    errors = [
        checks.Error(
            f"{name}={shown_value(name, value)} is not valid{reason_of(name, value)}.",
            hint=f"Use {expected}.",
            obj=name,
            id="impressions.E005",
        )
        for name, value, expected in invalid
    ]
    if "IMPRESSIONS_REDIS_URL" not in {name for name, *_ in invalid} and (
        problem := url_options_problem(conf.REDIS_URL)
    ):
        errors.append(
            checks.Error(
                f"IMPRESSIONS_REDIS_URL={redact(conf.REDIS_URL)!r} is not valid: {problem}.",
                hint=f"Use {SETTINGS['IMPRESSIONS_REDIS_URL'].expected}.",
                obj="IMPRESSIONS_REDIS_URL",
                id="impressions.E005",
            )
        )
    counted = {"IMPRESSIONS_FLUSH_PARTS", "IMPRESSIONS_SHARDS"}
    if not counted & {name for name, *_ in invalid} and conf.FLUSH_PARTS > conf.SHARDS:
        errors.append(
            checks.Error(
                f"IMPRESSIONS_FLUSH_PARTS={conf.FLUSH_PARTS} is more than"
                f" IMPRESSIONS_SHARDS={conf.SHARDS}: a part would have no shard to flush.",
                hint="Split the flush into at most as many parts as there are shards.",
                obj="IMPRESSIONS_FLUSH_PARTS",
                id="impressions.E006",
            )
        )
    timed = {"IMPRESSIONS_FLUSH_REPLICA_WAIT", "IMPRESSIONS_FLUSH_REDIS_TIMEOUT"}
    if not timed & {name for name, *_ in invalid} and (
        conf.FLUSH_REPLICA_WAIT >= conf.FLUSH_REDIS_TIMEOUT
    ):
        errors.append(
            checks.Error(
                f"IMPRESSIONS_FLUSH_REPLICA_WAIT={conf.FLUSH_REPLICA_WAIT} is not below"
                f" IMPRESSIONS_FLUSH_REDIS_TIMEOUT={conf.FLUSH_REDIS_TIMEOUT}: the flush's"
                " connection would time out before WAIT answers how many replicas have the"
                " snapshots.",
                hint="Keep IMPRESSIONS_FLUSH_REPLICA_WAIT well below the flush's Redis timeout"
                " (defaults: 0.5 s and 10 s).",
                obj="IMPRESSIONS_FLUSH_REPLICA_WAIT",
                id="impressions.E011",
            )
        )
    return errors + unknown_settings()


def reason_of(name, value):
    """Why a value that fails its test does, where the value shown would not tell: the buffer
    URL is shown without its surrounding whitespace; a panel's path, not why it imports nothing."""
    if name == "IMPRESSIONS_REDIS_URL" and (problem := whitespace_problem(value)):
        return f": {problem}"
    if name == "IMPRESSIONS_DASHBOARD_PANELS" and isinstance(value, list | tuple):
        reasons = [(path, no_callable_reason(path)) for path in value if isinstance(path, str)]
        found = "; ".join(f"{path!r} ({reason})" for path, reason in reasons if reason)
        return f": {found} names no callable" if found else ""
    return ""


def shown_value(name, value):
    """repr(value) for a message, the buffer URL's credentials hidden (the check output is logged)."""
    if name == "IMPRESSIONS_REDIS_URL" and isinstance(value, str):
        return repr(redact(value))
    return repr(value)


def unknown_settings():
    """impressions.W005: IMPRESSIONS_* names this app does not read, with the nearest it does."""
    found = []
    # IMPRESSION_ too: the prefix misspelled is the likeliest typo of all.
    for name in sorted(n for n in dir(settings) if n.startswith(("IMPRESSIONS_", "IMPRESSION_"))):
        if name in SETTINGS:
            continue
        # Compared without the prefix, which every name shares.
        tail = name.split("_", 1)[1]
        near = difflib.get_close_matches(tail, [known[12:] for known in SETTINGS], n=1)
        near = [f"IMPRESSIONS_{tail}" for tail in near]
        found.append(
            checks.Warning(
                f"{name} is not a setting of the impressions app: it has no effect.",
                hint=f"Did you mean {near[0]}?" if near else "See docs/impressions/settings.md.",
                obj=name,
                id="impressions.W005",
            )
        )
    return found


@checks.register()
def check_task_settings(app_configs=None, **kwargs):
    """The tasks' backend and queue, as Django refused them when it defined the tasks."""
    if not isinstance(flush_impressions_task, UnusableTask):
        return []
    return [
        checks.Error(
            flush_impressions_task.problem,
            hint="Name a TASKS alias in IMPRESSIONS_TASK_BACKEND and one of its QUEUES in"
            " IMPRESSIONS_TASK_QUEUE (read at start-up: restart after a change).",
            obj="IMPRESSIONS_TASK_BACKEND",
            id="impressions.E007",
        )
    ]


@checks.register(checks.Tags.models)
def check_counted_model(app_configs=None, **kwargs):
    """IMPRESSIONS_MODEL names an installed model, IMPRESSIONS_COUNT_FIELD an integer field of it."""
    name = conf.MODEL
    try:
        if not isinstance(name, str) or name.count(".") != 1:
            raise ValueError
        model = apps.get_model(name)
    except (LookupError, ValueError):
        return [
            checks.Error(
                "IMPRESSIONS_MODEL is not set (it is required)."
                if name is None
                else f"IMPRESSIONS_MODEL={name!r} does not name an installed model.",
                hint='Set IMPRESSIONS_MODEL to the counted model as "app_label.ModelName"'
                ' (e.g. "blog.Post"), with its app in INSTALLED_APPS.',
                id="impressions.E001",
            )
        ]
    # Viewers' sets and the flush's SQL hold ids as integers (bigint in PostgreSQL). A child of
    # multi-table inheritance has its parent's integer id as its key (a one-to-one parent link).
    # A grandchild's key links to its parent's, itself a link: follow them to the integer id.
    pk = model._meta.pk
    while pk.is_relation:
        pk = pk.target_field
    if not isinstance(pk, models.IntegerField):
        return [
            checks.Error(
                f"IMPRESSIONS_MODEL={name!r} has a {type(model._meta.pk).__name__} primary key;"
                " impressions are counted by integer ids.",
                hint="Count a model whose primary key is an AutoField or BigAutoField.",
                id="impressions.E004",
            )
        ]
    field_name = conf.COUNT_FIELD
    try:
        field = model._meta.get_field(field_name)
    except (FieldDoesNotExist, TypeError):
        return [
            checks.Error(
                f"IMPRESSIONS_COUNT_FIELD={field_name!r} is not a field of {name}.",
                hint=f"Add the field to {name} (e.g. models.PositiveBigIntegerField(default=0))"
                " or set IMPRESSIONS_COUNT_FIELD to the name of one it has.",
                id="impressions.E002",
            )
        ]
    # The flush updates the counted model's own table: a field inherited from a parent of
    # multi-table inheritance lives in the parent's.
    if field.model._meta.concrete_model is not model._meta.concrete_model:
        parent = field.model._meta.label
        return [
            checks.Error(
                f"IMPRESSIONS_COUNT_FIELD={field_name!r} is a field of {parent}, the parent of"
                f" {name}: it lives in the parent's table, which the flush does not update.",
                hint=f"Set IMPRESSIONS_MODEL to {parent!r}, or add the count field to {name}"
                " itself.",
                obj=field,
                id="impressions.E010",
            )
        ]
    # AutoField subclasses IntegerField too: counting into the primary key would corrupt it.
    if not isinstance(field, models.IntegerField) or field.primary_key:
        return [
            checks.Error(
                f"IMPRESSIONS_COUNT_FIELD={field_name!r} is a {type(field).__name__}"
                f"{' and the primary key' if field.primary_key else ''}: it cannot hold a count.",
                hint="Point IMPRESSIONS_COUNT_FIELD at an integer field that is not the primary"
                " key, e.g. models.PositiveBigIntegerField(default=0).",
                obj=field,
                id="impressions.E003",
            )
        ]
    return narrow_count_field_warnings(field, field_name)


def narrow_count_field_warnings(field, field_name):
    """impressions.W008: a count field narrower than 64 bits in the database (PostgreSQL's
    smallint, integer). A count past its range fails the batch that holds it, and the batch is
    tried again as it was at every flush: that object's counts, and those of every object of its
    batches, stay in Redis until the column is widened."""
    _low, high = connections[DEFAULT_DB_ALIAS].ops.integer_field_range(field.get_internal_type())
    if high is None or high >= 2**63 - 1:
        return []
    return [
        checks.Warning(
            f"IMPRESSIONS_COUNT_FIELD={field_name!r} is a {type(field).__name__}, at most"
            f" {high:,} in the database: a count past it fails every flush of the batch that"
            " holds it, and that batch's other counts wait in Redis with it.",
            hint="Use models.PositiveBigIntegerField(default=0); a migration widens the column.",
            obj=field,
            id="impressions.W008",
        )
    ]


def postgresql_to_ask(databases):
    """The 'default' database's connection, if a database check (`databases`, as Django passes
    them) is to ask it and it is PostgreSQL; else None."""
    if not databases or DEFAULT_DB_ALIAS not in databases:
        return None
    connection = connections[DEFAULT_DB_ALIAS]
    return connection if connection.vendor == "postgresql" else None


def counted_column():
    """(the counted model, its count column's name), or None when the settings name no such
    model or field (impressions.E001/E002 say why)."""
    try:
        model = apps.get_model(conf.MODEL)
        return model, model._meta.get_field(conf.COUNT_FIELD).column
    except (LookupError, ValueError, TypeError, AttributeError, FieldDoesNotExist):
        return None


@checks.register(checks.Tags.database)
def check_counted_table(app_configs=None, databases=None, **kwargs):
    """impressions.E012: PostgreSQL cannot UPDATE the counted model's count column (a view that
    is not automatically updatable, with no INSTEAD OF trigger or rule; a materialized view; a
    view's column that is an expression): every flush would fail on it, its counts waiting in
    Redis. Asked of the database, so a database check (`migrate`, `check --database default`),
    as Django's own. A table that does not exist yet (before `migrate` makes it) is no error."""
    connection = postgresql_to_ask(databases)
    counted = counted_column()
    if connection is None or counted is None:
        return []
    model, column = counted
    table = connection.ops.quote_name(model._meta.db_table)
    try:
        # A savepoint: a query the database refuses (a schema the user may not use) must not
        # leave a caller's transaction aborted.
        with transaction.atomic(using=DEFAULT_DB_ALIAS), connection.cursor() as cursor:
            cursor.execute(
                # UPDATE is bit 4 of pg_relation_is_updatable; triggers and rules count.
                "SELECT pg_relation_is_updatable(c.oid, true) & 4 = 4,"
                " coalesce(pg_column_is_updatable(c.oid, a.attnum, true), true)"
                " FROM pg_class AS c LEFT JOIN pg_attribute AS a ON a.attrelid = c.oid"
                " AND a.attname = %s AND NOT a.attisdropped WHERE c.oid = to_regclass(%s)",
                [column, table],
            )
            row = cursor.fetchone()
    except DatabaseError:
        return []  # not reachable, or refused: the flush says what it finds
    if row is None or all(row):
        return []
    what = "the view" if not row[0] else f"the column {column!r} of the view"
    return [
        checks.Error(
            f"IMPRESSIONS_MODEL={conf.MODEL!r} is the database relation {table}, and PostgreSQL"
            f" cannot UPDATE {what} that IMPRESSIONS_COUNT_FIELD={conf.COUNT_FIELD!r} names:"
            " every flush would fail, its counts waiting in Redis.",
            hint="Count the model of the table behind the view, or make the view updatable"
            " (a plain column of one table, no DISTINCT, GROUP BY or join; or an INSTEAD OF"
            " UPDATE trigger).",
            obj="IMPRESSIONS_MODEL",
            id="impressions.E012",
        )
    ]


# The privileges the flush and the roll-up need on each table (PostgreSQL's names).
COUNTED_PRIVILEGES = ("SELECT", "UPDATE")
HISTORY_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


@checks.register(checks.Tags.database)
def check_database_privileges(app_configs=None, databases=None, **kwargs):
    """impressions.W010, W011: what the role the 'default' database connects as may not do that
    every flush (or roll-up) needs, on PostgreSQL: create a temporary table (each batch copies
    its lines into one), read and write this app's tables and update the counted one. A role of
    a hardened setup (migrations run by the owner, the site by a role that only reads and writes
    rows, TEMPORARY revoked from PUBLIC) lacks them unless granted: every flush failed, its counts
    waiting in Redis. A database check, as Django's: `check --database default`, run with the
    workers' credentials; a table that does not exist yet is no error. Warnings: `migrate` runs
    them too, as the tables' owner, whose TEMPORARY no flush needs; as errors, they stopped it."""
    connection = postgresql_to_ask(databases)
    found = counted_column()
    if connection is None or found is None:
        return []
    counted, count_column = found
    quote = connection.ops.quote_name
    tables = {quote(counted._meta.db_table): COUNTED_PRIVILEGES}
    for model in apps.get_app_config("impressions").get_models():
        if model._meta.managed and not model._meta.proxy:
            tables[quote(model._meta.db_table)] = HISTORY_PRIVILEGES
    # (table, privilege, column or None for the whole table). The flush updates the count column
    # alone: UPDATE granted on that column (GRANT UPDATE (impressions) ON …) is enough.
    wanted = [
        (table, privilege, None) for table, privileges in tables.items() for privilege in privileges
    ]
    counted_update = (quote(counted._meta.db_table), "UPDATE", None)
    wanted[wanted.index(counted_update)] = (*counted_update[:2], count_column)
    try:
        with transaction.atomic(using=DEFAULT_DB_ALIAS), connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_user, current_database(),"
                " has_database_privilege(current_database(), 'TEMPORARY')"
            )
            role, database, temporary = cursor.fetchone()
            cursor.execute(
                "SELECT w.name, w.privilege FROM unnest(%s::text[], %s::text[], %s::text[])"
                " AS w(name, privilege, col) WHERE to_regclass(w.name) IS NOT NULL"
                " AND NOT CASE WHEN w.col IS NULL"
                " THEN has_table_privilege(to_regclass(w.name), w.privilege)"
                " ELSE coalesce(has_column_privilege(to_regclass(w.name), w.col, w.privilege),"
                " true) END",
                [list(column) for column in zip(*wanted, strict=True)],
            )
            missing = cursor.fetchall()
    except DatabaseError:
        return []  # not reachable, or refused: the flush says what it finds
    warnings = []
    if not temporary:
        warnings.append(
            checks.Warning(
                f"The database role {role!r} may not create temporary tables in the database"
                f" {database!r}: every impressions flush batch copies its lines into one, so"
                " every flush would fail, its counts waiting in Redis.",
                hint=f"GRANT TEMPORARY ON DATABASE {quote(database)} TO {quote(role)};",
                obj="DATABASES",
                id="impressions.W010",
            )
        )
    by_table = {}
    for table, privilege in missing:
        by_table.setdefault(table, []).append(privilege)
    warnings += [
        checks.Warning(
            f"The database role {role!r} lacks {', '.join(privileges)} on the table {table}, which"
            " the impressions flush or roll-up needs: they would fail on it, the counts waiting"
            " in Redis.",
            hint=f"GRANT {', '.join(privileges)} ON {table} TO {quote(role)}; and, for the tables"
            " of later migrations, ALTER DEFAULT PRIVILEGES FOR ROLE <the migrations' role>"
            f" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {quote(role)};",
            obj="DATABASES",
            id="impressions.W011",
        )
        for table, privileges in by_table.items()
    ]
    return warnings


@checks.register(checks.Tags.models)
def check_counted_database(app_configs=None, **kwargs):
    """The flush writes the counts and the history in one transaction on the 'default' database:
    DATABASE_ROUTERS must send the counted model's and this app's writes there."""
    try:
        counted = apps.get_model(conf.MODEL)
    except (LookupError, ValueError, TypeError, AttributeError):
        return []  # impressions.E001 says why
    models_written = [counted, *apps.get_app_config("impressions").get_models()]
    elsewhere = {}
    for model in models_written:
        alias = router.db_for_write(model)
        if alias != DEFAULT_DB_ALIAS:
            elsewhere.setdefault(alias, []).append(model._meta.label)
    return [
        checks.Error(
            f"DATABASE_ROUTERS sends the writes of {', '.join(labels)} to the database"
            f" {alias!r}; the impressions flush writes the counts of IMPRESSIONS_MODEL and the"
            f" history in one transaction on {DEFAULT_DB_ALIAS!r}.",
            hint=f"Route {', '.join(labels)} to {DEFAULT_DB_ALIAS!r} (db_for_write returning None"
            " or 'default' for them): a counted model on another database is not supported.",
            obj="DATABASE_ROUTERS",
            id="impressions.E009",
        )
        for alias, labels in elsewhere.items()
    ]


@checks.register()
def check_sqlite_transactions(app_configs=None, **kwargs):
    """impressions.W009: SQLite's DEFERRED transactions (its default): a batch reads the ledger
    row, then writes, and SQLite refuses that write at once, without waiting, while another
    connection writes (a second flush, an admin save): the flush fails, its counts kept."""
    database = connections[DEFAULT_DB_ALIAS].settings_dict
    if database["ENGINE"] != "django.db.backends.sqlite3":
        return []
    if str(database["NAME"]) == ":memory:" or "mode=memory" in str(database["NAME"]):
        return []  # one process's own: no other writes it
    if str(database.get("OPTIONS", {}).get("transaction_mode", "")).upper() in {
        "IMMEDIATE",
        "EXCLUSIVE",
    }:
        return []
    return [
        checks.Warning(
            "The 'default' database is SQLite with DEFERRED transactions: a flush that runs while"
            " another writes (a second flush, an admin save) fails with 'database is locked'.",
            hint='Add "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20} to'
            " DATABASES['default'].",
            id="impressions.W009",
        )
    ]


@checks.register(checks.Tags.compatibility, deploy=True)
def check_flush_can_be_deferred(app_configs=None, **kwargs):
    if isinstance(flush_impressions_task, UnusableTask):
        return []  # impressions.E007 says why
    backend = flush_impressions_task.get_backend()
    if isinstance(backend, DummyBackend):
        return [
            checks.Warning(
                "The task backend DummyBackend stores tasks and never runs them, so pending"
                " impressions reach the database only through manage.py flush_impressions.",
                hint="Point TASKS at a backend whose worker runs tasks later, e.g."
                " queues.rq.backend.RQBackend or queues.sqs.backend.SQSBackend.",
                id="impressions.W002",
            )
        ]
    if backend.supports_defer:
        return []
    return [
        checks.Warning(
            f"The task backend {type(backend).__name__} cannot defer tasks, so the impressions"
            " flush runs at once inside the request that schedules it.",
            hint="Point TASKS at a backend that defers tasks to a worker, e.g."
            " queues.rq.backend.RQBackend or queues.sqs.backend.SQSBackend.",
            id="impressions.W001",
        )
    ]


@checks.register(checks.Tags.compatibility, deploy=True)
def check_buffer_answers(app_configs=None, **kwargs):
    """The impression buffer, probed: PING at IMPRESSIONS_REDIS_URL with its credentials."""
    if not conf.ENABLED or invalid_settings():
        return []  # nothing recorded, or impressions.E005 says what is wrong first
    url = redact_text(conf.REDIS_URL)
    try:
        ping(timeout=BUFFER_PROBE_TIMEOUT)
    except ImproperlyConfigured as error:
        return [checks.Error(str(error), obj="IMPRESSIONS_REDIS_URL", id="impressions.E008")]
    except Exception as error:  # RedisError, and RedisClusterException, which is not one
        reason = redact_text(f"{type(error).__name__}: {error}")
        if refused_certificate(error):
            return [
                checks.Error(
                    f"The impression buffer at {url} presented a certificate that"
                    f" IMPRESSIONS_REDIS_URL does not trust ({reason}).",
                    hint=UNTRUSTED_CERTIFICATE_HINT,
                    obj="IMPRESSIONS_REDIS_URL",
                    id="impressions.E008",
                )
            ]
        if isinstance(error, NoPermissionError):  # an ACL: the server answered, and refused
            return [
                checks.Error(
                    f"The impression buffer at {url} refuses the user of IMPRESSIONS_REDIS_URL a"
                    f" command the app runs ({reason}).",
                    hint='Set IMPRESSIONS_REDIS_CLUSTER = "false" (a standalone server) or "true"'
                    ' (cluster mode): "auto" asks the server INFO cluster.'
                    if "'info'" in str(error).lower() and conf.REDIS_CLUSTER == "auto"
                    else "Give that ACL user the rules docs/operations/aws.md gives the buffer's"
                    " user (the commands its scripts run included).",
                    obj="IMPRESSIONS_REDIS_URL",
                    id="impressions.E008",
                )
            ]
        if isinstance(error, AuthenticationError) or "auth" in str(error).lower():
            return [
                checks.Error(
                    f"The impression buffer at {url} refused the credentials of"
                    f" IMPRESSIONS_REDIS_URL ({reason}).",
                    hint="Put the user and password in the URL: redis://user:password@host/.",
                    obj="IMPRESSIONS_REDIS_URL",
                    id="impressions.E008",
                )
            ]
        if "DB index is out of range" in str(error):
            return [
                checks.Error(
                    f"The impression buffer at {url} has no database"
                    f" {database_of(conf.REDIS_URL)} ({reason}).",
                    hint="Name one of the server's databases (its `databases` setting: 16 by"
                    " default, /0 to /15) in IMPRESSIONS_REDIS_URL.",
                    obj="IMPRESSIONS_REDIS_URL",
                    id="impressions.E008",
                )
            ]
        # Deploy checks often run where production's Redis cannot be reached: not an issue.
        return []
    return eviction_warnings(url)


def eviction_warnings(url):
    """impressions.W007: a server that evicts any key when full would drop pending counts
    (which have no expiry, so the volatile-* policies and noeviction never take them)."""
    try:
        policies = eviction_policies(get_client(BUFFER_PROBE_TIMEOUT))
    except Exception:  # INFO refused (an ACL without it) or gone: nothing to judge
        return []
    evicting = sorted({policy for policy in policies.values() if policy.startswith("allkeys-")})
    if not evicting:
        return []
    return [
        checks.Warning(
            f"The impression buffer at {url} evicts any key when it is full"
            f" (maxmemory-policy {', '.join(evicting)}): pending impressions, kept there until a"
            " flush, would be dropped without a trace.",
            hint="Set maxmemory-policy to noeviction (or a volatile-* policy) on the buffer's"
            " server; a full buffer then refuses new impressions, counted as dropped, until the"
            " next flush frees it.",
            obj="IMPRESSIONS_REDIS_URL",
            id="impressions.W007",
        )
    ]


# Cache backends whose clear() runs FLUSHDB on their Redis database.
FLUSHING_CACHES = ("django.core.cache.backends.redis.RedisCache", "django_redis.cache.RedisCache")
LOOPBACK = {"localhost": "127.0.0.1", "::1": "127.0.0.1", "[::1]": "127.0.0.1"}


def redis_database(url, default_db=0):
    """(server, db number) that a redis://, rediss:// or unix:// URL names (`default_db` where
    it names none); None if it does not parse."""
    try:
        parts = parse_url(url.strip())
    except (ValueError, AttributeError, TypeError):
        return None
    host = parts.get("host", "")
    server = parts.get("path") or (LOOPBACK.get(host, host), parts.get("port", 6379))
    return server, parts.get("db", default_db)


@checks.register(checks.Tags.caches)
def check_buffer_is_no_cache(app_configs=None, **kwargs):
    """impressions.W006: a Redis cache on the buffer's database, which its clear() empties."""
    if not conf.ENABLED or "IMPRESSIONS_REDIS_URL" in {n for n, *_ in invalid_settings()}:
        return []
    buffer = redis_database(conf.REDIS_URL)
    warnings = []
    for alias, cache in settings.CACHES.items():
        if buffer is None or cache.get("BACKEND") not in FLUSHING_CACHES:
            continue
        location = cache.get("LOCATION") or []
        servers = re.split("[;,]", location) if isinstance(location, str) else list(location)
        # Django's RedisCache hands its OPTIONS to the pool: their db, where the URL names none.
        options = cache.get("OPTIONS") or {}
        default_db = options.get("db", 0) if cache["BACKEND"] == FLUSHING_CACHES[0] else 0
        if buffer in {redis_database(server, default_db) for server in servers}:
            warnings.append(
                checks.Warning(
                    f"CACHES[{alias!r}] uses the impression buffer's Redis database"
                    f" ({redact_text(conf.REDIS_URL)}): cache.clear() runs FLUSHDB there, which"
                    " silently deletes every pending impression and de-duplication key.",
                    hint="Give IMPRESSIONS_REDIS_URL a database of its own (another database"
                    " number, or another server), not the cache's.",
                    obj="IMPRESSIONS_REDIS_URL",
                    id="impressions.W006",
                )
            )
    return warnings


@checks.register(checks.Tags.compatibility)
def check_visitor_cookie_middleware(app_configs=None, **kwargs):
    if not (conf.ENABLED and conf.COUNT_ANONYMOUS) or conf.SETS_VISITOR_COOKIE:
        return []
    return [
        checks.Warning(
            "Anonymous visitors are counted, but no middleware sets their visitor cookie: every"
            " anonymous viewer is counted by the digest of its IP and User-Agent, so visitors"
            " behind one address with the same browser count as one.",
            hint=f"Add {VISITOR_COOKIE_MIDDLEWARE!r} to MIDDLEWARE.",
            id="impressions.W003",
        )
    ]


@checks.register(checks.Tags.security, deploy=True)
def check_trusted_proxies(app_configs=None, **kwargs):
    """SECURE_PROXY_SSL_HEADER says a proxy is in front: then IMPRESSIONS_TRUSTED_PROXIES 0 reads
    the proxy's address as every visitor's, and one address's budget of new viewers is all."""
    if (
        not settings.SECURE_PROXY_SSL_HEADER
        or conf.TRUSTED_PROXIES
        or not (conf.ENABLED and conf.COUNT_ANONYMOUS and conf.IP_NEW_VIEWERS_PER_HOUR)
    ):
        return []
    return [
        checks.Warning(
            "SECURE_PROXY_SSL_HEADER is set, so requests come through a proxy, but"
            " IMPRESSIONS_TRUSTED_PROXIES is 0: every visitor's address is the proxy's, and all"
            " anonymous visitors share one address's budget of new viewers"
            f" (IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR={conf.IP_NEW_VIEWERS_PER_HOUR}).",
            hint="Set IMPRESSIONS_TRUSTED_PROXIES to the number of proxies that append to"
            " X-Forwarded-For (an AWS ALB: 1), or IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR to 0.",
            id="impressions.W004",
        )
    ]
