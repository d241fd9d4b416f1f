"""A PostgreSQL session of the test's own beside Django's (another client of the same server)."""

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
