"""The daily salt of cookie-less viewers' digests: random per UTC day, kept in Redis until it ends.

Random rather than derived (an HMAC of SECRET_KEY and the date): a derived salt can be computed
again by anyone who holds the key, for any past day, and IPv4 addresses are few enough to try
them all against a digest. A random salt that only Redis holds, until its day is over (plus a
grace for hosts' clocks), is gone for good afterwards, and with it any link from digest to client.
"""

import functools
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta

from . import keys
from .conf import conf
from .holdoff import holdoff
from .redis_client import REDIS_FAILURES, get_client

DAY = timedelta(days=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Hosts' clocks differ a little: the key outlives its day by this much.
GRACE_SECONDS = 600
# Re-read this often: if Redis lost the key (a restart without data), a new salt is made and every
# process converges on it within this time.
REFRESH_SECONDS = 60

_lock = threading.Lock()
_cached = {}  # the current day only: {(Redis URL, key): (salt, monotonic time read)}


def utc_day(now=None):
    """The UTC date as YYYYMMDD (`now`: a Unix time, default the current time)."""
    return day_name(int((time.time() if now is None else now) // 86400))


@functools.lru_cache(maxsize=4)
def day_name(days_since_epoch):
    # Once per day and process, not a strftime per request.
    return (EPOCH + timedelta(days=days_since_epoch)).strftime("%Y%m%d")


def daily_salt(day):
    """The salt of `day` (YYYYMMDD), made in Redis by the first process that asks for it.

    Raises redis errors when Redis does not answer and this process has no salt for that day yet.
    """
    where = (conf.REDIS_URL, keys.salt_key(day))
    cached = _cached.get(where)
    if cached is not None and time.monotonic() - cached[1] < REFRESH_SECONDS:
        return cached[0]
    try:
        with holdoff.attempt():
            salt = fetch_salt(day)
    except (*REDIS_FAILURES, LookupError):
        if cached is not None:  # the salt of today does not change; keep counting with it
            return cached[0]
        raise
    with _lock:
        # Only the day asked for is kept: this process must not hold earlier days' salts.
        _cached.clear()
        _cached[where] = (salt, time.monotonic())
    return salt


def fetch_salt(day):
    """SET NX the key with a new random salt that expires after its day, then GET what won."""
    ends = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC) + DAY
    # A host whose clock lags asks for a day that is over: its salt lives a grace period only.
    expires = max(int(ends.timestamp()), int(time.time())) + GRACE_SECONDS
    pipe = get_client().pipeline(transaction=False)
    pipe.set(keys.salt_key(day), secrets.token_hex(16), nx=True, exat=expires)
    pipe.get(keys.salt_key(day))
    _, salt = pipe.execute()
    if salt is None:  # expired between the two commands: only possible long after its day
        raise LookupError(f"the salt of {day} is gone")
    return salt


def forget():
    """Drop this process's copy (tests that empty Redis)."""
    with _lock:
        _cached.clear()
