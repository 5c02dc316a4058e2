"""Lookups with ``on_delete: set_null``: a parent's delete clears them, its undelete puts them back.

Salesforce clears such a lookup on every child when the parent goes to the recycle bin, whoever can see the child,
and restores it when the parent is undeleted. Keel does the same inside the delete's transaction: the children's
rows get the same audit columns, version bump, field history and outbox event an update would give them, and each
cleared value is remembered in ``keel_cleared_lookup`` under the recycle-bin entry that caused it. Undelete restores
only values still empty (a child re-pointed since keeps its new parent); a hard delete forgets them.

No flows run for the children, as in Salesforce, where clearing a lookup on delete fires no triggers. Required
lookups are never cleared: they default to ``restrict`` (the package parser refuses ``set_null`` on them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.metadata.model import FieldDef, ObjectDef, SchemaSnapshot
from keel.metadata.tables import is_polymorphic, table_for, type_column
from keel.records.validate import chunks
from keel.records.write import change_event, insert_outbox
from keel.storage import ids
from keel.storage import system as S

if TYPE_CHECKING:
    from keel.context import Context


def clear_lookups(ctx: Context, conn: Connection, schema: SchemaSnapshot, obj: ObjectDef, pks: Sequence[int],
                  root: ObjectDef, root_of: Callable[[int], int], now: datetime) -> None:
    """Clear every ``set_null`` lookup pointing at ``pks`` (records of ``obj`` being deleted)."""
    for rel in schema.child_relationships(obj):
        child = schema.get_object(rel.child_object)
        f = child.get_field(rel.field)
        if rel.cascade_delete or f.on_delete != "set_null" or f.required or not f.column:
            continue
        t = table_for(schema, child)
        col = t.c[f.column]
        hits: list[tuple[int, int]] = []
        for part in chunks(list(pks)):
            cond: sa.ColumnElement[bool] = col.in_(part)
            if is_polymorphic(f):
                cond = sa.and_(cond, t.c[type_column(f)] == obj.key_prefix)
            hits.extend((int(a), int(b)) for a, b in conn.execute(sa.select(t.c.id, col).where(cond)))
        if not hits:
            continue
        _set(ctx, conn, child, f, t, [(kid, None) for kid, _ in hits], obj, now,
             [(kid, ids.encode(obj.key_prefix, parent), None) for kid, parent in hits])
        conn.execute(sa.insert(S.cleared_lookups), [
            {"root_object_id": root.id, "root_record_id": root_of(parent), "object_id": child.id, "record_id": kid,
             "field_id": f.id, "parent_object_id": obj.id, "parent_record_id": parent} for kid, parent in hits])


def restore_lookups(ctx: Context, conn: Connection, schema: SchemaSnapshot, root: ObjectDef, pks: Sequence[int],
                    now: datetime) -> None:
    """Put back the lookups cleared when ``pks`` (records of ``root``) were deleted, where still empty."""
    cl = S.cleared_lookups
    by_id = {o.id: o for o in schema}
    for part in chunks(list(pks)):
        groups: dict[tuple[int, int, int], list[tuple[int, int]]] = {}
        for oid, rid, fid, poid, prid in conn.execute(
                sa.select(cl.c.object_id, cl.c.record_id, cl.c.field_id, cl.c.parent_object_id,
                          cl.c.parent_record_id)
                .where(cl.c.root_object_id == root.id, cl.c.root_record_id.in_(part)).order_by(cl.c.id)):
            groups.setdefault((oid, fid, poid), []).append((int(rid), int(prid)))
        for (oid, fid, poid), pairs in groups.items():
            child, parent = by_id.get(oid), by_id.get(poid)
            f = next((x for x in child.fields if x.id == fid), None) if child is not None else None
            if child is None or parent is None or f is None or not f.column or not f.is_relationship:
                continue  # the object or field was deleted since; nothing to restore into
            t = table_for(schema, child)
            col = t.c[f.column]
            wanted = dict(pairs)
            empty: set[int] = set()
            for sub in chunks(list(wanted)):
                empty.update(int(x) for x in conn.execute(sa.select(t.c.id).where(t.c.id.in_(sub), col.is_(None)))
                             .scalars())
            todo = [(kid, wanted[kid]) for kid in wanted if kid in empty]
            if todo:
                _set(ctx, conn, child, f, t, todo, parent, now,
                     [(kid, None, ids.encode(parent.key_prefix, p)) for kid, p in todo])
        forget_lookups(conn, root, part)


def forget_lookups(conn: Connection, root: ObjectDef, pks: Sequence[int]) -> None:
    """Drop what deleting ``pks`` cleared: they left the recycle bin (undeleted or deleted for good)."""
    cl = S.cleared_lookups
    for part in chunks(list(pks)):
        conn.execute(sa.delete(cl).where(cl.c.root_object_id == root.id, cl.c.root_record_id.in_(part)))


def _set(ctx: Context, conn: Connection, child: ObjectDef, f: FieldDef, t: sa.Table,
         values: Sequence[tuple[int, int | None]], parent: ObjectDef, now: datetime,
         changes: Sequence[tuple[int, str | None, str | None]]) -> None:
    """Write the lookup on the children like an update of that one field: audit columns, history, outbox."""
    assert f.column
    upd: dict[str, Any] = {f.column: sa.bindparam("v_value"), "system_modstamp": now, "last_modified_date": now,
                           "last_modified_by_id": ctx.actor.user_id, "version": t.c.version + 1}
    if is_polymorphic(f):
        upd[type_column(f)] = sa.bindparam("v_type")
    stmt = sa.update(t).where(t.c.id == sa.bindparam("b_id")).values(upd)
    params: list[dict[str, Any]] = [{"b_id": kid, "v_value": v} for kid, v in values]
    if is_polymorphic(f):
        for p, (_, v) in zip(params, values, strict=True):
            p["v_type"] = None if v is None else parent.key_prefix
    conn.execute(stmt, params)
    if f in child.tracked_fields:
        conn.execute(sa.insert(S.history), [
            {"object_id": child.id, "record_id": kid, "field": f.api_name, "old_value": old, "new_value": new,
             "created_date": now, "created_by_id": ctx.actor.user_id} for kid, old, new in changes])
    insert_outbox(conn, [change_event(child.id, child.api_name, "UPDATE", [kid for kid, _ in values],
                                      [f.api_name], now)])
