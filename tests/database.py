"""A PostgreSQL session of the test's own beside Django's (another client of the same server)."""

import psycopg
from django.db import connection


def other_connection(dbname=None, **options):
    """A new psycopg connection to the test database (or `dbname`) with Django's credentials."""
    params = connection.settings_dict
    return psycopg.connect(
        host=params["HOST"] or "127.0.0.1",
        port=params["PORT"] or 5432,
        user=params["USER"] or "postgres",
        dbname=dbname or params["NAME"],
        **options,
    )
