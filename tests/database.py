"""A PostgreSQL session of the test's own beside Django's (another client of the same server),
how many connections a pool of Django's has out, the flush after a transactional test, and a
transaction in a thread of its own."""

import contextlib
import os
import threading

import psycopg
from django.db import connection, connections, transaction

# Where keep_baseline copies the rows the migrations leave: a schema of the test database that is
# not on the search path, so Django (dumpdata, the flush's list of tables) never sees it.
BASELINE_SCHEMA = "tests_baseline"


def sibling_database_url(suffix):
    """The URL of a database of the tests' own beside the one DATABASE_URL names, never it:
    NAME_suffix on the same server, and NAME_suffix_gwK in pytest-xdist's worker gwK (each
    worker its own, as pytest-django's test databases)."""
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    server, name = base.rsplit("/", 1)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return f"{server}/{name or 'test'}_{suffix}{f'_{worker}' if worker else ''}"


def other_connection(dbname=None, **options):
    """A new psycopg connection to the test database (or `dbname`) with Django's credentials;
    `options` may name another host, port or user."""
    params = connection.settings_dict
    address = {"host": params["HOST"] or "127.0.0.1", "port": params["PORT"] or 5432}
    user = {"user": params["USER"] or "postgres"}
    return psycopg.connect(**(address | user | options), dbname=dbname or params["NAME"])


def admin_session(**options):
    """An autocommit session of the test's own (as Django's user, a superuser, unless `options`
    name another) that writes whatever the database's defaults say."""
    admin = other_connection(autocommit=True, **options)
    admin.execute("SET default_transaction_read_only = off")
    return admin


def checked_out(pool):
    """How many connections of a psycopg_pool pool are out of it (in use, or never given back)."""
    stats = pool.get_stats()
    return stats["pool_size"] - stats["pool_available"]


def keep_baseline(db):
    """Copy each table of the test database `db` (a Django connection) that has rows once the
    migrations have run (a data migration's rows; the content types and permissions post_migrate
    made) into BASELINE_SCHEMA. Returns the statements that put those rows back, for
    flush_to_baseline."""
    quote = db.ops.quote_name
    restore = []
    with db.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {BASELINE_SCHEMA} CASCADE")
        cursor.execute(f"CREATE SCHEMA {BASELINE_SCHEMA}")
        for table in sorted(db.introspection.django_table_names(only_existing=True)):
            cursor.execute(f"SELECT EXISTS (SELECT FROM {quote(table)})")
            if not cursor.fetchone()[0]:
                continue
            copy = f"{BASELINE_SCHEMA}.{quote(table)}"
            cursor.execute(f"CREATE TABLE {copy} AS TABLE {quote(table)}")
            # Generated columns take no value.
            cursor.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
                " AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
                [quote(table)],
            )
            columns = ", ".join(quote(name) for (name,) in cursor.fetchall())
            restore.append(f"INSERT INTO {quote(table)} ({columns}) SELECT {columns} FROM {copy}")
    return restore


def flush_to_baseline(db, restore):
    """Empty every table of the test database `db` and put back the rows of keep_baseline (its
    `restore` statements): in one transaction, DELETE, not TRUNCATE, with the foreign keys (all
    deferrable, as Django makes them) checked at its end.

    Django's flush after a transactional test TRUNCATEs every table (new files for each of these
    ~20 small tables and their indexes: 0.3-0.4 s here), then makes the content types and
    permissions again (post_migrate: 0.1-0.15 s), and loses the rows of the data migrations. This
    takes 10-70 ms (the commit's most of it) and leaves the database as the migrations did, their
    rows too. Sequences go on as after Django's flush: neither resets them."""
    quote = db.ops.quote_name
    tables = db.introspection.django_table_names(only_existing=True, include_views=False)
    statements = [
        "SET CONSTRAINTS ALL DEFERRED",
        *(f"DELETE FROM {quote(table)}" for table in tables),
        *restore,
    ]
    with transaction.atomic(using=db.alias), db.cursor() as cursor:
        cursor.execute("; ".join(statements))
    # As post_migrate's create_contenttypes does: the ids it cached may be gone.
    from django.contrib.contenttypes.models import ContentType

    ContentType.objects.clear_cache()


def migrate_to(*targets):
    """Migrate the test database to `targets` ((app, migration name) pairs, or (app, None): none
    of that app's), as `manage.py migrate <app> <name>` does; a test that goes back goes forward
    again before it ends, as the other tests expect every migration applied."""
    from django.db.migrations.executor import MigrationExecutor

    MigrationExecutor(connection).migrate(list(targets))


def count_migration_loads(monkeypatch, module):
    """A list that grows by one each time `module` builds a MigrationExecutor (which loads the
    migration graph and reads the applied ones)."""
    from django.db.migrations.executor import MigrationExecutor

    loads = []

    class Counted(MigrationExecutor):
        def __init__(self, *args, **kwargs):
            loads.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(module, "MigrationExecutor", Counted)
    return loads


def transaction_in_a_thread(action, errors, wrapper=None):
    """Start a thread that runs action() in a transaction of its own connection (through
    `wrapper`, a connection.execute_wrapper, if given), appending what it raises to `errors`."""

    def run():
        try:
            with contextlib.ExitStack() as stack:
                if wrapper is not None:
                    stack.enter_context(connection.execute_wrapper(wrapper))
                stack.enter_context(transaction.atomic())
                action()
        except Exception as error:
            errors.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread
