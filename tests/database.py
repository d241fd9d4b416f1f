"""A PostgreSQL session of the test's own beside Django's (another client of the same server),
and how many connections a pool of Django's has out."""

import psycopg
from django.db import connection


def other_connection(dbname=None, **options):
    """A new psycopg connection to the test database (or `dbname`) with Django's credentials;
    `options` may name another host or port."""
    params = connection.settings_dict
    address = {"host": params["HOST"] or "127.0.0.1", "port": params["PORT"] or 5432}
    return psycopg.connect(
        **(address | options), user=params["USER"] or "postgres", dbname=dbname or params["NAME"]
    )


def checked_out(pool):
    """How many connections of a psycopg_pool pool are out of it (in use, or never given back)."""
    stats = pool.get_stats()
    return stats["pool_size"] - stats["pool_available"]
