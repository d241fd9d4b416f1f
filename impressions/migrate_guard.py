"""`migrate impressions zero` refused while a flush's snapshot waits in the buffer.

The migration drops the flush ledger, whose rows say which batches of each snapshot are applied
(the exactly-once gate), and keeps the counted model's count column. Migrated again, the next
flush applied a snapshot half-applied before from its first batch: those batches counted twice.
"""

from django.core.management import CommandError
from django.db import DEFAULT_DB_ALIAS

from redis_endpoints import redact_text

from .conf import conf
from .flush import shards_in_use, snapshots_by_flush
from .redis_client import REDIS_FAILURES, get_flush_client


def refuse_to_drop_the_ledger(sender, plan=None, using=DEFAULT_DB_ALIAS, stdout=None, **kwargs):
    """pre_migrate of this app: raise CommandError when the plan unapplies its first migration
    on the default database while the buffer holds snapshots (Redis not answering: a warning)."""
    if using != DEFAULT_DB_ALIAS or not conf.ENABLED:
        return
    if not any(back and m.app_label == sender.label and m.initial for m, back in plan or ()):
        return
    try:
        client = get_flush_client()
        waiting = snapshots_by_flush(client, shards=shards_in_use(client))
    except REDIS_FAILURES as error:
        if stdout is not None:
            stdout.write(
                "impressions: the buffer did not answer, so whether a flush's snapshot waits in"
                f" it is unknown ({redact_text(str(error))}); once the ledger is gone, such a"
                " snapshot would be applied again from its first batch."
            )
        return
    if waiting:
        raise CommandError(
            f"{len(waiting)} flush snapshot(s) wait in the impressions buffer ({min(waiting)}…):"
            " dropping the ledger, which says which of their batches are applied, would apply"
            " them again from the first. Run `manage.py flush_impressions` until it exits 0,"
            " or empty the buffer (docs/impressions/quickstart.md, Remove), then migrate."
        )
