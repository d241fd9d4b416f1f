"""The daily rows' primary key day first, (day, object_id) instead of (object_id, day).

Object first, each row the roll-up moved (and each late count) went to a leaf of the key of its
own, as an object's days sit together there, and the first change to a page after a checkpoint
logs the whole page: a day's roll-up of 100,000 objects wrote 913 MB of WAL, 759 MB of it this
key's, which brought on checkpoints during the roll-up and full-page images in the flushes after
them. Day first, a day's rows go to the end of the key in object order, and its late counts among
them: 154 MB (docs/benchmarks-journal.md, "The daily rows' key, day first").

Online on PostgreSQL: the new unique index is built CONCURRENTLY (writes go on; at the
benchmark's 40,000,000 rows about a minute here), then one ALTER TABLE swaps the key to it (a
moment's ACCESS EXCLUSIVE lock once the transactions using the table, a flush batch at most,
are done; no scan, no rewrite). A build killed half-way leaves an invalid
index, dropped and built again by the next run. `INSERT … ON CONFLICT (object_id, day)` finds the
new key as it found the old one (the same columns), so a build before this one keeps flushing
during a rolling deploy. Other databases keep their key: the order only matters to PostgreSQL's
WAL here.
"""

from django.db import migrations, models

TABLE = "impressions_daily"
NEW_INDEX = "impressions_daily_day_object"


def key_columns(cursor):
    """The columns of the table's primary key, in order, and the constraint's name."""
    cursor.execute(
        "SELECT c.conname, array_agg(a.attname ORDER BY k.ord) FROM pg_constraint AS c"
        " CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)"
        " JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.attnum"
        " WHERE c.conrelid = %s::regclass AND c.contype = 'p' GROUP BY c.conname",
        [TABLE],
    )
    name, columns = cursor.fetchone()
    return name, list(columns)


def swap_key(schema_editor, columns):
    """Make (`columns`) the primary key of the daily table, building its index concurrently."""
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        name, present = key_columns(cursor)
        if present == columns:
            return
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index AS i WHERE i.indexrelid = to_regclass(%s)",
            [NEW_INDEX],
        )
        found = cursor.fetchone()
        if found is not None and not found[0]:
            cursor.execute(f'DROP INDEX CONCURRENTLY "{NEW_INDEX}"')  # a build killed half-way
            found = None
        if found is None:
            cursor.execute(
                f'CREATE UNIQUE INDEX CONCURRENTLY "{NEW_INDEX}" ON "{TABLE}"'
                f" ({', '.join(columns)})"
            )
        cursor.execute(
            f'ALTER TABLE "{TABLE}" DROP CONSTRAINT "{name}",'
            f' ADD CONSTRAINT "{name}" PRIMARY KEY USING INDEX "{NEW_INDEX}"'
        )


def day_first(apps, schema_editor):
    swap_key(schema_editor, ["day", "object_id"])


def object_first(apps, schema_editor):
    swap_key(schema_editor, ["object_id", "day"])


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    dependencies = [
        ("impressions", "0009_old_versions_insert"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(day_first, object_first, elidable=False)],
            state_operations=[
                migrations.AlterField(
                    model_name="dailyimpressions",
                    name="pk",
                    field=models.CompositePrimaryKey(
                        "day",
                        "object_id",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
            ],
        ),
    ]
