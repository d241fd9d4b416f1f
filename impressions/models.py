"""The impressions app's tables: the flush ledger and the per-day history with its rollups."""

from django.db import DEFAULT_DB_ALIAS, models
from django.utils.translation import gettext_lazy as _


class DefaultDatabaseManager(models.Manager):
    """Every query on the 'default' database, reads too, whatever DATABASE_ROUTERS says.

    The flush and the roll-up read what they write, in their transactions and under their locks,
    on the default connection (impressions.E009 keeps the counted model there too): a read
    router's replica, a moment behind, would roll up the wrong days and mix two snapshots of the
    history in one reading.
    """

    def get_queryset(self):
        return super().get_queryset().using(DEFAULT_DB_ALIAS)


class Flush(models.Model):
    """The flush ledger: one row per flush id; its presence with shards applied is the exactly-once gate."""

    class Outcome(models.TextChoices):
        APPLIED = "applied", _("applied")
        EMPTY = "empty", _("nothing pending")
        FAILED = "failed", _("failed")
        # Some batches committed, not all (the flush runs, or stopped: the next one goes on).
        RUNNING = "running", _("in progress")

    id = models.CharField(primary_key=True, max_length=40)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    # Redis shards whose snapshot of this flush is in the database: never applied twice.
    shards_applied = models.JSONField(default=list, blank=True)
    # {shard: the last field of its snapshot applied} for shards applied in part (batches
    # committed, not all): the next batch starts after it (impressions/batches.py). A database
    # default too, as for every column added after 0001 (tests/impressions/test_migrations.py):
    # the row of an older version, which applied each shard whole or not at all, has none.
    marks = models.JSONField(default=dict, db_default={}, blank=True)
    # The field the order of its batches starts at ("": the first): the parts of a window start
    # at different places (impressions/batches.py). Set with the row, never changed.
    start = models.TextField(default="", db_default="", blank=True)
    posts_updated = models.PositiveIntegerField(default=0)
    impressions_applied = models.PositiveBigIntegerField(default=0)
    posts_dropped = models.PositiveIntegerField(
        default=0, help_text=_("posts that no longer exist")
    )
    impressions_dropped = models.PositiveBigIntegerField(default=0)
    # Set when a later flush applied this flush's snapshot after it crashed or stalled.
    recovered_by = models.CharField(max_length=40, blank=True)
    error = models.TextField(blank=True)

    objects = DefaultDatabaseManager()

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["started_at"], name="flush_started_idx")]
        verbose_name = _("flush")
        verbose_name_plural = _("flushes")

    def __str__(self):
        return f"flush {self.id} ({self.outcome})"


# The history (issue 11). impressions/stats.py reads it; the flush writes it, in the same
# transaction as the totals and the ledger, so that every row below is always in step with
# the totals. No foreign key: the counted model comes from settings and its rows may be deleted.


class DayCounts(models.Model):
    """Impressions of one counted object on one day (the day they were recorded, in TIME_ZONE)."""

    pk = models.CompositePrimaryKey("object_id", "day")
    object_id = models.BigIntegerField()
    day = models.DateField()
    count = models.PositiveBigIntegerField()

    objects = DefaultDatabaseManager()

    class Meta:
        abstract = True

    def __str__(self):
        return f"{self.object_id} on {self.day}: {self.count}"


class DailyImpressions(DayCounts):
    """The days rolled up: impressions of one counted object on one day.

    Holds the days up to HistoryRollup.rolled_through; the later (open) days are in
    OpenDailyImpressions. Writers: the first flush of a day moves the ended days' rows here; a
    flush that adds to a day already rolled up (late, or recorded with an old `now=`) upserts
    `INSERT … ON CONFLICT (object_id, day) DO UPDATE SET count = count + EXCLUDED.count`. No row
    for a day without impressions. For every object, its rows here and in the open table sum to
    the impressions applied to its total (until pruning removes days).
    """

    # Day first (migration 0010): the roll-up inserts a day's rows at the end of this index, in
    # object order, and a late count lands among its day's rows. Object first, each row moved
    # went to a leaf of its own (an object's 400 days sit together), whose first change after a
    # checkpoint logged the whole page: a day's roll-up of 100,000 objects wrote 913 MB of WAL,
    # 759 MB of it this key's, against 154 MB day first.
    pk = models.CompositePrimaryKey("day", "object_id")

    class Meta:
        db_table = "impressions_daily"
        verbose_name = _("daily impressions")
        verbose_name_plural = _("daily impressions")
        indexes = [
            # Top objects of a day (index order, LIMIT), the top-of-a-range search and pruning
            # (day < cutoff). The primary key (object_id, day) serves one object's history.
            models.Index(fields=["day", "-count", "object_id"], name="impressions_daily_top"),
        ]


class OpenDailyImpressions(DayCounts):
    """Impressions of one counted object on a day not rolled up yet (after rolled_through).

    Every flush adds to today's rows, so this table stays small (the open days only, usually
    today) and has no index on `count`: with a free half in each page (fillfactor 50, migration
    0004) PostgreSQL updates the rows in place (HOT), writing no index entries. The first flush
    of a day moves the ended days' rows to DailyImpressions, which has the count index that the
    top-of-a-day search reads, and adds them to the week and month rows, in one transaction.
    A day's rows are in exactly one of the two tables: the reads take days after rolled_through
    from here, the others from DailyImpressions.
    """

    class Meta:
        db_table = "impressions_daily_open"
        # `day` never changes, so this index does not stop the in-place updates; it finds a day's
        # rows for the reads, the roll-up and pruning.
        indexes = [models.Index(fields=["day"], name="impressions_daily_open_day")]
        verbose_name = _("daily impressions of an open day")
        verbose_name_plural = _("daily impressions of open days")


class OpenDayLeaders(models.Model):
    """The top of each day not rolled up yet, kept exact by the flush: every object among a day's
    LEADERS highest counts (count descending, ties by id) is here with its count.

    The open rows have no count index (their updates stay HOT); this small table has one, so the
    top of today is an index read. Writer: each flush batch, after its history rows, upserts the
    rows it changed whose count reaches the day's LEADERS-th row here, of its own LEADERS highest
    of the day at most (a count only grows: an object can enter the top only when a flush adds
    to it). A row that fell out of the top may
    stay, with an older count, below the top (harmless: it is never read). The roll-up deletes a
    day's rows once the day is rolled up (the daily table's index serves it then).
    """

    LEADERS = 2000

    pk = models.CompositePrimaryKey("day", "object_id")
    day = models.DateField()
    object_id = models.BigIntegerField()
    count = models.PositiveBigIntegerField()

    objects = DefaultDatabaseManager()

    class Meta:
        db_table = "impressions_daily_leaders"
        verbose_name = _("leaders of an open day")
        verbose_name_plural = _("leaders of open days")
        indexes = [
            models.Index(fields=["day", "-count", "object_id"], name="impressions_leaders_top"),
        ]

    def __str__(self):
        return f"{self.object_id} on {self.day}: {self.count}"


class PeriodImpressions(models.Model):
    """Rollup: impressions of one object in one ISO week or one calendar month, up to a day.

    A row holds the object's daily rows of its period up to HistoryRollup.rolled_through (the
    ISO week's Monday is `start` = impressions.periods.week_of(day), the month's 1st is
    periods.month_of(day)); the later days are only daily rows, and the reads add them.
    Writers: the first flush of a day adds the ended days' daily rows (rolls them up); a flush
    that adds to a day already rolled up adds the same count here too; both upsert on
    (period, start, object_id). Pruning: delete rows whose period starts before the oldest kept
    day (stats.py never reads a period that starts before it).
    """

    class Period(models.TextChoices):
        WEEK = "w", _("ISO week (starts on Monday)")
        MONTH = "m", _("calendar month")

    pk = models.CompositePrimaryKey("period", "start", "object_id")
    period = models.CharField(max_length=1, choices=Period.choices)
    start = models.DateField()
    object_id = models.BigIntegerField()
    count = models.PositiveBigIntegerField()

    objects = DefaultDatabaseManager()

    class Meta:
        db_table = "impressions_period"
        verbose_name = _("impressions per period")
        verbose_name_plural = _("impressions per period")
        indexes = [
            # Top objects of a week or month straight from the index; the primary key answers
            # "these objects in these periods" (the exact sums of the top-of-a-range search).
            models.Index(
                fields=["period", "start", "-count", "object_id"], name="impressions_period_top"
            ),
        ]

    def __str__(self):
        return f"{self.object_id} in {self.period} {self.start}: {self.count}"


class HistoryRollup(models.Model):
    """One row: how far the daily roll-up (impressions/rollup.py) has moved the ended days.

    Every day up to `rolled_through` is in the daily rows and the week and month rows. While a
    day is being rolled up (`rolling_day`), its rows of objects up to `rolling_mark` are there
    too and its other rows still open; every later day is open. The rolling day may be one up to
    `rolled_through` (open rows of it again: a restored backup, an older build's flush), which
    never goes down. Only the roll-up writes it.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    rolled_through = models.DateField(null=True, blank=True)
    rolling_day = models.DateField(null=True, blank=True)
    rolling_mark = models.BigIntegerField(null=True, blank=True)  # None: no row moved yet
    # Progress, for the dashboard: the rolling day's open rows when it started, rows moved since.
    # Database defaults: an older version inserts the row without them (migration 0009).
    rolling_rows = models.PositiveBigIntegerField(default=0, db_default=0)
    rolling_moved = models.PositiveBigIntegerField(default=0, db_default=0)
    started_at = models.DateTimeField(null=True, blank=True)  # of the last roll-up
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = DefaultDatabaseManager()

    class Meta:
        db_table = "impressions_rollup"
        verbose_name = _("history rollup")

    def __str__(self):
        if self.rolling_day:
            return (
                f"rolling up {self.rolling_day}: {self.rolling_moved} of {self.rolling_rows} rows"
            )
        return f"rolled up through {self.rolled_through}"

    def is_rolled(self, day, object_id):
        """Whether (object, day) is in the rolled-up rows (daily, week and month), not open."""
        if self.rolled_through is not None and day <= self.rolled_through:
            return True
        return (
            day == self.rolling_day
            and self.rolling_mark is not None
            and (object_id <= self.rolling_mark)
        )


class SiteDailyImpressions(models.Model):
    """Site-wide impressions per day (the dashboard's chart): the sum of that day's daily rows.

    Writer: per batch, upsert each day's sum of the batch `ON CONFLICT (day) DO UPDATE SET
    count = count + EXCLUDED.count`; prune with the daily rows.
    """

    day = models.DateField(primary_key=True)
    count = models.PositiveBigIntegerField()

    objects = DefaultDatabaseManager()

    class Meta:
        db_table = "impressions_site_daily"
        verbose_name = _("site impressions per day")
        verbose_name_plural = _("site impressions per day")
        ordering = ["day"]

    def __str__(self):
        return f"{self.day}: {self.count}"


class Dashboard(SiteDailyImpressions):
    """No table: gives the admin dashboard its place in the app list and its URL."""

    class Meta:
        proxy = True
        verbose_name = _("dashboard")
        verbose_name_plural = _("dashboard")
