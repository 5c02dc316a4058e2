"""Formula-driven steps of the lifecycle: default formulas, validation rules and roll-up summaries.

Each compiles once per schema snapshot (the formula package memoises on it) and runs per row as closures, so the
bulk path pays only for the calls. Parent records that formulas reach through relationship paths are read once per
batch and cached; validation rules see every field, as in Salesforce (they are the organisation's own logic).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.formula import FormulaContext, compile_python, compile_validation_rules, rollup_sql
from keel.formula.rollup import RollupSpec, inputs, resolve_rollup
from keel.metadata.model import FieldDef, ObjectDef, SchemaSnapshot
from keel.metadata.tables import table_for
from keel.records.hooks import RowState
from keel.records.validate import chunks, row_to_values
from keel.storage import ids

if TYPE_CHECKING:
    from keel.context import Context
    from keel.records.prepare import WritePlan
    from keel.records.save import Batch


class ParentCache:
    """Parent records that formulas reach, by (object key, pk), cached for one batch. ``prefetch`` reads the
    direct parents of a whole batch with one IN query per lookup field, so a batch of 2,000 children with 2,000
    distinct parents costs a few queries instead of 2,000; anything else is read one by one on first use."""

    def __init__(self, conn: Connection, schema: SchemaSnapshot) -> None:
        self.conn, self.schema = conn, schema
        self.cache: dict[tuple[str, int], dict[str, Any] | None] = {}

    def __call__(self, obj_name: str, record_id: Any) -> dict[str, Any] | None:
        if record_id is None:
            return None
        prefix, n = ids.split(str(record_id))
        target = self.schema.find_by_prefix(prefix) or self.schema.find_object(obj_name)
        if target is None:
            return None
        key = (target.key, n)
        if key not in self.cache:
            t = table_for(self.schema, target)
            row = self.conn.execute(sa.select(t).where(t.c.id == n)).mappings().first()
            self.cache[key] = row_to_values(self.schema, target, dict(row)) if row is not None else None
        return self.cache[key]

    def prefetch(self, obj: ObjectDef, rows: Sequence[RowState], fields: Collection[str] | None = None) -> None:
        """Load the parents of a batch in one query per lookup (all lookups, or the API names in ``fields``)."""
        for f in obj.fields:
            if f.type not in ("lookup", "master_detail") or len(f.reference_to) != 1:
                continue
            if fields is not None and f.api_name not in fields:
                continue
            target = self.schema.find_object(f.reference_to[0])
            if target is None:
                continue
            want: set[int] = set()
            name = f.api_name
            for v in {v for r in rows if (v := r.values.get(name))}:  # owners and parents repeat across a batch
                try:
                    n = ids.split(str(v))[1]
                except Exception:  # a malformed id fails validation elsewhere
                    continue
                if (target.key, n) not in self.cache:
                    want.add(n)
            if len(want) < 2:
                continue
            t = table_for(self.schema, target)
            for chunk in chunks(sorted(want)):
                for row in self.conn.execute(sa.select(t).where(t.c.id.in_(chunk))).mappings():
                    self.cache[(target.key, int(row["id"]))] = row_to_values(self.schema, target, dict(row))
            for n in want:
                self.cache.setdefault((target.key, n), None)


def formula_context(ctx: Context, conn: Connection, schema: SchemaSnapshot) -> FormulaContext:
    """One evaluation environment per batch: the clock, the actor's time zone, ``$User`` and parent lookups."""
    resolve_parent = ParentCache(conn, schema)
    user = resolve_parent("User", ids.encode("005", ctx.actor.user_id)) or {}
    return FormulaContext(now=ctx.clock(), time_zone=ctx.actor.time_zone, user=user,
                          resolve_parent=resolve_parent)


def apply_formula_defaults(ctx: Context, conn: Connection, schema: SchemaSnapshot, plan: WritePlan,
                           rows: Sequence[RowState], fctx: FormulaContext | None) -> FormulaContext | None:
    new = [r for r in rows if r.prior is None]
    if not plan.formula_defaults or not new:
        return fctx
    fctx = fctx or formula_context(ctx, conn, schema)
    for f, text in plan.formula_defaults:
        fn = compile_python(text, plan.obj, schema, context_kind="default", returns=f.type if f.type in
                            ("number", "currency", "percent", "text", "date", "datetime", "time", "checkbox")
                            else None)
        coerce = plan.coercers.get(f.api_name)
        for r in new:
            if f.api_name in r.values:
                continue
            value = fn(r.values, fctx)
            r.values[f.api_name] = coerce(value) if coerce is not None and value is not None else value
            r.changed.add(f.api_name)
    return fctx


def run_validation_rules(ctx: Context, conn: Connection, schema: SchemaSnapshot, plan: WritePlan, batch: Batch,
                         fctx: FormulaContext | None) -> None:
    if not any(rule.active for rule in plan.obj.validation_rules) or not batch.rows:
        return
    validate = compile_validation_rules(plan.obj, schema)
    base = fctx or formula_context(ctx, conn, schema)
    if isinstance(base.resolve_parent, ParentCache) and len(batch.rows) > 1:
        wanted = rule_parents(schema, plan.obj)
        if wanted:
            base.resolve_parent.prefetch(plan.obj, batch.rows, wanted)
    fresh = base.for_row(None)  # every new row shares one context; only updates carry prior values
    for r in batch.rows:
        for failure in validate(r.values, fresh if r.prior is None else base.for_row(r.prior)):
            batch.fail(r.index, "FIELD_CUSTOM_VALIDATION_EXCEPTION", failure.message,
                       [failure.field] if failure.field else [])


def rule_parents(schema: SchemaSnapshot, obj: ObjectDef) -> frozenset[str]:
    """The lookups whose parents the object's active validation rules read (``Rel__r.Field`` in a condition):
    only those are worth loading for a batch. Matching the relationship name in the text may over-include (a
    string literal that looks like a path), never under-include, since a parent is only reachable that way."""
    key = f"rule_parents:{obj.key}"
    hit = schema.cache.get(key)
    if hit is None:
        text = "\n".join(r.condition for r in obj.validation_rules if r.active)
        hit = frozenset(
            f.api_name for f in obj.fields
            if f.relationship_name and re.search(rf"\b{re.escape(f.relationship_name)}\s*\.", text, re.IGNORECASE))
        schema.cache[key] = hit
    return frozenset(hit)


def _apply_deltas(conn: Connection, schema: SchemaSnapshot, parent: ObjectDef, field: FieldDef,
                  spec: RollupSpec, needs: frozenset[str], rows: Sequence[RowState]) -> bool:
    """A COUNT or SUM whose inputs are the children's own fields: add each parent's change to its total instead
    of re-aggregating all its children. A saved row takes back what it counted before (its prior values, under
    its prior parent) and adds what it counts now. Re-aggregating read every child of every parent a batch
    touched, so writing children under a few large parents grew with the square of their number (a dozen
    requisitions with ~90,000 applications each). One atomic UPDATE per parent, in id order (row locks on
    PostgreSQL, the single writer on SQLite), so concurrent writers add up. False: not applicable."""
    if spec.function not in ("COUNT", "SUM"):
        return False
    test = (compile_python(spec.filter, spec.child, schema, context_kind="field", returns="checkbox")
            if spec.filter else None)
    env = FormulaContext()

    def share(values: dict[str, Any]) -> tuple[int | None, Any]:
        """(the parent, what this row adds to its total); 0 for a row the filter leaves out."""
        link = values.get(spec.link.api_name)
        if link is None:
            return None, 0
        pk = ids.split(str(link))[1]
        if values.get("IsDeleted") or (test is not None and not test(values, env)):
            return pk, 0
        amount = 1 if spec.value is None else values.get(spec.value.api_name)
        if isinstance(amount, float):  # a stored value read back from SQLite's REAL
            amount = Decimal(str(amount))
        return pk, 0 if amount is None else amount

    deltas: dict[int, Any] = {}
    for r in rows:
        if r.prior is not None and not (r.changed & needs):
            continue
        for values, sign in ((r.prior, -1), (r.values, 1)):
            if values is None:
                continue
            pk, amount = share(values)
            if pk is not None:
                deltas[pk] = deltas.get(pk, 0) + sign * amount
    if deltas:  # zeros too: a parent's first child turns its blank total into a number, as a recount did
        t = table_for(schema, parent)
        col = t.c[field.column or ""]
        conn.execute(sa.update(t).where(t.c.id == sa.bindparam("b_id"))
                     .values({col: sa.func.coalesce(col, 0) + sa.bindparam("b_d")}),
                     [{"b_id": pk, "b_d": deltas[pk]} for pk in sorted(deltas)])
    return True


def _rollup(schema: SchemaSnapshot, parent: ObjectDef, field: FieldDef) -> tuple[RollupSpec, frozenset[str] | None]:
    """A roll-up's resolved spec and its inputs, once per snapshot (resolving binds the filter formula)."""
    key = f"rollup_spec:{parent.key}:{field.key}"
    hit: tuple[RollupSpec, frozenset[str] | None] | None = schema.cache.get(key)
    if hit is None:
        spec = resolve_rollup(parent, field, schema)
        hit = schema.cache[key] = (spec, inputs(spec, schema))
    return hit


def rollup_targets(schema: SchemaSnapshot, child: ObjectDef) -> list[tuple[ObjectDef, FieldDef, FieldDef]]:
    """(parent object, roll-up field, child's master-detail field) for every roll-up summarising ``child``."""
    key = f"rollup_targets:{child.key}"
    hit = schema.cache.get(key)
    if hit is None:
        hit = []
        for rel_field in child.fields:
            if rel_field.type != "master_detail":
                continue
            parent = schema.find_object(rel_field.reference_to[0])
            if parent is None:
                continue
            for f in parent.fields:
                spec = f.rollup
                if f.type != "rollup" or not spec:
                    continue
                ref = str(spec.get("child", "")).lower()
                if ref in (child.key, (rel_field.child_relationship_name or "").lower()):
                    hit.append((parent, f, rel_field))
        schema.cache[key] = hit
    return list(hit)


def recompute_rollups(conn: Connection, schema: SchemaSnapshot, child: ObjectDef,
                      rows: Iterable[RowState], *, by_changes: bool = False) -> None:
    """Recompute every roll-up over ``child`` for the parents the changed rows belong (or belonged) to, in the
    caller's transaction, so a parent's summary never disagrees with its children. ``by_changes``: the rows are
    a save's, whose ``changed`` names every field an update changed, so an update that changed none of a
    roll-up's inputs (``formula.rollup.inputs``) is left out of that roll-up, and a COUNT or SUM over the
    children's own fields is kept by adding differences (``_apply_deltas``)."""
    targets = rollup_targets(schema, child)
    if not targets:
        return
    rows = list(rows)
    for parent, field, rel in targets:
        parent_ids: set[int] = set()
        spec, needs = _rollup(schema, parent, field) if by_changes else (None, None)
        if spec is not None and needs is not None and _apply_deltas(conn, schema, parent, field, spec, needs, rows):
            continue
        for r in rows:
            if needs is not None and r.prior is not None and not (r.changed & needs):
                continue
            for source in (r.values, r.prior or {}):
                v = source.get(rel.api_name)
                if v is not None:
                    parent_ids.add(ids.split(str(v))[1])
        if not parent_ids:
            continue
        t = table_for(schema, parent)
        col = field.column or ""
        for part in chunks(sorted(parent_ids)):
            if conn.dialect.name == "postgresql":
                # Serialise on the parent rows (in id order, so two writers cannot deadlock here): a writer that
                # waited then computes from a snapshot that includes the other's committed children. Without
                # it, READ COMMITTED lets the later commit overwrite a total with one that misses a child.
                conn.execute(sa.select(t.c.id).where(t.c.id.in_(list(part))).order_by(t.c.id).with_for_update())
            values = conn.execute(rollup_sql(parent, field, schema, conn.dialect.name, list(part))).all()
            if values:
                conn.execute(sa.update(t).where(t.c.id == sa.bindparam("b_id")).values({col: sa.bindparam("b_v")}),
                             [{"b_id": pk, "b_v": v} for pk, v in values])
