"""Composite indexes in metadata: declared (``indexes:``) or derived from list views, planned, applied, dropped.

Each test runs on SQLite and, with KEEL_TEST_PG, PostgreSQL; the "is it used" checks ask the database's own planner
about the statement shape the SOQL compiler emits for a list page and a report.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from keel.context import Context
from keel.errors import MetadataError
from keel.metadata.apply import apply_plan
from keel.metadata.package import parse_object
from keel.metadata.plan import Plan, plan
from keel.metadata.store import load_snapshot
from keel.records import save_many

STAGES = ["Applied", "Offer", "Hired"]


def _doc(**extra: Any) -> dict[str, Any]:
    return {"object": "Cand__c", "fields": [
        {"name": "Stage__c", "type": "picklist", "values": STAGES},
        {"name": "Score__c", "type": "number"},
        {"name": "Pay__c", "type": "currency"},
        {"name": "Notes__c", "type": "longtext", "length": 1000},
        {"name": "Double__c", "type": "formula", "returns": "number", "formula": "Score__c * 2"}], **extra}


OFFERS = {"name": "offers", "label": "Offers", "sort": "Score__c desc",
          "filters": [{"field": "Stage__c", "op": "=", "value": "Offer"}]}


def _plan(ctx: Context, *docs: dict[str, Any]) -> Plan:
    with ctx.db.read() as conn:
        before = load_snapshot(conn)
    return plan(before, [parse_object(d) for d in docs])


def _apply(ctx: Context, *docs: dict[str, Any]) -> Plan:
    p = _plan(ctx, *docs)
    apply_plan(ctx.db, p, ctx.metadata)
    return p


def _index_sql(ctx: Context, table: str) -> dict[str, str]:
    """Index name -> its definition, as the database itself reports it."""
    with ctx.db.read() as conn:
        if conn.dialect.name == "sqlite":
            rows = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
                                        (table,)).all()
        else:
            rows = conn.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %(t)s "
                                        "AND schemaname = current_schema()", {"t": table}).all()
    return {str(r[0]): str(r[1] or "") for r in rows}


def _composite(ctx: Context, table: str) -> dict[str, str]:
    return {n: s for n, s in _index_sql(ctx, table).items() if n.startswith("cx_")}


def _explain(ctx: Context, sql: str) -> str:
    with ctx.db.read() as conn:
        if conn.dialect.name == "sqlite":
            return " | ".join(str(r[3]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql).all())
        # A handful of rows would be scanned and sorted whatever the indexes; forbid that (the planner still does it
        # when nothing else can answer) to ask whether an index serves the statement by itself.
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            conn.exec_driver_sql(f"SET LOCAL {setting} = off")
        return " | ".join(str(r[0]) for r in conn.exec_driver_sql("EXPLAIN " + sql).all())


def _columns(ctx: Context) -> tuple[str, dict[str, str]]:
    obj = ctx.schema().get_object("Cand__c")
    return obj.table, {f.api_name: f.column or "" for f in obj.fields}


def test_list_view_derives_a_filter_then_sort_index_that_serves_the_page(org: Context) -> None:
    p = _apply(org, _doc(list_views=[OFFERS]))
    created = [op for op in p.ops if op.kind == "create_index"]
    assert len(created) == 1 and created[0].object == "Cand__c"
    table, col = _columns(org)
    assert f'lower("{col["Stage__c"]}")' in created[0].detail and f'"{col["Score__c"]}"' in created[0].detail
    (name, definition), = _composite(org, table).items()
    assert name == created[0].detail.split()[0]
    if org.db.dialect == "postgresql":  # so a backward scan gives DESC NULLS LAST, the order SOQL asks for
        assert "NULLS FIRST" in definition
    save_many(org, "Cand__c", [{"Name": f"c{i}", "Stage__c": STAGES[i % 3], "Score__c": i} for i in range(30)])
    # The statement shape of a list page: lower() on text, SOQL's default NULLS order, Id as the tiebreaker.
    nulls = " NULLS LAST" if org.db.dialect == "postgresql" else ""
    sql = (f'SELECT id, name FROM {table} WHERE lower("{col["Stage__c"]}") = \'offer\' AND is_deleted = false '
           f'ORDER BY "{col["Score__c"]}" DESC{nulls}, id DESC LIMIT 51')
    shown = _explain(org, sql)
    assert name in shown and "TEMP B-TREE" not in shown and "Sort" not in shown, shown
    again = _plan(org, _doc(list_views=[OFFERS]))
    assert again.empty, [op.describe() for op in again.ops]


def test_declared_report_index_is_covering_for_the_group_by(org: Context) -> None:
    p = _apply(org, _doc(indexes=[{"group_by": ["Stage__c"], "include": ["Pay__c"]}]))
    assert [op.kind for op in p.ops] == ["create_object", "create_index"]
    table, col = _columns(org)
    (name, _), = _composite(org, table).items()
    save_many(org, "Cand__c", [{"Name": f"c{i}", "Stage__c": STAGES[i % 3], "Pay__c": i} for i in range(30)])
    stage, pay = col["Stage__c"], col["Pay__c"]
    if org.db.dialect == "postgresql":  # an index-only scan needs the visibility map, which VACUUM sets
        with org.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"VACUUM ANALYZE {table}")
    sql = (f'SELECT "{stage}", count(id), sum("{pay}") FROM {table} WHERE is_deleted = false '
           f'GROUP BY "{stage}" ORDER BY "{stage}"')
    shown = _explain(org, sql)
    if org.db.dialect == "sqlite":
        assert f"COVERING INDEX {name}" in shown, shown
    else:
        assert f"Index Only Scan using {name}" in shown, shown


def test_indexes_added_to_an_existing_object_are_built_on_its_rows_and_dropped_when_unwanted(org: Context) -> None:
    _apply(org, _doc())
    save_many(org, "Cand__c", [{"Name": f"c{i}", "Stage__c": STAGES[i % 3], "Score__c": i} for i in range(10)])
    table, _ = _columns(org)
    assert _composite(org, table) == {}
    p = _apply(org, _doc(list_views=[OFFERS], indexes=[{"fields": ["Score__c", "Pay__c"]}]))
    assert sorted(op.kind for op in p.ops) == ["create_index", "create_index", "update_object"]
    assert len(_composite(org, table)) == 2
    p = _apply(org, _doc(indexes=[{"fields": ["Score__c", "Pay__c"]}]))  # the list view went away
    assert sorted(op.kind for op in p.ops) == ["drop_index", "update_object"]
    dropped = next(op for op in p.ops if op.kind == "drop_index").detail.split()[0]
    assert dropped not in _composite(org, table) and len(_composite(org, table)) == 1
    assert org.schema().get_object("Cand__c").indexes[0].fields == ("Score__c", "Pay__c")


def test_deleting_a_field_drops_the_composite_index_before_the_column(org: Context) -> None:
    _apply(org, _doc(list_views=[OFFERS]))
    save_many(org, "Cand__c", [{"Name": "a", "Stage__c": "Offer", "Score__c": 1}])
    score = _columns(org)[1]["Score__c"]
    doc = _doc()
    doc["fields"] = [f for f in doc["fields"] if f["name"] not in ("Score__c", "Double__c")]
    p = _apply(org, {**doc, "list_views": [OFFERS]})  # the view still names Score__c: no index can use it
    kinds = [op.kind for op in p.ops]
    assert "drop_index" in kinds and "delete_field" in kinds
    table, col = _columns(org)
    # Stage alone is what remains of the view's index; it replaces the (Stage, Score) one.
    (definition,) = _composite(org, table).values()
    assert col["Stage__c"] in definition and score not in definition
    with org.db.read() as conn:
        assert conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar() == 1


def test_an_index_another_serves_is_not_built_twice(org: Context) -> None:
    doc = _doc(list_views=[{"name": "by_name", "label": "All"}, {"name": "by_id", "label": "Newest", "sort": "Id desc"},
                           {"name": "stage", "label": "Stage", "filters": [{"field": "Stage__c", "value": "Offer"}],
                            "sort": "Name"},
                           {"name": "stage_only", "label": "Offers", "sort": "Stage__c",
                            "filters": [{"field": "Stage__c", "value": "Offer"}]}])
    p = _apply(org, doc)
    table, _ = _columns(org)
    created = [op.detail for op in p.ops if op.kind == "create_index"]
    # "by_id" is the primary key and "stage_only" begins "stage" (Stage, Name): neither is listed. "by_name" is the
    # name index on SQLite, which sorts NULLs first as SOQL does; PostgreSQL needs its own NULLS FIRST index.
    assert len(created) == 2, created
    (by_name,) = [d for d in created if d.endswith("[postgresql only]")]
    assert by_name.split(" (", 1)[1].startswith('lower("name"), "id")')
    built = _composite(org, table)
    assert len(built) == (2 if org.db.dialect == "postgresql" else 1)
    if org.db.dialect == "postgresql":
        save_many(org, "Cand__c", [{"Name": f"c{i}"} for i in range(20)])
        shown = _explain(org, f"SELECT id FROM {table} WHERE is_deleted = false "
                              "ORDER BY lower(name) ASC NULLS FIRST, id ASC LIMIT 51")
        assert by_name.split()[0] in shown and "Sort" not in shown, shown
    assert _plan(org, doc).empty


@pytest.mark.parametrize(("index", "message"), [
    ({"fields": ["Nope__c"]}, "unknown field 'Nope__c'"),
    ({"fields": ["Double__c"]}, "is computed"),
    ({"group_by": ["Notes__c"]}, "cannot be indexed"),
    ({"fields": ["Stage__c"], "group_by": ["Stage__c"]}, "either 'fields'"),
    ({"fields": ["Stage__c"], "include": ["Pay__c"]}, "'include' belongs to report indexes"),
    ({"fields": []}, "list of field API names"),
    ({"fields": ["Stage__c"], "unique": True}, "unknown key"),
])
def test_bad_index_declarations_are_refused_at_plan_time(index: dict[str, Any], message: str) -> None:
    with pytest.raises(MetadataError, match=message):
        parse_object(_doc(indexes=[index]))


def test_a_list_sorted_by_a_single_indexed_field_reads_its_index(org: Context) -> None:
    """SOQL's default orders (ASC NULLS FIRST, DESC NULLS LAST) are served by the field's own index on both
    databases, so ``ORDER BY Name LIMIT 50`` never sorts the table."""
    _apply(org, _doc())
    table, col = _columns(org)
    nulls_asc, nulls_desc = (" NULLS FIRST", " NULLS LAST") if org.db.dialect == "postgresql" else ("", "")
    for order in (f"ASC{nulls_asc}", f"DESC{nulls_desc}"):
        shown = _explain(org, f'SELECT id, name FROM {table} WHERE is_deleted = false '
                              f'ORDER BY lower("{col["Name"]}") {order} LIMIT 51')
        assert f"ix_{table}_{col['Name']}" in shown and "Sort" not in shown, shown
