"""System-table migrations: the oldest supported database upgrades to the same schema a new one gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from keel.cli.main import app
from keel.context import Context
from keel.errors import KeelError
from keel.metadata.apply import ensure_initialised
from keel.storage import migrate
from keel.storage import system as S
from keel.storage.engine import Database


def test_the_recorded_head_is_alembics_newest_revision() -> None:
    """Start-up checks a database against ``migrate.HEAD`` without loading Alembic; a new migration must move it."""
    assert migrate.script_head() == migrate.HEAD


def _shape(db: Database) -> dict[str, Any]:
    """Columns (name, nullability) and index column lists of the storage layer's system tables."""
    out: dict[str, Any] = {}
    with db.read() as conn:
        insp = sa.inspect(conn)
        for t in S.system.sorted_tables:
            out[t.name] = (
                sorted((c["name"], c["nullable"]) for c in insp.get_columns(t.name)),
                sorted((tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(t.name)),
            )
    return out


def test_oldest_database_upgrades_to_the_fresh_schema(db_url: str, tmp_path: Path) -> None:
    old = Database(db_url)
    migrate.upgrade_empty_to(old, migrate.BASELINE)
    with old.transaction() as conn:  # data written by the old version must survive the upgrade
        S.set_meta(conn, "org_id", "00D000000000001AAA")
        conn.execute(sa.insert(S.sequences).values(name="n", value=41))
    with pytest.raises(KeelError) as exc:
        migrate.require_current(old)
    assert exc.value.code == "MIGRATION_REQUIRED" and "keel migrate" in exc.value.message
    after = migrate.upgrade(old)
    assert after.up_to_date and after.current == migrate.head_revision()
    migrate.require_current(old)
    with old.read() as conn:
        assert S.get_meta(conn, "system_schema") == str(S.SCHEMA_VERSION)
        assert S.get_meta(conn, "org_id") == "00D000000000001AAA"
        assert conn.execute(sa.select(S.sequences.c.value)).scalar() == 41
    fresh_url = f"sqlite:///{tmp_path / 'fresh.db'}" if old.dialect == "sqlite" else None
    if fresh_url is None:
        from tests.conftest import drop_pg_schema, pg_schema_url

        fresh_url, schema = pg_schema_url()
    fresh = Database(fresh_url)
    try:
        ensure_initialised(fresh)
        assert migrate.status(fresh).up_to_date
        assert _shape(old) == _shape(fresh)
    finally:
        fresh.dispose()
        old.dispose()
        if old.dialect == "postgresql":
            drop_pg_schema(schema)


def test_pre_alembic_database_is_refused_then_migrated(org: Context) -> None:
    """An organisation made before migrations existed: no version table, no new index."""
    db = org.db
    with db.transaction() as conn:
        conn.exec_driver_sql(f'DROP TABLE "{migrate.VERSION_TABLE}"')
        conn.exec_driver_sql('DROP INDEX "ix_keel_outbox_age"')
        S.set_meta(conn, "system_schema", "1")
    assert migrate.status(db).current == migrate.BASELINE
    runner = CliRunner()
    up = runner.invoke(app, ["serve", "--db", db.url, "--port", "0", "--https-port", "0"])
    assert up.exit_code == 1
    assert "MIGRATION_REQUIRED" in up.output and "keel migrate" in up.output
    check = runner.invoke(app, ["migrate", "--db", db.url, "--check"])
    assert check.exit_code == 1 and "Pending" in check.output
    done = runner.invoke(app, ["migrate", "--db", db.url])
    assert done.exit_code == 0, done.output
    assert migrate.status(db).up_to_date
    again = runner.invoke(app, ["migrate", "--db", db.url])
    assert "current" in again.output


def test_migrate_fills_the_sharing_tables_an_upgrade_left_empty(org: Context) -> None:
    """Migration 0004 creates the role-tree positions and inherited-share rows empty; ``keel migrate`` runs the
    recalculation that fills them, so managers inherit their subordinates' shares after an upgrade."""
    from keel.records import save_many
    from keel.security.tables import role_spans, share_reach
    from keel.services.security import wire_security

    ctx = wire_security(org)
    boss = save_many(ctx, "UserRole", [{"Name": "Director"}])[0].id
    save_many(ctx, "UserRole", [{"Name": "Analyst", "ParentRoleId": boss}])
    with org.db.transaction() as conn:  # as migration 0004 leaves an existing organisation
        conn.execute(sa.delete(share_reach))
        conn.execute(sa.delete(role_spans))
    runner = CliRunner()
    check = runner.invoke(app, ["migrate", "--db", org.db.url, "--check"])
    assert check.exit_code == 1 and "sharing recalculation" in check.output, check.output
    done = runner.invoke(app, ["migrate", "--db", org.db.url])
    assert done.exit_code == 0 and "Recalculated sharing" in done.output, done.output
    with org.db.read() as conn:
        spans = conn.execute(sa.select(role_spans.c.lo, role_spans.c.hi)).all()
    assert len(spans) == 2 and min(spans)[1] >= max(spans)[0]  # the director's span holds the analyst's
    again = runner.invoke(app, ["migrate", "--db", org.db.url, "--check"])
    assert again.exit_code == 0 and "current" in again.output, again.output


def test_migrate_adds_standard_objects_a_newer_keel_ships(org: Context) -> None:
    """An organisation from before ``QueueSobject`` existed gets it, and its data table, from ``keel migrate``."""
    from keel.metadata.store import load_snapshot

    old = org.schema().get_object("QueueSobject")
    with org.db.transaction() as conn:  # as an older Keel made the organisation: no such object or table
        conn.execute(sa.delete(S.fields).where(S.fields.c.object_id == old.id))
        conn.execute(sa.delete(S.objects).where(S.objects.c.id == old.id))
        conn.exec_driver_sql(f'DROP TABLE "{old.table}"')
        S.set_meta(conn, "schema_version", str(int(S.get_meta(conn, "schema_version") or 0) + 1))
    with org.db.read() as conn:
        assert load_snapshot(conn).find_object("QueueSobject") is None
    runner = CliRunner()
    check = runner.invoke(app, ["migrate", "--db", org.db.url, "--check"])
    assert check.exit_code == 1 and "QueueSobject" in check.output, check.output
    done = runner.invoke(app, ["migrate", "--db", org.db.url])
    assert done.exit_code == 0 and "Added standard objects: QueueSobject" in done.output, done.output
    with org.db.read() as conn:
        obj = load_snapshot(conn).get_object("QueueSobject")
        assert obj.key_prefix == "03g" and sa.inspect(conn).has_table(obj.table)
    assert runner.invoke(app, ["migrate", "--db", org.db.url, "--check"]).exit_code == 0


def test_migrate_rebuilds_report_indexes_a_newer_keel_derives_differently(org: Context) -> None:
    """Report indexes on privately shared objects now carry the owner and the shared flag (the sharing predicate
    reads them). An organisation made by an older Keel holds the old index under another name: ``keel migrate``
    drops it and builds the new one; the plan alone would see no change."""
    from keel.metadata.apply import apply_plan
    from keel.metadata.index_sync import pending
    from keel.metadata.package import parse_object
    from keel.metadata.plan import plan
    from keel.metadata.store import load_snapshot

    doc = {"object": "Case__c", "sharing": "private", "name_field": {"type": "text"},
           "fields": [{"name": "Stage__c", "type": "text", "length": 20}, {"name": "Amount__c", "type": "number"}],
           "indexes": [{"group_by": ["Stage__c"], "include": ["Amount__c"]}]}
    with org.db.read() as conn:
        before = load_snapshot(conn)
    apply_plan(org.db, plan(before, [*before.objects, parse_object(doc)]), org.metadata)
    with org.db.read() as conn:
        obj = load_snapshot(conn).get_object("Case__c")
        assert pending(conn) == []
    cols = {f.api_name: f.column for f in obj.fields}
    (name,) = [ix for ix in _index_names(org.db, obj.table) if ix.startswith("cx_")]
    with org.db.transaction() as conn:  # as an older Keel built it: no owner or shared flag
        conn.exec_driver_sql(f'DROP INDEX "{name}"')
        conn.exec_driver_sql(f'CREATE INDEX "cx_{obj.table}_0ld" ON "{obj.table}" '
                             f'("{cols["Stage__c"]}", "{cols["Amount__c"]}", is_deleted, id)')
    runner = CliRunner()
    check = runner.invoke(app, ["migrate", "--db", org.db.url, "--check"])
    assert check.exit_code == 1 and "report indexes to rebuild on 1 table" in check.output, check.output
    done = runner.invoke(app, ["migrate", "--db", org.db.url])
    assert done.exit_code == 0 and "1 created, 1 dropped" in done.output, done.output
    assert [ix for ix in _index_names(org.db, obj.table) if ix.startswith("cx_")] == [name]
    with org.db.read() as conn:
        if conn.dialect.name == "sqlite":
            ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).scalar()
        else:
            ddl = conn.exec_driver_sql("SELECT indexdef FROM pg_indexes WHERE indexname = %s "
                                       "AND schemaname = current_schema()", (name,)).scalar()
    assert "owner_id" in str(ddl) and "is_shared" in str(ddl), ddl
    assert runner.invoke(app, ["migrate", "--db", org.db.url, "--check"]).exit_code == 0


def _index_names(db: Database, table: str) -> list[str]:
    with db.read() as conn:
        if conn.dialect.name == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
        else:
            sql = "SELECT indexname FROM pg_indexes WHERE tablename = %s AND schemaname = current_schema()"
        return sorted(str(r[0]) for r in conn.exec_driver_sql(sql, (table,)))
