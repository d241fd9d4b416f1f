"""Which Redis/Valkey URLs name a cluster-mode endpoint, from the text alone (no network).

Both the impression buffer (which then picks RedisCluster) and the RQ backend (which then refuses
the endpoint) need this; it lives here so that neither app imports the other. Standard library only.
"""

# The distribution's version (distributions/redis_endpoints/pyproject.toml reads it), semantic.
__version__ = "0.1.0"

import re
import urllib.parse

SERVERLESS_HOST = re.compile(r"\.serverless\.[a-z0-9-]+\.cache\.amazonaws\.com(\.cn)?$")
CLUSTER_WORDS = {"1", "true", "yes", "on"}


def cluster_endpoint_reason(url: str) -> str | None:
    """Why `url` is a known cluster-mode endpoint, or None."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme.endswith("+cluster") or parts.scheme.startswith("rediss+cluster"):
        return f"the URL scheme {parts.scheme!r} is a cluster scheme"
    if SERVERLESS_HOST.search(host):
        return f"{host} is an ElastiCache Serverless endpoint, which always runs in cluster mode"
    if ".clustercfg." in f".{host}.":
        return f"{host} is an ElastiCache cluster configuration endpoint"
    query = urllib.parse.parse_qs(parts.query)
    if any(value.lower() in CLUSTER_WORDS for value in query.get("cluster", [])):
        return "the URL says cluster=true"
    return None


def redact(url: str) -> str:
    """`url` with its password replaced by ***, fit for logs and error messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url
