"""Metadata changes: validate → plan → apply in one transaction, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from keel.context import Context
from keel.errors import MetadataError
from keel.metadata.apply import apply_plan
from keel.metadata.package import load_package, parse_object
from keel.metadata.plan import plan
from keel.metadata.store import load_snapshot
from keel.records import save_many
from keel.services.metadata import apply_package

FIXTURE = Path(__file__).parent.parent / "fixtures" / "every_type"


def _apply(ctx: Context, *docs: dict[str, Any], delete: tuple[str, ...] = ()) -> list[str]:
    with ctx.db.read() as conn:
        before = load_snapshot(conn)
    p = plan(before, [parse_object(d) for d in docs], delete=delete)
    apply_plan(ctx.db, p, ctx.metadata)
    return [op.kind for op in p.ops]


def _tables(ctx: Context) -> set[str]:
    with ctx.db.read() as conn:
        return set(sa.inspect(conn).get_table_names())


ITEM = {"object": "Item__c", "fields": [{"name": "Code__c", "type": "text", "length": 10}]}


def test_package_applies_and_replanning_is_empty(org: Context) -> None:
    p = apply_package(org, FIXTURE)
    assert [op.kind for op in p.ops] == ["create_object", "create_object"]
    with org.db.read() as conn:
        snap = load_snapshot(conn)
    assert snap == p.after
    assert plan(snap, load_package(FIXTURE)).empty
    pos = snap.get_object("Position__c")
    assert pos.key_prefix.startswith("a0") and pos.table in _tables(org)


def test_add_rename_widen_and_delete(org: Context) -> None:
    _apply(org, ITEM)
    save_many(org, "Item__c", [{"Name": "one", "Code__c": "A1"}])
    ops = _apply(org, {"object": "Item__c", "label": "Thing", "fields": [
        {"name": "Sku__c", "type": "text", "length": 40, "renamed_from": "Code__c"},
        {"name": "Qty__c", "type": "number"}]})
    assert ops == ["rename_field", "update_field", "add_field", "update_object"]
    snap = org.schema()
    item = snap.get_object("Item__c")
    assert item.label == "Thing" and item.get_field("Sku__c").length == 40
    long = "x" * 30
    save_many(org, "Item__c", [{"Name": "two", "Sku__c": long, "Qty__c": 3}])
    with org.db.read() as conn:
        t = item.table
        col = item.get_field("Sku__c").column
        assert {r[0] for r in conn.exec_driver_sql(f'SELECT "{col}" FROM "{t}"')} == {"A1", long}
    assert _apply(org, {"object": "Item__c", "label": "Thing", "fields": [
        {"name": "Sku__c", "type": "text", "length": 40}]}) == ["delete_field"]
    assert org.schema().get_object("Item__c").find_field("Qty__c") is None
    ops = _apply(org, delete=("Item__c",))
    assert ops == ["delete_object"] and item.table not in _tables(org)


def test_rename_object_keeps_data(org: Context) -> None:
    _apply(org, ITEM)
    save_many(org, "Item__c", [{"Name": "kept"}])
    assert _apply(org, {**ITEM, "object": "Widget__c", "renamed_from": "Item__c"})[0] == "rename_object"
    schema = org.schema()
    assert schema.find_object("Item__c") is None
    with org.db.read() as conn:
        assert conn.exec_driver_sql(f'SELECT name FROM "{schema.get_object("Widget__c").table}"').scalar() == "kept"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Code__c", "type": "text", "length": 3}, "would truncate 2 row(s)"),
        ({"name": "Code__c", "type": "text", "length": 10, "required": True}, "1 row(s) have no value"),
        ({"name": "Code__c", "type": "text", "length": 10, "unique": True}, "1 value(s) are duplicated"),
        ({"name": "Code__c", "type": "checkbox"}, "changing the type from text to checkbox"),
    ],
)
def test_data_losing_changes_are_refused_with_counts(org: Context, change: dict[str, Any], message: str) -> None:
    _apply(org, ITEM)
    save_many(org, "Item__c", [{"Name": "a", "Code__c": "LONGER"}, {"Name": "b", "Code__c": "longer"},
                               {"Name": "c"}])
    before = org.schema().version
    with pytest.raises(MetadataError) as e:
        _apply(org, {"object": "Item__c", "fields": [change]})
    assert message in str(e.value)
    assert org.schema().version == before


def test_failed_apply_leaves_nothing_behind(org: Context) -> None:
    """The second object's DDL fails after the first object's tables and rows were written: all roll back."""
    with org.db.read() as conn:
        before = load_snapshot(conn)
    p = plan(before, [parse_object(ITEM), parse_object({"object": "Clash__c"})])
    clash = p.after.get_object("Clash__c").table
    with org.db.transaction() as conn:
        conn.exec_driver_sql(f'CREATE TABLE "{clash}" (x INTEGER)')
    tables = _tables(org)
    with pytest.raises(sa.exc.DatabaseError):
        apply_plan(org.db, p, org.metadata)
    assert _tables(org) == tables
    with org.db.read() as conn:
        after = load_snapshot(conn)
    assert after == before
    assert after.find_object("Item__c") is None
