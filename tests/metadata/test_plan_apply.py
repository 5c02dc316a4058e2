"""Metadata changes: validate → plan → apply in one transaction, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from keel.context import Context
from keel.errors import BatchError, MetadataError
from keel.metadata.apply import apply_plan
from keel.metadata.package import load_package, parse_object
from keel.metadata.plan import plan
from keel.metadata.store import load_snapshot
from keel.records import save_many
from keel.services.metadata import apply_package
from keel.storage.ddl import IndexSpec

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


def _index_sql(ctx: Context, name: str) -> str:
    """An index's definition as the database reports it (expression indexes are invisible to reflection)."""
    with ctx.db.read() as conn:
        if conn.dialect.name == "sqlite":
            sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?",
                                       (name,)).scalar()
        else:
            sql = conn.exec_driver_sql("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (name,)).scalar()
    return str(sql or "")


def _codes(e: BatchError) -> list[list[str]]:
    return [[d.code for d in r.errors] for r in e.results]


def test_required_false_to_true_applies_and_is_enforced(org: Context) -> None:
    _apply(org, ITEM)
    save_many(org, "Item__c", [{"Name": "a", "Code__c": "A"}])
    assert _apply(org, {"object": "Item__c", "fields": [{**ITEM["fields"][0], "required": True}]}) == ["update_field"]
    assert org.schema().get_object("Item__c").get_field("Code__c").required
    with pytest.raises(BatchError) as e:
        save_many(org, "Item__c", [{"Name": "b"}])
    assert _codes(e.value) == [["REQUIRED_FIELD_MISSING"]]


def test_unique_false_to_true_creates_the_unique_index(org: Context) -> None:
    _apply(org, ITEM)
    save_many(org, "Item__c", [{"Name": "a", "Code__c": "A"}, {"Name": "b", "Code__c": "B"}, {"Name": "c"}])
    with org.db.read() as conn:
        p = plan(load_snapshot(conn), [parse_object({"object": "Item__c",
                                                     "fields": [{**ITEM["fields"][0], "unique": True}]})])
    assert [op.kind for op in p.ops] == ["update_field", "create_index"]
    index = p.ops[1].after
    assert isinstance(index, IndexSpec) and index.unique
    assert _index_sql(org, index.name) == ""
    apply_plan(org.db, p, org.metadata)
    assert "UNIQUE" in _index_sql(org, index.name).upper()
    assert org.schema().get_object("Item__c").get_field("Code__c").unique
    with pytest.raises(BatchError) as e:
        save_many(org, "Item__c", [{"Name": "d", "Code__c": "a"}])
    assert _codes(e.value) == [["DUPLICATE_VALUE"]]
    save_many(org, "Item__c", [{"Name": "e", "Code__c": "E"}, {"Name": "f"}])  # empty values never clash


def test_field_label_rename_is_metadata_only(org: Context) -> None:
    _apply(org, ITEM)
    save_many(org, "Item__c", [{"Name": "a", "Code__c": "A"}])
    column = org.schema().get_object("Item__c").get_field("Code__c").column
    assert _apply(org, {"object": "Item__c", "fields": [{**ITEM["fields"][0], "label": "Part Code"}]}) == [
        "update_field"]
    f = org.schema().get_object("Item__c").get_field("Code__c")
    assert f.label == "Part Code" and f.column == column
    with org.db.read() as conn:
        assert conn.exec_driver_sql(f'SELECT "{column}" FROM "{org.schema().get_object("Item__c").table}"'
                                    ).scalar() == "A"


def test_adding_picklist_values(org: Context) -> None:
    field = {"name": "Size__c", "type": "picklist", "values": ["Small", "Large"], "restricted": True}
    _apply(org, {"object": "Item__c", "fields": [field]})
    save_many(org, "Item__c", [{"Name": "a", "Size__c": "Small"}])
    with pytest.raises(BatchError) as e:
        save_many(org, "Item__c", [{"Name": "b", "Size__c": "Medium"}])
    assert _codes(e.value) == [["INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"]]
    assert _apply(org, {"object": "Item__c", "fields": [{**field, "values": ["Small", "Medium", "Large"]}]}) == [
        "update_field"]
    assert [v.value for v in org.schema().get_object("Item__c").get_field("Size__c").values] == [
        "Small", "Medium", "Large"]
    save_many(org, "Item__c", [{"Name": "b", "Size__c": "medium"}])
