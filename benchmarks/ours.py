"""Our code under test, imported lazily: when it is missing the table says so, never a number."""

from unittest import mock

from .harness import ContenderFailed


def _load(module, name):
    try:
        imported = __import__(module, fromlist=[name])
        return getattr(imported, name)
    except (ImportError, AttributeError) as error:
        raise ContenderFailed(
            f"{module}.{name} is not available ({error}); ours cannot be measured until the"
            " impressions app provides it"
        ) from None


def record():
    """impressions.record(request, posts): what the timeline views call."""
    return _load("impressions", "record")


def record_impressions():
    """impressions.recorder.record_impressions(viewer_key, post_ids): the Redis side alone."""
    return _load("impressions.recorder", "record_impressions")


def read_snapshot():
    """impressions.flush.read_snapshot(client, key): one snapshot's {field: count}."""
    return _load("impressions.flush", "read_snapshot")


def redis_client():
    return _load("impressions.recorder", "get_client")()


def flush_pending():
    """impressions.flush.flush_pending(batch_size=None): snapshot, batched UPDATEs, ledger, commit."""
    return _load("impressions.flush", "flush_pending")


def patient_redis():
    """Settings for untimed set-up through ours: a long Redis timeout, so a busy machine does
    not drop impressions that a benchmark then expects to find (the 50 ms default is for views).
    """
    from django.test import override_settings

    return override_settings(IMPRESSIONS_REDIS_TIMEOUT=10.0)


def connected_flush_client():
    """Build the flush's Redis client and open its two connections (the flush's and its reader
    thread's), as a worker's flush after its first finds them (cached for the process):
    patient_redis()'s settings change drops the cached clients, and the next flush built its
    client in its own time (an INFO to tell a cluster, two connections' handshakes: 11 round
    trips of a standalone server)."""
    pool = _load("impressions.redis_client", "get_flush_client")().connection_pool
    opened = [pool.get_connection(), pool.get_connection()]
    for connection in opened:
        connection.connect()
        pool.release(connection)


def history_off():
    """The flush without the per-day history, to time what the history costs (flush benchmark)."""
    ledger = _load("impressions", "ledger")
    if not hasattr(ledger, "WRITE_HISTORY"):
        raise ContenderFailed("impressions.ledger has no WRITE_HISTORY switch")
    return mock.patch.object(ledger, "WRITE_HISTORY", False)
