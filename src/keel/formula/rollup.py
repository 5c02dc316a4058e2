"""Roll-up summary fields: COUNT, SUM, MIN and MAX over master-detail children, with an optional filter formula.

The lifecycle recomputes the parents a write touched with ``rollup_sql`` inside the same transaction (one SELECT
for all of them), and ``recalc_all`` repairs a whole field with one UPDATE. Soft-deleted children never count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import FromClause

from keel.errors import MetadataError
from keel.formula.check import bind
from keel.formula.errors import FormulaError
from keel.formula.fn import Col, SqlEnv, num_lit
from keel.formula.sql import compile_sql, field_sql
from keel.formula.typed import NUMERIC, TCall, TField, TGlobal, TNode, field_type
from keel.metadata.model import FieldDef, ObjectDef, SchemaSnapshot
from keel.metadata.tables import table_for

FUNCTIONS = ("COUNT", "SUM", "MIN", "MAX")


@dataclass(frozen=True, slots=True)
class RollupSpec:
    function: str
    child: ObjectDef
    link: FieldDef  # the master-detail field on the child
    value: FieldDef | None  # the summarised child field (None for COUNT)
    filter: str | None


def resolve_rollup(parent: ObjectDef, field: FieldDef, schema: SchemaSnapshot) -> RollupSpec:
    """Find the child relationship, field and filter of a roll-up; raises ``MetadataError`` when they are wrong."""
    spec = dict(field.rollup or {})
    at = f"object {parent.api_name!r}, roll-up {field.api_name!r}"
    fn = str(spec.get("function", "")).upper()
    if fn not in FUNCTIONS:
        raise MetadataError(f"{at}: function must be one of {', '.join(FUNCTIONS)}")
    want = str(spec.get("child", "")).lower()
    matches = [c for c in schema.child_relationships(parent)
               if c.name.lower() == want or c.child_object.lower() == want]
    if not matches:
        raise MetadataError(f"{at}: no child relationship or child object {spec.get('child')!r}")
    if len(matches) > 1:
        raise MetadataError(f"{at}: {spec.get('child')!r} matches several relationships; use the relationship name")
    rel = matches[0]
    if not rel.cascade_delete:
        raise MetadataError(f"{at}: roll-ups summarise master-detail children; {rel.name} is a lookup")
    child = schema.get_object(rel.child_object)
    link = child.get_field(rel.field)
    value = None
    if spec.get("field"):
        value = child.find_field(str(spec["field"]))
        if value is None:
            raise MetadataError(f"{at}: unknown child field {spec['field']!r} on {child.api_name}")
        t = field_type(value)
        if fn == "SUM" and t not in NUMERIC:
            raise MetadataError(f"{at}: SUM needs a number field, {value.api_name} is {t}")
        if fn in ("MIN", "MAX") and t not in NUMERIC | {"date", "datetime"}:
            raise MetadataError(f"{at}: {fn} needs a number, date or datetime field, {value.api_name} is {t}")
    elif fn != "COUNT":
        raise MetadataError(f"{at}: {fn} needs a child field")
    flt = spec.get("filter")
    if flt:
        try:
            bind(str(flt), child, schema, blank_as="blank", returns="checkbox")
        except FormulaError as exc:
            raise MetadataError(f"{at}: filter: {exc.message}") from None
    return RollupSpec(fn, child, link, value, str(flt) if flt else None)


_VOLATILE = frozenset({"TODAY", "NOW", "TIMENOW"})


def inputs(spec: RollupSpec, schema: SchemaSnapshot) -> frozenset[str] | None:
    """The child fields (API names) a roll-up's value can depend on: the master-detail link, the summarised field
    and what the filter reads. An update that changes none of them cannot change the parent's value, so the
    lifecycle skips its recomputation; at a million children that is what keeps a stage change of applications
    from re-counting every requisition's applicants. None when unknown: the filter or the value reads a parent,
    a global or the clock, so every change recomputes."""
    out = {spec.link.api_name, "IsDeleted"}
    if spec.value is not None:
        if spec.value.type == "formula":
            return None
        out.add(spec.value.api_name)
    if spec.filter:
        root = bind(spec.filter, spec.child, schema, blank_as="blank", returns="checkbox").root
        if not _reads(root, out):
            return None
    return frozenset(out)


def _reads(node: TNode, out: set[str]) -> bool:
    """Add the record's own fields ``node`` reads to ``out``; False when it reads anything else."""
    if isinstance(node, TField):
        if node.path:
            return False
        out.add(node.field.api_name)
        return node.formula is None or _reads(node.formula, out)
    if isinstance(node, TGlobal):
        return False
    if isinstance(node, TCall):
        return node.fn.name not in _VOLATILE and all(_reads(a, out) for a in node.args)
    return True


def _aggregate(spec: RollupSpec, schema: SchemaSnapshot, dialect: str, parent_id: Col) -> Col:
    child = table_for(schema, spec.child).alias("rollup_child")
    assert spec.link.column
    conditions: list[Col] = [child.c[spec.link.column] == parent_id, child.c.is_deleted == sa.false()]
    if spec.filter:
        checked = bind(spec.filter, spec.child, schema, blank_as="blank", returns="checkbox")
        conditions.append(compile_sql(checked, dialect, table_alias=child, schema=schema))
    env = SqlEnv(dialect, None)
    if spec.function == "COUNT":
        agg: Col = sa.func.count()
    else:
        assert spec.value is not None
        value = _child_value(spec, child, schema, dialect)
        agg = getattr(sa.func, spec.function.lower())(value)
    inner = sa.select(agg).where(*conditions).scalar_subquery()
    if spec.function in ("COUNT", "SUM"):
        return sa.func.coalesce(inner, num_lit(0, env))
    return inner


def _child_value(spec: RollupSpec, child: FromClause, schema: SchemaSnapshot, dialect: str) -> Col:
    assert spec.value is not None
    if spec.value.type == "formula":
        return field_sql(spec.value, spec.child, schema, dialect, table_alias=child)
    assert spec.value.column
    col: Col = child.c[spec.value.column]
    return col


def rollup_sql(parent_obj: ObjectDef, field: FieldDef, schema: SchemaSnapshot, dialect: str,
               parent_ids: Iterable[Any]) -> sa.Select[Any]:
    """SELECT id, value: the roll-up's correct value for each listed parent (0 for COUNT/SUM without children,
    NULL for MIN/MAX)."""
    spec = resolve_rollup(parent_obj, field, schema)
    parent = table_for(schema, parent_obj)
    value = _aggregate(spec, schema, dialect, parent.c.id)
    return sa.select(parent.c.id.label("id"), value.label("value")).where(parent.c.id.in_(list(parent_ids)))


def recalc_all(conn: Connection, schema: SchemaSnapshot, obj: ObjectDef, field: FieldDef) -> int:
    """Recompute a roll-up for every parent row in one UPDATE (``keel recalc OBJECT.FIELD``); returns the rows."""
    spec = resolve_rollup(obj, field, schema)
    parent = table_for(schema, obj)
    assert field.column
    value = _aggregate(spec, schema, conn.dialect.name, parent.c.id)
    result = conn.execute(sa.update(parent).values({field.column: value}))
    return int(result.rowcount or 0)
