"""Invalid traffic: hourly budgets of new anonymous viewers per IP address, and of counted
impressions per viewer (the record script keeps that one, in the same round trip).

Both count per clock hour in keys that expire after it. An address is known by a digest keyed by
the day's salt (salt.py), never by itself; an IPv6 address by its /64, which one client holds.
"""

import hashlib
import hmac
import ipaddress
import time

from . import keys
from .conf import conf
from .holdoff import holdoff
from .redis_client import get_client
from .salt import daily_salt
from .scripts import evalsha

HOUR = 3600
# An hour's key outlives it a little: hosts' clocks differ.
KEY_TTL = HOUR + 60


def hour_of(timestamp=None):
    """The clock hour (whole hours since the epoch) of a Unix time, default now."""
    return int((time.time() if timestamp is None else timestamp) // HOUR)


def grant_new_viewer(ip, day, digest, sets_cookie):
    """True when address `ip` may bring one more anonymous viewer this hour (and it is counted).

    `digest`: the viewer's cookie-less digest; `sets_cookie`: the response gives it a visitor
    cookie, a new viewer from tomorrow on. Raises redis errors; the caller loses the impressions.
    """
    budget = conf.IP_NEW_VIEWERS_PER_HOUR
    if not budget:
        return True
    key = keys.new_viewers_key(ip_digest(ip, day), hour_of())
    with holdoff.attempt():
        granted = evalsha(
            get_client(), "NEW_VIEWER", [key], [digest, int(sets_cookie), budget, KEY_TTL]
        )
    return granted == 1


def ip_digest(ip, day):
    """24 hex digits of HMAC(the day's salt, the address's network): the budget's key."""
    network = network_of(ip)
    return hmac.new(daily_salt(day), f"ip\n{network}".encode(), hashlib.sha256).hexdigest()[:24]


def network_of(ip):
    """What one client holds: an IPv4 address, an IPv6 /64 (clients get whole /64s to pick from)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip  # not an address (a misconfigured proxy): budgeted as it is
    if address.version == 6:
        if address.ipv4_mapped:  # ::ffff:192.0.2.1 is 192.0.2.1
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)
