"""Loading prior versions of updated rows and the validation step: required fields, lookups, uniqueness and
validation rules. Each check runs once per batch (one query per target object or unique field), not per row."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.metadata.model import FieldDef, ObjectDef, SchemaSnapshot
from keel.metadata.tables import is_polymorphic, table_for, type_column
from keel.metadata.types import TYPES, FieldValueError
from keel.records.hooks import RowState
from keel.records.prepare import WritePlan
from keel.security.queues import supporting_queues
from keel.storage import ids

if TYPE_CHECKING:
    from keel.context import Context
    from keel.records.save import Batch

CHUNK = 900


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def row_to_values(schema: SchemaSnapshot, obj: ObjectDef, row: Mapping[str, Any]) -> dict[str, Any]:
    """A database row (by column) as the lifecycle sees a record: API names, public ids, Python values."""
    out: dict[str, Any] = {}
    encode = ids.encode
    for name, column, kind, prefix in _decoder(schema, obj):
        v = row.get(column)
        if kind == 1:
            v = encode(prefix, int(v or 0))
        elif kind and v is not None:
            v = encode(str(row.get(prefix) or "000") if kind == 3 else prefix, int(v))
        out[name] = v
    return out


def _decoder(schema: SchemaSnapshot, obj: ObjectDef) -> list[tuple[str, str, int, str]]:
    """Per stored field, once per snapshot: (API name, column, kind, key prefix or type column), kind 0 a value,
    1 the id, 2 a lookup, 3 a polymorphic lookup. Prior values, parents and flow records are all decoded here, so
    the per-row loop must not look targets up in the schema again (it ran for every field of every row)."""
    memo: dict[str, list[tuple[str, str, int, str]]] = schema.cache.setdefault("row_decoders", {})
    hit = memo.get(obj.key)
    if hit is not None:
        return hit
    out = []
    for f in obj.stored_fields:
        column = f.column or ""
        if f.type == "id":
            out.append((f.api_name, column, 1, obj.key_prefix))
        elif f.is_relationship and is_polymorphic(f):
            out.append((f.api_name, column, 3, type_column(f)))
        elif f.is_relationship:
            target = schema.find_object(f.reference_to[0])
            out.append((f.api_name, column, 2, target.key_prefix if target else "000"))
        else:
            out.append((f.api_name, column, 0, ""))
    memo[obj.key] = out
    return out


def load_prior(ctx: Context, conn: Connection, schema: SchemaSnapshot, obj: ObjectDef, rows: Sequence[RowState],
               batch: Batch) -> None:
    """Fetch (and on PostgreSQL lock) the current version of every updated row; fail rows that are gone,
    deleted, or not editable by the actor."""
    t = table_for(schema, obj)
    pks = [r.pk for r in rows]
    found: dict[int, Mapping[str, Any]] = {}
    editable: set[int] | None = None
    for part in chunks(pks):
        q = sa.select(t).where(t.c.id.in_(part))
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        for fetched in conn.execute(q).mappings():
            found[fetched["id"]] = dict(fetched)
        pred = ctx.actor.access.record_filter(obj, t, "edit")
        if pred is not None and not ctx.actor.is_system:
            editable = editable or set()
            editable.update(conn.execute(sa.select(t.c.id).where(t.c.id.in_(part), pred)).scalars())
    for r in rows:
        assert r.pk is not None
        row = found.get(r.pk)
        if row is None:
            batch.fail(r.index, "NOT_FOUND", f"No {obj.label} record has id {ids.encode(obj.key_prefix, r.pk)}.",
                       ["Id"])
        elif row["is_deleted"]:
            batch.fail(r.index, "ENTITY_IS_DELETED", "entity is deleted", ["Id"])
        elif editable is not None and r.pk not in editable:
            batch.fail(r.index, "INSUFFICIENT_ACCESS_OR_READONLY",
                       "You do not have edit access to this record.", ["Id"])
        else:
            expected = r.values.pop("__version__", None)
            if expected is not None and int(expected) != row["version"]:
                batch.fail(r.index, "CONCURRENT_MODIFICATION",
                           "Someone else saved this record after you opened it. Reload it and try again.", ["Id"])
                continue
            r.prior = row_to_values(schema, obj, row)
            r.prior["__version__"] = row["version"]


def validate(ctx: Context, conn: Connection, schema: SchemaSnapshot, plan: WritePlan, batch: Batch,
             known: AbstractSet[str] = frozenset()) -> None:
    """Required, lookups and in-batch uniqueness (validation rules follow in ``rules``). Uniqueness of new rows
    against the table is left to the unique index (see ``save``), which is far cheaper than a lookup per batch."""
    _required(plan, batch)
    _dependent_picklists(plan, batch)
    batch.prune()
    _references(ctx, conn, schema, plan, batch, known)
    unique(conn, schema, plan, batch, against_table="updates")


def _required(plan: WritePlan, batch: Batch) -> None:
    names = [f.api_name for f in plan.required]
    if not names:
        return
    for r in batch.rows:
        get = r.values.get
        missing = [n for n in names if get(n) is None]
        if missing:
            batch.fail(r.index, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]",
                       missing)


def _dependent_picklists(plan: WritePlan, batch: Batch) -> None:
    """A dependent picklist's value must be valid for its controlling field's value. The form hides the other
    values, but the API, imports, flows and crafted posts come here too; Salesforce refuses such a value with
    ``INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST``. A checkbox controller is matched as ``true``/``false``."""
    for f, ctl, allowed in plan.dependents:
        names = {f.api_name, ctl.api_name}
        for r in batch.rows:
            v = r.values.get(f.api_name)
            if v is None or (r.prior is not None and not names & r.changed):
                continue
            c = r.values.get(ctl.api_name)
            key = ("true" if c else "false") if ctl.type == "checkbox" else "" if c is None else str(c)
            parts = str(v).split(";") if f.type == "multipicklist" else [str(v)]
            bad = [p for p in parts if (ok := allowed.get(p)) is not None and key not in ok]
            if bad:
                when = f"{ctl.label} is {key}" if key else f"{ctl.label} is blank"
                batch.fail(r.index, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                           f"{f.label}: bad value for restricted picklist field: {bad[0]} (not valid when {when})",
                           [f.api_name])


def _references(ctx: Context, conn: Connection, schema: SchemaSnapshot, plan: WritePlan, batch: Batch,
                known: AbstractSet[str] = frozenset()) -> None:
    """Every lookup value must name a live record of a target object that the actor can see. ``known`` ids
    (see ``save_many``'s ``live``) are taken as such without a query."""
    # The acting user of a request resolved from a session token: its User row was read live (not deleted) by
    # this request's token check, and User records are not shared, so a lookup to it (the defaulted OwnerId of
    # every create) needs no query.
    own = ids.encode("005", ctx.actor.user_id) if ctx.actor.session_id is not None and not ctx.actor.is_system \
        else None
    wanted: dict[str, set[int]] = {}
    # Distinct values per field: owners and parents repeat across a batch.
    given: dict[str, set[Any]] = {}
    for f in plan.references:
        name = f.api_name
        values = {v for r in batch.rows if (v := r.values.get(name)) is not None
                  and (r.prior is None or name in r.changed)}
        values.discard(own)
        if known:
            values -= known
        given[name] = values
        for v in values:
            prefix, n = ids.split(v)
            wanted.setdefault(prefix, set()).add(n)
    live: dict[str, set[int]] = {}
    if plan.obj.key_prefix in wanted:  # a lookup to this object may name a new row of this very batch
        live[plan.obj.key_prefix] = {r.pk for r in batch.rows if r.prior is None and r.pk}
    for prefix, numbers in wanted.items():
        target = schema.find_by_prefix(prefix)
        if target is None:
            continue
        t = table_for(schema, target)
        pred = None if ctx.actor.is_system else ctx.actor.access.record_filter(target, t, "read")
        got: set[int] = set()
        for part in chunks(sorted(numbers)):
            q = sa.select(t.c.id).where(t.c.id.in_(part), t.c.is_deleted == sa.false())
            if pred is not None:
                q = q.where(pred)
            got.update(conn.execute(q).scalars())
        live.setdefault(prefix, set()).update(got)
    _queue_owners(conn, schema, plan, batch, given, live)
    for f in plan.references:
        missing = {v for v in given[f.api_name] if (p := ids.split(v))[1] not in live.get(p[0], ())}
        if not missing:
            continue
        for r in batch.rows:
            v = r.values.get(f.api_name)
            if v in missing and (r.prior is None or f.api_name in r.changed):
                batch.fail(r.index, "INVALID_CROSS_REFERENCE_KEY",
                           f"invalid cross reference id: {f.label} {v} does not exist or is not visible",
                           [f.api_name])


def _queue_owners(conn: Connection, schema: SchemaSnapshot, plan: WritePlan, batch: Batch,
                  given: dict[str, set[Any]], live: dict[str, set[int]]) -> None:
    """An OwnerId naming a Group must name a queue that supports this object (a ``QueueSobject`` row). Salesforce
    refuses any other group with ``INVALID_CROSS_REFERENCE_KEY``; the message says what to fix."""
    groups = live.get("00G")
    if not groups or "OwnerId" not in given or not any(f.column == "owner_id" for f in plan.references):
        return
    wanted = {n for v in given["OwnerId"] if (p := ids.split(v))[0] == "00G" and (n := p[1]) in groups}
    bad = wanted - supporting_queues(conn, schema, plan.obj.api_name, wanted)
    if not bad:
        return
    for r in batch.rows:
        v = r.values.get("OwnerId")
        if v is None or (r.prior is not None and "OwnerId" not in r.changed):
            continue
        if ids.split(v) in {("00G", n) for n in bad}:
            batch.fail(r.index, "INVALID_CROSS_REFERENCE_KEY",
                       f"invalid cross reference id: Owner ID {v} is not a queue that can own {plan.obj.label} "
                       f"records (add {plan.obj.api_name} to the queue's QueueSobject rows)", ["OwnerId"])


def unique(conn: Connection, schema: SchemaSnapshot, plan: WritePlan, batch: Batch, *,
           against_table: str = "all") -> None:
    """Fail rows whose unique values repeat within the batch, or (for ``against_table`` rows: all | updates)
    match another live record."""
    if not plan.unique:
        return
    t = table_for(schema, plan.obj)
    for f in plan.unique:
        text = TYPES[f.type].storage == "text"
        col = t.c[f.column or ""]
        seen: dict[Any, int] = {}
        candidates: list[RowState] = []
        for r in batch.rows:
            v = r.values.get(f.api_name)
            if v is None or (r.prior is not None and f.api_name not in r.changed):
                continue
            key = v.lower() if text else v
            if key in seen:
                batch.fail(r.index, "DUPLICATE_VALUE",
                           f"duplicate value found: {f.api_name} duplicates value on another record in this batch",
                           [f.api_name])
                continue
            seen[key] = r.index
            if against_table == "all" or r.prior is not None:
                candidates.append(r)
        if not candidates:
            continue
        keys = [r.values[f.api_name].lower() if text else r.values[f.api_name] for r in candidates]
        existing: dict[Any, int] = {}
        expr = sa.func.lower(col) if text else col
        for part in chunks(keys):
            q = sa.select(expr, t.c.id).where(expr.in_(part), t.c.is_deleted == sa.false())
            for key, pk in conn.execute(q):
                existing[key] = pk
        for r in candidates:
            v = r.values[f.api_name]
            pk = existing.get(v.lower() if text else v)
            if pk is not None and pk != r.pk:
                batch.fail(r.index, "DUPLICATE_VALUE",
                           f"duplicate value found: {f.api_name} duplicates value on record with id: "
                           f"{ids.encode(plan.obj.key_prefix, pk)}", [f.api_name])


def match_external_ids(conn: Connection, schema: SchemaSnapshot, obj: ObjectDef, key_field: FieldDef,
                       drafts: Sequence[Mapping[str, Any]]) -> dict[int, str | list[str]]:
    """For each draft index: the matching record's id, or a list of ids when zero (for Id) or several match."""
    t = table_for(schema, obj)
    text = TYPES[key_field.type].storage == "text"
    out: dict[int, str | list[str]] = {}
    wanted: dict[Any, list[int]] = {}
    for i, d in enumerate(drafts):
        raw = next((v for k, v in d.items() if k.lower() == key_field.key), None)
        if raw in (None, ""):
            continue
        if key_field.type == "id":
            try:
                wanted.setdefault(ids.decode(str(raw), obj.key_prefix), []).append(i)
            except Exception:
                out[i] = []
            continue
        coerce = None
        try:
            from keel.metadata.types import value_coercer

            coerce = value_coercer(key_field)
            v = coerce(raw) if coerce else raw
        except FieldValueError:
            continue
        wanted.setdefault(v.lower() if text and isinstance(v, str) else v, []).append(i)
    col = t.c.id if key_field.type == "id" else t.c[key_field.column or ""]
    expr = sa.func.lower(col) if text else col
    hits: dict[Any, list[int]] = {}
    keys = list(wanted)
    for part in chunks(keys):
        for key, pk in conn.execute(sa.select(expr, t.c.id).where(expr.in_(part), t.c.is_deleted == sa.false())):
            hits.setdefault(key, []).append(pk)
    for key, idxs in wanted.items():
        found = hits.get(key, [])
        for i in idxs:
            if len(found) == 1:
                out[i] = ids.encode(obj.key_prefix, found[0])
            elif len(found) > 1:
                out[i] = [ids.encode(obj.key_prefix, pk) for pk in found]
    return out
