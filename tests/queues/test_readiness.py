"""The worker's own /readyz (a project without probe routes) looks at the migrations too: a
worker against an unmigrated database fails every task."""

import json

import pytest

from queues import health
from tests.database import count_migration_loads, migrate_to


@pytest.mark.django_db(transaction=True)
def test_the_worker_s_own_readyz_is_503_while_a_migration_is_unapplied(monkeypatch, caplog):
    loads = count_migration_loads(monkeypatch, health)
    monkeypatch.setattr(health, "MIGRATIONS", health.Migrations())  # a new process
    monkeypatch.setattr(health, "MIGRATIONS_RECHECK_SECONDS", 60)
    migrate_to(("queues", "0002_queue_actions_permission"))
    try:
        status, _, body = health.own_readyz()
        again, _, _ = health.own_readyz()
    finally:
        migrate_to(("queues", "0003_queuestatus_table"))
    assert status.startswith("503") and again.startswith("503")
    assert json.loads(body)["checks"] == {
        "database": {"ok": True},
        "migrations": {"ok": False},
        "queue": {"ok": True},
    }
    assert "migrations failed (UnappliedMigrations)" in caplog.text
    assert len(loads) == 1
    monkeypatch.setattr(health, "MIGRATIONS_RECHECK_SECONDS", 0)
    assert health.own_readyz()[0] == "200 OK"
    assert health.own_readyz()[0] == "200 OK"
    assert len(loads) == 2
