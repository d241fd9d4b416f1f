"""manage.py flush_impressions: flush pending impressions now, in the foreground."""

import argparse

from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings

from impressions.conf import MAX_FLUSH_BATCH_SIZE, SETTINGS
from impressions.exceptions import FlushError
from impressions.flush import flush_pending
from redis_endpoints import redact_text


def batch_size(text):
    """`type=` of --batch-size: the range IMPRESSIONS_FLUSH_BATCH_SIZE accepts; else a usage error."""
    size = int(text) if text.strip().isdecimal() else 0
    if not 1 <= size <= MAX_FLUSH_BATCH_SIZE:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number from 1 to {MAX_FLUSH_BATCH_SIZE}"
        )
    return size


def key_prefix(text):
    """`type=` of --key-prefix: a value IMPRESSIONS_KEY_PREFIX accepts; else a usage error."""
    setting = SETTINGS["IMPRESSIONS_KEY_PREFIX"]
    if not setting.valid(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not {setting.expected}")
    return text


def redis_url(text):
    """`type=` of --redis-url: a value IMPRESSIONS_REDIS_URL accepts; else a usage error."""
    setting = SETTINGS["IMPRESSIONS_REDIS_URL"]
    if not setting.valid(text):
        raise argparse.ArgumentTypeError(f"{redact_text(text)!r} is not {setting.expected}")
    return text


class Command(BaseCommand):
    help = (
        "Flush pending impressions from Redis to the database now, in the foreground (for cron"
        " or EventBridge); also recovers snapshots left by crashed flushes. Exits 1 on failure."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size",
            type=batch_size,
            default=None,
            help="counters (an object, a day, a shard) per batch, one transaction each (default:"
            " IMPRESSIONS_FLUSH_BATCH_SIZE)",
        )
        parser.add_argument(
            "--key-prefix",
            type=key_prefix,
            default=None,
            help="flush the keys of this IMPRESSIONS_KEY_PREFIX instead (the one before it was"
            " changed: its pending counts are not read under the new one)",
        )

        parser.add_argument(
            "--redis-url",
            type=redis_url,
            default=None,
            help="flush the buffer on this server instead (IMPRESSIONS_REDIS_URL's before it was"
            " changed: its pending counts are not read from the new one)",
        )

    def handle(self, *args, batch_size=None, key_prefix=None, redis_url=None, **options):
        other = {} if key_prefix is None else {"IMPRESSIONS_KEY_PREFIX": key_prefix}
        if redis_url is not None:
            # Another server than the settings describe: its mode is asked, not assumed.
            other.update(IMPRESSIONS_REDIS_URL=redis_url, IMPRESSIONS_REDIS_CLUSTER="auto")
        try:
            # By hand: a flush the schedule has queued still runs, for what comes after.
            with override_settings(**other):
                report = flush_pending(
                    batch_size=batch_size, keep_schedule=True, other_buffer=bool(other)
                )
        except FlushError as error:
            raise CommandError(f"could not flush: {redact_text(str(error))}") from error
        if options["verbosity"]:
            self.stdout.write(str(report))
