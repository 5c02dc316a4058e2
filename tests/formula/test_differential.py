"""``evaluate`` and ``to_sql`` agree: every case expressible in SQL runs on SQLite and PostgreSQL against a real row
built from the case's record (with its parents), and must give what Python gives."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from formula_cases import Case, coerce, context_for, load_cases

from keel.formula import bind, compile_python, to_sql
from keel.metadata.model import ObjectDef, SchemaSnapshot
from keel.metadata.tables import table_for
from keel.storage.engine import Database

OBJECT = "Formula_Test__c"
_ids = itertools.count(1)


def sql_cases() -> list[Case]:
    return [c for c in load_cases() if c.type != "error" and c.kind == "field"]


CASES = sql_cases()


def close(a: Any, b: Any) -> bool:
    """Equal, allowing binary floating point on SQLite (1e-9 relative) and millisecond datetimes."""
    if a is None or b is None:
        return a is b
    if isinstance(b, Decimal):
        fa, fb = float(a), float(b)
        return abs(fa - fb) <= 1e-9 * max(1.0, abs(fb))
    if isinstance(b, dt.datetime):
        return isinstance(a, dt.datetime) and abs((a - b).total_seconds()) < 0.001
    if isinstance(b, bool):
        return bool(a) is b
    return bool(type(a) is type(b) and a == b)


def insert(conn: sa.Connection, obj: ObjectDef, schema: SchemaSnapshot, record: dict[str, Any]) -> int:
    """Insert the record (and its nested parents first); returns its id."""
    row: dict[str, Any] = {"id": next(_ids), "name": str(record.get("Name") or "r")}
    for key, value in record.items():
        lookup = obj.find_relationship(key)
        if lookup is not None and isinstance(value, dict):
            parent = schema.get_object(lookup.reference_to[0])
            assert lookup.column
            row[lookup.column] = insert(conn, parent, schema, value)
            continue
        f = obj.get_field(key)
        if f.column and f.api_name != "Name":
            row[f.column] = value
    conn.execute(sa.insert(table_for(schema, obj)).values(row))
    return int(row["id"])


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_sql_agrees(case: Case, any_db: Database, schema: SchemaSnapshot) -> None:
    obj = schema.get_object(OBJECT)
    record = coerce(obj, schema, case.raw_record)
    ctx = context_for(case, schema, obj)
    expected = compile_python(case.formula, obj, schema, context_kind="field", blank_as=case.blank_as)(record, ctx)
    checked = bind(case.formula, obj, schema, blank_as=case.blank_as)
    table = table_for(schema, obj)
    expr = to_sql(checked, obj, schema, any_db.dialect, table_alias=table, context=ctx)
    with any_db.transaction() as conn:
        rid = insert(conn, obj, schema, record)
        got = conn.execute(sa.select(expr).where(table.c.id == rid)).scalar_one()
        # also usable as a filter: the row matches "expr IS NOT DISTINCT FROM its value"
    if checked.root.type in ("number", "currency", "percent") and got is not None:
        got = Decimal(repr(got)) if isinstance(got, float) else Decimal(got)
    assert close(got, expected), f"{any_db.dialect}: {case.formula!r} gave {got!r}, Python gave {expected!r}"
