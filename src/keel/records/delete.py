"""``delete_many`` and ``undelete_many``: the recycle bin.

A delete sets ``is_deleted`` and records the row in ``keel_recycle_bin`` with the root of its cascade, so undelete
restores exactly the master-detail children that were deleted with the parent, and not those deleted on their own
earlier. A lookup with ``on_delete: restrict`` blocks deleting a parent that live records still point at; one with
``on_delete: set_null`` is cleared on the children and restored by undelete (``records.unlink``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.errors import ROLLED_BACK, BatchError, ErrorDetail, KeelError, RowResult
from keel.metadata.model import ObjectDef, SchemaSnapshot
from keel.metadata.tables import table_for
from keel.records.hooks import RowError, RowState
from keel.records.rules import recompute_rollups
from keel.records.unlink import clear_lookups, forget_lookups, restore_lookups
from keel.records.validate import chunks, row_to_values
from keel.records.write import change_event
from keel.storage import ids
from keel.storage import system as S

if TYPE_CHECKING:
    from keel.context import Context


def delete_many(ctx: Context, obj_name: str, record_ids: Sequence[str], *, all_or_none: bool = True,
                conn: Connection | None = None) -> list[RowResult]:
    if conn is None:
        with ctx.db.transaction() as c:
            return _change(ctx, c, obj_name, record_ids, all_or_none, delete=True)
    return _change(ctx, conn, obj_name, record_ids, all_or_none, delete=True)


def hard_delete_many(ctx: Context, obj_name: str, record_ids: Sequence[str], *, all_or_none: bool = True,
                     conn: Connection | None = None) -> list[RowResult]:
    """Delete for good (Bulk ``hardDelete``): the same checks and cascade as ``delete_many``, then the rows and
    their recycle-bin entries (including cascaded children) are removed, so nothing can be undeleted."""
    if conn is None:
        with ctx.db.transaction() as c:
            return hard_delete_many(ctx, obj_name, record_ids, all_or_none=all_or_none, conn=c)
    results = _change(ctx, conn, obj_name, record_ids, all_or_none, delete=True)
    schema = ctx.schema(conn)
    obj = schema.get_object(obj_name)
    pks = [ids.decode(r.id, obj.key_prefix) for r in results if r.id is not None and not r.errors]
    bin_ = S.recycle_bin
    by_id = {o.id: o for o in schema}
    for part in chunks(pks):
        forget_lookups(conn, obj, part)
        doomed: dict[int, list[int]] = {obj.id: list(part)}
        for oid, rid in conn.execute(sa.select(bin_.c.object_id, bin_.c.record_id).where(
                bin_.c.root_object_id == obj.id, bin_.c.root_record_id.in_(part), bin_.c.object_id != obj.id)):
            doomed.setdefault(oid, []).append(rid)
        for oid, rids in doomed.items():
            target = by_id.get(oid)
            if target is None:
                continue
            t = table_for(schema, target)
            for sub in chunks(rids):
                conn.execute(sa.delete(bin_).where(bin_.c.object_id == oid, bin_.c.record_id.in_(sub)))
                conn.execute(sa.delete(t).where(t.c.id.in_(sub)))
    return results


def undelete_many(ctx: Context, obj_name: str, record_ids: Sequence[str], *, all_or_none: bool = True,
                  conn: Connection | None = None) -> list[RowResult]:
    if conn is None:
        with ctx.db.transaction() as c:
            return _change(ctx, c, obj_name, record_ids, all_or_none, delete=False)
    return _change(ctx, conn, obj_name, record_ids, all_or_none, delete=False)


def _change(ctx: Context, conn: Connection, obj_name: str, record_ids: Sequence[str], all_or_none: bool, *,
            delete: bool) -> list[RowResult]:
    schema = ctx.schema(conn)
    obj = schema.get_object(obj_name)
    results = [RowResult(index=i) for i in range(len(record_ids))]
    action = "delete"
    # RecordType rows follow the objects' metadata (records/recordtypes.py): a deploy deactivates them, nobody
    # deletes them, because records point at them.
    allowed = ctx.actor.access.can(obj.api_name, action) and (obj.key != "recordtype" or ctx.actor.is_system)
    pks: dict[int, int] = {}
    for i, raw in enumerate(record_ids):
        try:
            pk = ids.decode(str(raw), obj.key_prefix)
        except KeelError as e:
            results[i].errors.append(ErrorDetail(e.code, e.message, ("Id",), i))
            continue
        if not allowed:
            results[i].errors.append(ErrorDetail("INSUFFICIENT_ACCESS_OR_READONLY",
                                                 f"You do not have permission to delete {obj.label} records.", (), i))
            continue
        pks[i] = pk
    t = table_for(schema, obj)
    found: dict[int, dict[str, Any]] = {}
    for part in chunks(list(pks.values())):
        q = sa.select(t).where(t.c.id.in_(part))
        pred = None if ctx.actor.is_system else ctx.actor.access.record_filter(obj, t, "delete")
        if pred is not None:
            q = q.where(pred)
        for fetched in conn.execute(q).mappings():
            found[fetched["id"]] = dict(fetched)
    rows: list[RowState] = []
    for i, pk in pks.items():
        row = found.get(pk)
        if row is None:
            results[i].errors.append(ErrorDetail("ENTITY_IS_DELETED" if delete else "NOT_FOUND",
                                                 "entity is deleted" if delete else "No such record in the recycle "
                                                 "bin.", ("Id",), i))
        elif bool(row["is_deleted"]) == delete:
            code = "ENTITY_IS_DELETED" if delete else "UNDELETE_FAILED"
            msg = "entity is deleted" if delete else "The record is not in the recycle bin."
            results[i].errors.append(ErrorDetail(code, msg, ("Id",), i))
        else:
            rows.append(RowState(index=i, values=row_to_values(schema, obj, row), pk=pk))
    if delete and rows:
        _check_restrict(conn, schema, obj, rows, results)
        rows = [r for r in rows if not results[r.index].errors]
    hooks = ctx.hooks
    if hooks is not None and rows and delete:
        try:
            hooks.before_delete(ctx, conn, obj, rows)
        except RowError as e:
            results[e.index].errors.append(ErrorDetail(e.code, e.message, e.fields, e.index))
        rows = [r for r in rows if not results[r.index].errors]
    if any(res.errors for res in results) and all_or_none:
        for res in results:
            if not res.errors:
                res.errors.append(ErrorDetail(ROLLED_BACK, "Rolled back because another record failed.", (),
                                              res.index))
        raise BatchError(results)
    if rows:
        now = ctx.clock()
        if delete:
            _soft_delete(ctx, conn, schema, obj, [r.pk for r in rows if r.pk is not None], obj, now)
        else:
            _restore(ctx, conn, schema, obj, [r.pk for r in rows if r.pk is not None], now)
        recompute_rollups(conn, schema, obj, rows)
        if hooks is not None:
            (hooks.after_delete if delete else hooks.after_undelete)(ctx, conn, obj, rows)
    for state in rows:
        assert state.pk is not None
        results[state.index].id = ids.encode(obj.key_prefix, state.pk)
    return results


def _check_restrict(conn: Connection, schema: SchemaSnapshot, obj: ObjectDef, rows: Sequence[RowState],
                    results: list[RowResult]) -> None:
    pks = [r.pk for r in rows]
    for rel in schema.child_relationships(obj):
        child = schema.get_object(rel.child_object)
        f = child.get_field(rel.field)
        if f.on_delete != "restrict" or len(f.reference_to) != 1:
            continue
        ct = table_for(schema, child)
        col = ct.c[f.column or ""]
        blocked: set[int] = set()
        for part in chunks(pks):
            blocked.update(conn.execute(sa.select(col).distinct().where(col.in_(part),
                                                                        ct.c.is_deleted == sa.false())).scalars())
        for r in rows:
            if r.pk in blocked:
                results[r.index].errors.append(ErrorDetail(
                    "DELETE_FAILED", f"Your attempt to delete this {obj.label} could not be completed because it is "
                    f"associated with {child.plural_label} records ({f.label}).", (), r.index))


def _soft_delete(ctx: Context, conn: Connection, schema: SchemaSnapshot, obj: ObjectDef, pks: Sequence[int],
                 root: ObjectDef, now: datetime, root_pks: dict[int, int] | None = None) -> None:
    """Delete ``pks`` and, recursively, their live master-detail children, remembering the cascade root; clear the
    ``set_null`` lookups pointing at each of them."""
    t = table_for(schema, obj)
    actor = ctx.actor.user_id
    for part in chunks(list(pks)):
        conn.execute(sa.update(t).where(t.c.id.in_(part)).values(
            is_deleted=True, system_modstamp=now, last_modified_date=now, last_modified_by_id=actor,
            version=t.c.version + 1))
    conn.execute(sa.insert(S.recycle_bin), [
        {"object_id": obj.id, "record_id": pk, "deleted_date": now, "deleted_by_id": actor,
         "root_object_id": root.id, "root_record_id": (root_pks or {}).get(pk, pk)} for pk in pks
    ])
    conn.execute(sa.insert(S.outbox), [change_event(obj.id, obj.api_name, "DELETE",
                                                    list(pks), [], now)])
    clear_lookups(ctx, conn, schema, obj, pks, root, lambda pk: (root_pks or {}).get(pk, pk), now)
    for rel in schema.child_relationships(obj):
        if not rel.cascade_delete:
            continue
        child = schema.get_object(rel.child_object)
        ct = table_for(schema, child)
        col = ct.c[child.get_field(rel.field).column or ""]
        kids: dict[int, int] = {}
        for part in chunks(list(pks)):
            for kid, parent in conn.execute(sa.select(ct.c.id, col).where(col.in_(part),
                                                                            ct.c.is_deleted == sa.false())):
                kids[kid] = (root_pks or {}).get(parent, parent)
        if kids:
            _soft_delete(ctx, conn, schema, child, list(kids), root, now, kids)


def _restore(ctx: Context, conn: Connection, schema: SchemaSnapshot, obj: ObjectDef, pks: Sequence[int],
             now: datetime) -> None:
    bin_ = S.recycle_bin
    by_object: dict[int, list[int]] = {obj.id: list(pks)}
    for part in chunks(list(pks)):
        for oid, rid in conn.execute(sa.select(bin_.c.object_id, bin_.c.record_id).where(
                bin_.c.root_object_id == obj.id, bin_.c.root_record_id.in_(part),
                bin_.c.object_id != obj.id)):
            by_object.setdefault(oid, []).append(rid)
    by_id = {o.id: o for o in schema}
    actor = ctx.actor.user_id
    for oid, rids in by_object.items():
        target = by_id.get(oid)
        if target is None:
            continue
        t = table_for(schema, target)
        for part in chunks(rids):
            conn.execute(sa.update(t).where(t.c.id.in_(part)).values(
                is_deleted=False, system_modstamp=now, last_modified_date=now, last_modified_by_id=actor,
                version=t.c.version + 1))
            conn.execute(sa.delete(bin_).where(bin_.c.object_id == oid, bin_.c.record_id.in_(part)))
        conn.execute(sa.insert(S.outbox), [change_event(oid, target.api_name, "UNDELETE",
                                                        rids, [], now)])
    restore_lookups(ctx, conn, schema, obj, pks, now)
