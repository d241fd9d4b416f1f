"""Two sites whose impressions tables live in two schemas of one database (each its search_path,
as two projects or two tenants of a schema-per-tenant setup): each site's advisory locks are its
own. Before, they shared them: one site's flushes waited for the other's roll-up steps, its
roll-up for the other's flushes, and its dashboard showed the other's roll-up as running."""

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, time, timedelta

import pytest
from django.db import OperationalError, connection, connections, transaction
from django.db.backends.postgresql.base import DatabaseWrapper
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings
from django.utils import timezone

from impressions import history_writer, rollup, stats, transactions
from impressions.flush import flush_pending
from impressions.recorder import record_impressions
from tests.database import other_connection
from tests.factories import make_posts

pytestmark = pytest.mark.django_db(transaction=True)

SITE_B = "tests_site_b"


def site_b_connection():
    """A Django connection (alias "default") whose search_path is site B's schema first, as a
    project's DATABASES OPTIONS {"options": "-c search_path=…"} or a tenant's would make it."""
    settings_dict = dict(connection.settings_dict)
    options = dict(settings_dict.get("OPTIONS") or {})
    options["options"] = f"{options.get('options', '')} -c search_path={SITE_B},public".strip()
    settings_dict["OPTIONS"] = options
    return DatabaseWrapper(settings_dict, alias="default")


@pytest.fixture
def site_b():
    """Site B: the schema SITE_B of the test database, with impressions' migrations run there
    (and the posts of public, shared, as a schema-per-tenant setup's shared tables)."""
    with other_connection(autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA IF EXISTS {SITE_B} CASCADE")
        admin.execute(f"CREATE SCHEMA {SITE_B}")
        in_another_site_b_session(migrate_site_b)
        try:
            yield
        finally:
            admin.execute(f"DROP SCHEMA {SITE_B} CASCADE")


def migrate_site_b():
    """impressions' migrations, run with site B's schema alone on the search path (the data
    migrations' RunPython use the alias "default": this thread's)."""
    connection.settings_dict["OPTIONS"]["options"] = f"-c search_path={SITE_B}"
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes("impressions"))


@contextlib.contextmanager
def in_site_b(hold):
    """Run `hold()` (a context manager) in a thread whose Django connection is site B's, and
    stay inside it until the block ends."""
    entered, leave, errors = threading.Event(), threading.Event(), []

    def run():
        connections["default"] = site_b_connection()
        try:
            with hold():
                entered.set()
                leave.wait(60)
        except Exception as error:
            errors.append(error)
        finally:
            entered.set()
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    entered.wait(60)
    try:
        assert not errors, errors
        yield
    finally:
        leave.set()
        thread.join(60)
    assert not errors, errors


def in_another_site_b_session(action):
    """action()'s result, run in a thread of a connection of site B's own."""

    def run():
        connections["default"] = site_b_connection()
        try:
            return action()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result(60)


@contextlib.contextmanager
def flush_and_rollup_step():
    """Site B's flush running (flush_running) and its roll-up in a step (rollup_running, the
    state's and today's locks held exclusively, as start_next_day and move_batch hold them)."""
    with (
        history_writer.flush_running(),
        history_writer.rollup_running(),
        transactions.atomic(),
    ):
        rollup.lock(history_writer.STATE_LOCK, stats.today().toordinal())
        yield


def waiting_advisory_locks():
    with other_connection() as admin:
        return admin.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()[0]


def flush_without_waiting():
    """Flush this site's buffer in a thread; its report, failing if it waits for a lock."""
    outcome = {}

    def run():
        try:
            outcome["report"] = flush_pending()
        finally:
            connections.close_all()

    flusher = threading.Thread(target=run)
    flusher.start()
    while flusher.is_alive():
        assert not waiting_advisory_locks(), "the flush waits for the other site's lock"
        flusher.join(0.02)
    return outcome["report"]


def today_s_locks_of_site_b_held():
    """Whether another session of site B cannot have the shared locks a flush batch of today
    takes (lock_timeout 100 ms)."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '100ms'")
            today = stats.today()
            cursor.execute(history_writer.lock_statement("unused", today), {"day": today})
    except OperationalError as error:
        return history_writer.sqlstate(error) == history_writer.LOCK_NOT_AVAILABLE
    return False


def test_a_site_in_another_schema_has_locks_of_its_own(standalone_buffer, staff_client, site_b):
    posts = make_posts(6)
    yesterday = stats.today() - timedelta(days=1)
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        for rank, post in enumerate(posts):
            for viewer in range(1 + rank % 3):
                record_impressions(f"u:{viewer}", [post.id], now=rollup_moment(yesterday))
        flush_pending()
        rollup.start_next_day(yesterday)
        rollup.move_batch(yesterday, 2)  # this site's roll-up stopped half-way

        with in_site_b(flush_and_rollup_step):
            # Site B's own sessions still meet its locks.
            assert in_another_site_b_session(history_writer.rollup_is_running)
            assert not in_another_site_b_session(lambda: rollup.wait_for_flushes(patience=0))
            assert in_another_site_b_session(today_s_locks_of_site_b_held)
            # This site's dashboard does not show site B's roll-up as its own.
            page = staff_client.get("/admin/impressions/dashboard/").content.decode()
            assert f"{yesterday:%Y-%m-%d} stopped at 2 of 6 rows moved" in page
            # Its roll-up does not wait for site B's flush, nor its flush for B's roll-up step.
            assert rollup.wait_for_flushes(patience=0)
            record_impressions("u:today", [p.id for p in posts])
            assert flush_without_waiting().impressions_applied == 6
    # The tables of the schema public keep the key of the earlier builds (a rolling deploy).
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {history_writer.LOCK_CLASS_SQL}")
        assert cursor.fetchone()[0] == history_writer.LOCK_CLASS


def test_the_keys_follow_a_search_path_set_on_the_connection(site_b):
    """A schema-per-tenant setup sets each tenant's search path on the connection, not in the
    settings: the locks follow it, the holder's new session (the settings' search path) too."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET search_path TO {SITE_B}, public")
    try:
        with history_writer.rollup_running():
            assert in_another_site_b_session(history_writer.rollup_is_running)
            with connection.cursor() as cursor:
                cursor.execute("RESET search_path")
            assert not history_writer.rollup_is_running()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET search_path")


def rollup_moment(day):
    return timezone.make_aware(datetime.combine(day, time(12)), timezone.get_default_timezone())


def test_another_database_of_the_server_shares_no_lock(standalone_buffer):
    """Advisory locks are per database: a site in another database of the same server (another
    DATABASES alias, another project) holding the same keys holds back nothing here."""
    posts = make_posts(2)
    with other_connection("postgres") as elsewhere:
        elsewhere.execute(
            "SELECT pg_advisory_lock(%s, %s), pg_advisory_lock(%s, %s)",
            [
                history_writer.LOCK_CLASS,
                history_writer.STATE_LOCK,
                history_writer.LOCK_CLASS,
                history_writer.FLUSH_LOCK,
            ],
        )
        assert rollup.wait_for_flushes(patience=0)
        record_impressions("u:1", [p.id for p in posts])
        assert flush_without_waiting().impressions_applied == 2


@pytest.fixture
def site_b_role(site_b):
    """A role that reads and writes site B's tables only, in a database whose schema public is
    closed to PUBLIC (REVOKE ALL ON SCHEMA public FROM PUBLIC, a schema-per-tenant setup's
    hardening). Given back at the end."""
    quote = connection.ops.quote_name
    role = f"{connection.settings_dict['NAME']}_site_b"
    statements = [
        f"DROP ROLE IF EXISTS {quote(role)}",
        f"CREATE ROLE {quote(role)} LOGIN",
        f"GRANT USAGE ON SCHEMA {SITE_B} TO {quote(role)}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {SITE_B} TO {quote(role)}",
        "REVOKE ALL ON SCHEMA public FROM PUBLIC",
    ]
    with other_connection(autocommit=True) as admin:
        for statement in statements:
            admin.execute(statement)
        try:
            yield role
        finally:
            admin.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")
            admin.execute(f"DROP OWNED BY {quote(role)}")
            admin.execute(f"DROP ROLE {quote(role)}")


def test_the_keys_need_no_privilege_on_the_schema_public(site_b_role):
    """The key's test of whether the tables are public's looked the table up in public, which
    a role without USAGE there was refused ("permission denied for schema public"): every lock
    of its flushes and roll-ups failed. Read from the catalog, it needs no privilege."""

    def as_site_b_role():
        connections["default"].settings_dict["USER"] = site_b_role
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {history_writer.LOCK_CLASS_SQL}")
            key = cursor.fetchone()[0]
        return key, rollup.roll_up(pace=0).days, history_writer.rollup_is_running()

    key, days, running = in_another_site_b_session(as_site_b_role)
    assert key != history_writer.LOCK_CLASS
    assert (days, running) == ([], False)
