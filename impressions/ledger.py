"""The database side of a flush: batched updates and the ledger row that makes them exactly-once."""

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from . import history_writer, stats
from .arrays import BatchArrays
from .conf import conf, counted_model
from .models import Flush

logger = logging.getLogger(__name__)

# The flush benchmark turns this off to time a flush without the history (benchmarks/flush.py).
# Not a setting: the history is always written.
WRITE_HISTORY = True


@dataclass
class Applied:
    """What one apply step did to the database."""

    posts_updated: int = 0
    impressions_applied: int = 0
    posts_dropped: int = 0
    impressions_dropped: int = 0
    shards: list[int] = field(default_factory=list)

    def __iadd__(self, other):
        self.posts_updated += other.posts_updated
        self.impressions_applied += other.impressions_applied
        self.posts_dropped += other.posts_dropped
        self.impressions_dropped += other.impressions_dropped
        return self


def started_at_of(flush_id):
    """A flush id starts with its UTC start time; fall back to now for foreign ids."""
    try:
        return datetime.strptime(flush_id[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return timezone.now()


def apply_snapshots(
    flush_id, snapshots, *, batch_size, recovered_by="", before_commit=None, started_at=None
):
    """Apply {shard: {(post id, day): count}} of `flush_id`, skipping shards the ledger already has.

    `started_at`: when the flush started, if known to the microsecond (its id holds the second).

    The ledger row is inserted (or locked, if it exists) first in the same transaction, so two
    flushes applying the same snapshot serialise on it and the second finds the shard applied.
    """
    with transaction.atomic():
        Flush.objects.bulk_create(
            [
                Flush(
                    id=flush_id,
                    started_at=started_at or started_at_of(flush_id),
                    outcome=Flush.Outcome.FAILED,
                )
            ],
            ignore_conflicts=True,
        )
        row = Flush.objects.select_for_update().get(id=flush_id)
        fresh = sorted(set(snapshots) - set(row.shards_applied))
        counts = Counter()
        for shard in fresh:
            counts.update(snapshots[shard])
        applied = apply_counts(counts, batch_size)
        applied.shards = fresh
        row.shards_applied = sorted(set(row.shards_applied) | set(fresh))
        row.posts_updated += applied.posts_updated
        row.impressions_applied += applied.impressions_applied
        row.posts_dropped += applied.posts_dropped
        row.impressions_dropped += applied.impressions_dropped
        row.outcome = Flush.Outcome.APPLIED
        row.finished_at = timezone.now()
        row.error = ""
        if recovered_by and fresh:
            row.recovered_by = recovered_by
        row.save()
        if before_commit:
            before_commit()
    return applied


def apply_counts(counts, batch_size):
    """Add {(post id, day): count} to the totals and the history, `batch_size` posts a statement.

    Counts of posts that no longer exist are dropped, from the history too: a post's history
    always sums to what its total received.
    """
    applied = Applied()
    columns = counted_columns()
    by_day = Counter()
    if WRITE_HISTORY:
        rolled_through = history_writer.begin(stats.today())
    for totals, rows in batches(counts, batch_size):
        arrays = BatchArrays(totals)
        if connection.vendor == "postgresql":
            updated_ids = update_batch_postgresql(totals, columns, arrays)
        else:
            updated_ids = update_batch_portable(totals, columns)
        dropped = set(totals) - updated_ids
        if WRITE_HISTORY:
            if dropped:
                rows = [row for row in rows if row[0] not in dropped]
            # The totals' arrays are the rows' when each object has one row (one day) and stays.
            same = not dropped and len(rows) == len(totals)
            history_writer.add_days(rows, rolled_through, arrays if same else None)
            for _, day, count in rows:
                by_day[day] += count
        applied.posts_updated += len(updated_ids)
        applied.impressions_applied += sum(totals[post_id] for post_id in updated_ids)
        if dropped:
            lost = sum(totals[post_id] for post_id in dropped)
            applied.posts_dropped += len(dropped)
            applied.impressions_dropped += lost
            logger.warning(
                "dropped %d impressions of %d posts that no longer exist: %s",
                lost,
                len(dropped),
                sorted(dropped)[:20],
            )
    if WRITE_HISTORY:
        history_writer.add_site_days(by_day)  # last: see history_writer's lock order
    return applied


def batches(counts, batch_size):
    """Yield ({post id: total}, [(post id, day, count), …]) of `batch_size` posts, in (id, day) order.

    A fixed order avoids deadlocks between concurrent flushes; all the days of a post go in the
    batch of its total.
    """
    totals, rows = {}, []
    for (post_id, day), count in sorted(counts.items()):
        if post_id not in totals:
            if len(totals) == batch_size:
                yield totals, rows
                totals, rows = {}, []
            totals[post_id] = 0
        totals[post_id] += count
        rows.append((post_id, day, count))
    if totals:
        yield totals, rows


@dataclass(frozen=True)
class CountedColumns:
    """Where the counts go: IMPRESSIONS_MODEL's table, its primary key and IMPRESSIONS_COUNT_FIELD."""

    model: type
    table: str  # quoted, as are the columns
    pk: str
    count: str


def counted_columns():
    model = counted_model()
    quote = connection.ops.quote_name
    return CountedColumns(
        model=model,
        table=quote(model._meta.db_table),
        pk=quote(model._meta.pk.column),
        count=quote(model._meta.get_field(conf.COUNT_FIELD).column),
    )


def update_batch_postgresql(batch, columns, arrays=None):
    """One statement for the whole batch; returns the ids that exist."""
    arrays = arrays or BatchArrays(batch)
    table, pk, count = columns.table, columns.pk, columns.count
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS counted SET {count} = counted.{count} + d.n"
            " FROM unnest(%s::bigint[], %s::bigint[]) AS d(id, n)"
            f" WHERE counted.{pk} = d.id RETURNING counted.{pk}",
            [arrays.ids, arrays.counts],
        )
        return {row[0] for row in cursor.fetchall()}


def update_batch_portable(batch, columns, arrays=None):
    """Any database: find the rows that exist, then one prepared UPDATE run for each of them."""
    # The base manager, as the UPDATE below: a default manager that hides rows must not drop counts.
    found = columns.model._base_manager.filter(pk__in=list(batch)).values_list("pk", flat=True)
    existing = set(found)
    table, pk, count = columns.table, columns.pk, columns.count
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET {count} = {count} + %s WHERE {pk} = %s",
            [(batch[post_id], post_id) for post_id in sorted(existing)],
        )
    return existing


def record_outcome(flush_id, outcome, error="", started_at=None):
    """Note an empty or failed flush in the ledger, never overwriting an applied one."""
    Flush.objects.bulk_create(
        [Flush(id=flush_id, started_at=started_at or started_at_of(flush_id), outcome=outcome)],
        ignore_conflicts=True,
    )
    Flush.objects.filter(id=flush_id).exclude(outcome=Flush.Outcome.APPLIED).update(
        outcome=outcome, finished_at=timezone.now(), error=error[:2000]
    )


def prune_ledger():
    """Delete ledger rows older than IMPRESSIONS_LEDGER_RETENTION_DAYS; returns how many."""
    cutoff = timezone.now() - timedelta(days=conf.LEDGER_RETENTION_DAYS)
    deleted, _ = Flush.objects.filter(started_at__lt=cutoff).delete()
    return deleted
