"""The benchmark database: created if missing, migrated, and filled once with >= 1M posts."""

import contextlib
import time
import urllib.parse

import devservices

HIT_TABLE = "bench_hit"
VIEWER_PREFIX = "bench-viewer-"


def ensure_database(url):
    """CREATE DATABASE for `url` when it does not exist (connecting to the `postgres` db)."""
    try:
        return devservices.ensure_database(url)
    except ValueError as error:
        raise SystemExit(f"--database-url: {error}") from None


@contextlib.contextmanager
def switch_database(url):
    """Django's default connection on another database of the same server for the block
    (created if missing), the way Django's test runner moves to the test database."""
    from django.db import connection

    ensure_database(url)
    old = connection.settings_dict["NAME"]
    connection.close()
    connection.settings_dict["NAME"] = urllib.parse.urlsplit(url).path.lstrip("/")
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["NAME"] = old


def migrate():
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def ensure_posts(count, log=print):
    """At least `count` posts in casusult_post, topped up with one INSERT ... generate_series."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM casusult_post")
        existing = cursor.fetchone()[0]
    if existing >= count:
        return existing
    author, _ = get_user_model().objects.get_or_create(username="bench-author")
    missing = count - existing
    log(f"  inserting {missing:,} posts (one INSERT ... SELECT generate_series) ...")
    start = time.perf_counter()
    with connection.cursor() as cursor:
        # Spread created_at over the past so the timeline order is realistic, newest first.
        cursor.execute(
            "INSERT INTO casusult_post (author_id, body, created_at, impressions)"
            " SELECT %s, 'Benchmark post ' || g || ': somebody needs a logo for a ramen shop.',"
            " now() - make_interval(secs => g), 0 FROM generate_series(1, %s) AS g",
            [author.pk, missing],
        )
        cursor.execute("VACUUM ANALYZE casusult_post")
    log(f"  inserted in {time.perf_counter() - start:.1f} s")
    return count


def all_post_ids():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM casusult_post ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


def ensure_viewers(count):
    """`count` users who act as logged-in viewers; returns them in a stable order."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    names = [f"{VIEWER_PREFIX}{n}" for n in range(count)]
    have = set(user_model.objects.filter(username__in=names).values_list("username", flat=True))
    user_model.objects.bulk_create(
        [user_model(username=name, password="!") for name in names if name not in have]
    )
    by_name = {u.username: u for u in user_model.objects.filter(username__in=names)}
    return [by_name[name] for name in names]


def hit_model():
    """A django-hitcount style Hit row (one per impression), in a table the benchmark owns."""
    from django.apps import apps
    from django.db import models

    try:
        return apps.get_model("casusult", "BenchHit")
    except LookupError:
        pass

    class BenchHit(models.Model):
        # The columns django-hitcount's Hit stores for each impression.
        created = models.DateTimeField(auto_now_add=True, db_index=True)
        ip = models.CharField(max_length=40)
        session = models.CharField(max_length=40, db_index=True)
        user_agent = models.CharField(max_length=255)
        post_id = models.BigIntegerField(db_index=True)

        class Meta:
            app_label = "casusult"  # registered at run time only; no migration, never in the app
            db_table = HIT_TABLE
            managed = False

        def __str__(self):
            return f"hit of post {self.post_id} by {self.session}"

    return BenchHit


def ensure_hit_table():
    from django.db import connection

    model = hit_model()
    if HIT_TABLE not in connection.introspection.table_names():
        with connection.schema_editor() as editor:
            editor.create_model(model)
    return model


def vacuum_history():
    """The same for the history tables the flush upserts into."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in (
            "impressions_daily",
            "impressions_daily_open",
            "impressions_daily_leaders",
            "impressions_period",
            "impressions_site_daily",
        ):
            cursor.execute(f"VACUUM {table}")


def vacuum_posts(analyze=False):
    """Reclaim the dead row versions earlier contenders left, and write the pages they dirtied
    (a CHECKPOINT), so no contender pays for another's: without it, the checkpoint that a
    1,000,000-row contender's WAL triggers falls in the next contender's run, and each run
    starts at a different distance from the last checkpoint (full-page images in the WAL)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE casusult_post" if analyze else "VACUUM casusult_post")
    checkpoint()


def warm_tables(tables):
    """Read `tables` and their indexes into the operating system's page cache (untimed): right
    after a boot, the first rounds read them from the disk and ran slower than the later ones
    (the 1,000,000-post flush: ours 18.6 to 19.5 s in the first three rounds, 12.9 s in the
    fourth). pg_prewarm (PostgreSQL's contrib) when the server has it, else a scan of each table."""
    from django.db import DatabaseError, connection, transaction

    with connection.cursor() as cursor:
        try:
            with transaction.atomic():
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            prewarm = True
        except DatabaseError:
            prewarm = False
        for table in tables:
            if prewarm:
                cursor.execute(
                    "SELECT sum(pg_prewarm(oid, 'read')) FROM pg_class WHERE oid = %(t)s::regclass"
                    " OR oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = %(t)s::regclass)",
                    {"t": table},
                )
            else:
                cursor.execute(f"SELECT count(*) FROM {table}")


def wal_position():
    """Bytes of WAL the server has inserted so far (every session's, exact at once): a run's WAL
    is the difference, as nothing else writes to the benchmark database meanwhile."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
        return int(cursor.fetchone()[0])


@contextlib.contextmanager
def wal_compression(setting):
    """This session's wal_compression set to `setting` for the block, then reset. Yields False,
    setting nothing, when the server refuses it (not a superuser, a build without that method)."""
    from django.db import DatabaseError, connection

    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SET wal_compression = {setting}")
    except DatabaseError:
        yield False
        return
    try:
        yield True
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET wal_compression")


def checkpoint():
    """Write every dirty page now (untimed), so the next run starts right after a checkpoint."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")


def free_port():
    """A free loopback port for a server the benchmarks start (see devservices.free_port)."""
    return devservices.free_port()
