"""The app's migrations run backwards on a database with data: `manage.py migrate impressions
zero` is how a project removes the app (docs/impressions/quickstart.md); and they keep the
earlier build working while a deploy replaces it."""

import io
import re
from datetime import date
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, migrations, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.models import NOT_PROVIDED
from django.test import override_settings

import devservices
from casusult.models import Post
from impressions import flush as flush_module
from impressions import ledger
from impressions.batches import DONE
from impressions.exceptions import DatabaseUnavailable
from impressions.flush import flush_pending
from impressions.models import DailyImpressions, Flush, HistoryRollup, OpenDailyImpressions
from impressions.recorder import record_impressions
from tests.database import migrate_to
from tests.factories import make_posts

DAY = date(2026, 12, 5)


def latest_migration():
    [leaf] = MigrationLoader(connection).graph.leaf_nodes("impressions")
    return leaf


@pytest.mark.django_db(transaction=True)
def test_moving_the_open_days_back_adds_up_a_day_in_both_tables():
    """A day whose roll-up is half done (or that a late flush wrote to again after its move) has
    rows in both tables; 0004 moving the open rows back must add them, not fail on the key."""
    latest = latest_migration()
    DailyImpressions.objects.create(object_id=1, day=DAY, count=3)
    OpenDailyImpressions.objects.create(object_id=1, day=DAY, count=2)
    OpenDailyImpressions.objects.create(object_id=2, day=DAY, count=4)
    migrate_to(("impressions", "0003_history_rollup"))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT object_id, day, count FROM impressions_daily ORDER BY object_id")
            rows = list(cursor.fetchall())  # a tuple from mysqlclient
    finally:
        migrate_to(latest)
    assert rows == [(1, DAY, 5), (2, DAY, 4)]


# A rolling deploy (docs/impressions/quickstart.md, "Upgrade"): `migrate` runs while the earlier
# build's workers and web processes still write, so a column added after 0001 must take what an
# INSERT naming only the earlier columns leaves out: NULL, or a database default (`db_default`).


def columns_added_after_the_first_migration():
    """[(migration, model, field)] of each AddField in the app's migrations after 0001."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    return [
        (name, operation.model_name, operation.name)
        for (app, name), migration in sorted(loader.disk_migrations.items())
        if app == "impressions" and not migration.initial
        for operation in on_the_database(migration.operations)
        if isinstance(operation, migrations.AddField)
    ]


def test_every_column_added_after_0001_takes_an_insert_that_leaves_it_out():
    """An earlier build inserts rows without the columns it does not know: each must be nullable
    or have a database default once the migrations have run, or that build's writes fail from
    `migrate` until its restart."""
    state = MigrationLoader(None, ignore_no_migrations=True).project_state()
    added = columns_added_after_the_first_migration()
    assert len(added) >= 8  # 0006's seven, 0008's start: the walk finds them
    refused = []
    for migration, model_name, field_name in added:
        field = state.apps.get_model("impressions", model_name)._meta.get_field(field_name)
        if field.column and not field.null and field.db_default is NOT_PROVIDED:
            refused.append(f"{migration}: {model_name}.{field_name}")
    assert refused == [], "NOT NULL without a database default (add db_default=…)"


# What an earlier build reads must still be there while it runs: a column or table is dropped or
# renamed only in two steps (one release stops using it, a later one drops it), never by the
# migration that the earlier build's processes run beside.
DROPS = (
    migrations.RemoveField,
    migrations.RenameField,
    migrations.DeleteModel,
    migrations.RenameModel,
    migrations.AlterModelTable,
)


def on_the_database(operations):
    """The operations that change the database: a SeparateDatabaseAndState's database_operations
    (its state_operations change none), every other as it is."""
    for operation in operations:
        if isinstance(operation, migrations.SeparateDatabaseAndState):
            yield from on_the_database(operation.database_operations)
        else:
            yield operation


# Forward SQL that drops or renames a column or table (a RunSQL's, which no operation describes).
DROPPING_SQL = re.compile(r"\b(DROP\s+(COLUMN|TABLE)|RENAME)\b", re.IGNORECASE)


def drops_and_renames(named_migrations, state):
    """["<migration>: <operation>"] of the operations of `named_migrations` ([(name, migration)],
    in order, from `state`) that drop or rename a column or table under the earlier build."""
    dropped = []
    for name, migration in named_migrations:
        for operation in migration.operations:
            for change in on_the_database([operation]):
                if isinstance(change, DROPS):
                    dropped.append(f"{name}: {change.describe()}")
                elif isinstance(change, migrations.AlterField):
                    # A changed db_column renames the column under the earlier build.
                    before = state.models["impressions", change.model_name].fields[change.name]
                    if before.db_column != change.field.db_column:
                        dropped.append(f"{name}: {change.describe()} renames its column")
                elif isinstance(change, migrations.RunSQL):
                    sqls = change.sql if isinstance(change.sql, list | tuple) else [change.sql]
                    for sql in sqls:
                        text = sql[0] if isinstance(sql, list | tuple) else sql
                        if DROPPING_SQL.search(text):
                            dropped.append(f"{name}: RunSQL {text!r}")
            operation.state_forwards("impressions", state)
    return dropped


def test_no_migration_after_0001_drops_or_renames_what_an_earlier_build_reads():
    loader = MigrationLoader(None, ignore_no_migrations=True)
    state = loader.project_state(("impressions", "0001_initial"))
    later = [
        (name, migration)
        for (app, name), migration in sorted(loader.disk_migrations.items())
        if app == "impressions" and not migration.initial
    ]
    assert drops_and_renames(later, state) == []


def test_a_drop_under_separate_database_and_state_or_in_sql_is_one_too():
    # The forms a drop takes that the operations' own classes do not show: the database side of a
    # SeparateDatabaseAndState, and plain SQL. A state-only removal (the usual first step) is none.
    loader = MigrationLoader(None, ignore_no_migrations=True)
    state = loader.project_state(("impressions", "0001_initial"))
    removal = migrations.RemoveField("flush", "error")
    hidden = migrations.Migration("0100_hidden", "impressions")
    hidden.operations = [
        migrations.SeparateDatabaseAndState(state_operations=[removal]),
        migrations.SeparateDatabaseAndState(database_operations=[removal]),
        migrations.RunSQL(
            "ALTER TABLE impressions_flush DROP COLUMN error", migrations.RunSQL.noop
        ),
        migrations.RunSQL([("ALTER TABLE impressions_flush RENAME TO f", None)]),
        migrations.RunSQL("UPDATE impressions_flush SET error = ''"),
    ]
    assert [
        entry.split(":")[1].split()[0] for entry in drops_and_renames([("0100", hidden)], state)
    ] == [
        "Remove",
        "RunSQL",
        "RunSQL",
    ]


# The statements of the build before 0006, as its ledger and history writer sent them: the
# ledger row and the roll-up row (bulk_create(ignore_conflicts=True)), then the row's save().
OLD_LEDGER_INSERT = (
    "INSERT INTO impressions_flush (id, started_at, finished_at, outcome, shards_applied,"
    " posts_updated, impressions_applied, posts_dropped, impressions_dropped, recovered_by,"
    " error) VALUES (%s, now(), NULL, 'failed', '[]', 0, 0, 0, 0, '', '') ON CONFLICT DO NOTHING"
)
OLD_LEDGER_SAVE = (
    "UPDATE impressions_flush SET outcome = 'applied', finished_at = now(),"
    " shards_applied = '[0, 2]', posts_updated = 3, impressions_applied = 5 WHERE id = %s"
)
OLD_ROLLUP_INSERT = (
    "INSERT INTO impressions_rollup (id, rolled_through) VALUES (1, NULL) ON CONFLICT DO NOTHING"
)


@pytest.mark.django_db
def test_the_build_before_0006_writes_its_ledger_and_roll_up_rows_on_the_new_tables():
    """Before 0009 both INSERTs failed (NOT NULL: marks, rolling_rows): that build's every flush
    failed until its worker restarted. Its ledger row now reads as what it is: the shards it
    applied whole are done, the others not started (marks {}), so this build's flush applies each
    of that flush id's lines once."""
    flush_id = "20261206T120000-0ld0006"
    with connection.cursor() as cursor:
        cursor.execute(OLD_LEDGER_INSERT, [flush_id])
        cursor.execute(OLD_LEDGER_SAVE, [flush_id])
        cursor.execute("DELETE FROM impressions_rollup")  # as on a database before 0003's row
        cursor.execute(OLD_ROLLUP_INSERT)
        cursor.execute(OLD_ROLLUP_INSERT)  # the next flush's: the row is there
    with transaction.atomic():
        row = ledger.locked_row(flush_id)
        assert (row.marks, row.start) == ({}, "")
        assert ledger.marks_of(row, [0, 1, 2]) == {0: DONE, 1: None, 2: DONE}
    rollup = HistoryRollup.objects.get(id=1)
    assert (rollup.rolled_through, rollup.rolling_rows, rollup.rolling_moved) == (None, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_this_build_s_flush_before_migrate_fails_and_its_counts_wait_in_redis(standalone_buffer):
    """The other way round: new processes start before `migrate` ends. Recording needs no table;
    the flush fails naming the missing column, leaves its snapshot, and the first flush after
    `migrate` applies it, once."""
    latest = latest_migration()
    posts = make_posts(3)
    ids = [post.id for post in posts]
    migrate_to(("impressions", "0005_flush_plural"))
    try:
        assert record_impressions("u:1", ids).counted == 3
        with pytest.raises(DatabaseUnavailable, match="marks"):
            flush_pending()
    finally:
        migrate_to(latest)
    assert flush_pending().impressions_applied == 3
    assert flush_pending().impressions_applied == 0
    assert list(Post.objects.filter(id__in=ids).values_list("impressions", flat=True)) == [1] * 3


@pytest.mark.django_db(transaction=True)
def test_migrating_to_zero_is_refused_while_a_flush_s_snapshot_waits(standalone_buffer):
    """`migrate impressions zero` drops the ledger, whose rows say which batches of a snapshot
    are applied; migrated again, the next flush applied a half-applied snapshot from its first
    batch, into the count column the migration keeps: post 1 counted 2 for one view."""
    latest = latest_migration()
    posts = make_posts(4)
    ids = [post.id for post in posts]
    record_impressions("u:1", ids)

    def killed_after_the_first_batch(name):
        if name == "after-batch":
            raise RuntimeError("killed")

    with (
        mock.patch.object(flush_module, "checkpoint", killed_after_the_first_batch),
        pytest.raises(RuntimeError, match="killed"),
    ):
        flush_pending(batch_size=1)
    try:
        with pytest.raises(CommandError, match="flush_impressions"):
            call_command("migrate", "impressions", "zero", verbosity=0)
        assert ledger_exists()
        assert flush_pending().impressions_applied == 3
        call_command("migrate", "impressions", "zero", verbosity=0)  # nothing waits: done
        assert not ledger_exists()
    finally:
        migrate_to(latest)
    assert flush_pending().impressions_applied == 0
    assert list(Post.objects.filter(id__in=ids).values_list("impressions", flat=True)) == [1] * 4


def ledger_exists():
    return Flush._meta.db_table in connection.introspection.table_names()


@pytest.mark.django_db(transaction=True)
def test_migrating_to_zero_with_the_buffer_unreachable_warns_and_goes_on(standalone_buffer):
    # A project removing the app may have shut its Redis down first: the migration still runs.
    latest = latest_migration()
    out = io.StringIO()
    try:
        unreachable = f"redis://127.0.0.1:{devservices.free_port()}/0"
        with override_settings(IMPRESSIONS_REDIS_URL=unreachable):
            call_command("migrate", "impressions", "zero", verbosity=0, stdout=out)
        assert not ledger_exists()
    finally:
        migrate_to(latest)
    assert "whether a flush's snapshot waits in it is unknown" in out.getvalue()


def daily_key_columns():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_constraint AS c"
            " CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)"
            " JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.attnum"
            " WHERE c.conrelid = 'impressions_daily'::regclass AND c.contype = 'p'"
            " ORDER BY k.ord"
        )
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_0010_puts_the_day_first_in_the_daily_key_and_back_keeping_the_rows():
    """Day first, the roll-up's inserts and the late counts go to the end of the key, not to a
    leaf a row (a full-page image each after a checkpoint). Built concurrently; an index a killed
    build left invalid is built again."""
    if connection.vendor != "postgresql":
        pytest.skip("the key is swapped on PostgreSQL only")
    latest = latest_migration()
    DailyImpressions.objects.create(object_id=2, day=DAY, count=3)
    DailyImpressions.objects.create(object_id=1, day=DAY, count=4)
    assert daily_key_columns() == ["day", "object_id"]
    migrate_to(("impressions", "0009_old_versions_insert"))
    try:
        assert daily_key_columns() == ["object_id", "day"]
        with connection.cursor() as cursor:
            # What a build killed during CREATE INDEX CONCURRENTLY leaves: an invalid index.
            cursor.execute(
                "CREATE UNIQUE INDEX impressions_daily_day_object ON impressions_daily (day, object_id)"
            )
            cursor.execute(
                "UPDATE pg_index SET indisvalid = false"
                " WHERE indexrelid = 'impressions_daily_day_object'::regclass"
            )
    finally:
        migrate_to(latest)
    assert daily_key_columns() == ["day", "object_id"]
    rows = DailyImpressions.objects.order_by("object_id").values_list("object_id", "count")
    assert list(rows) == [(1, 4), (2, 3)]
    DailyImpressions.objects.create(object_id=3, day=DAY, count=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        DailyImpressions.objects.create(object_id=3, day=DAY, count=1)
