"""``SecurityHooks``: the lifecycle hooks that keep derived security data in step with the records it derives from.

- Any write to a permission sObject (users, profiles, roles, permission sets and assignments, object/field
  permissions, groups, members, sharing rules) bumps ``security_version`` in the same transaction, so cached
  ``Access`` objects go stale at commit.
- Writes that change the shape of roles, users or groups rebuild the closures (``principals.recalculate``) in the
  same transaction: no partial state is ever visible.
- A change of ``OwnerId`` deletes the record's manual shares; programmatic shares (any other row cause) survive.
- Deleting a record deletes its share rows.

It wraps an optional ``inner`` hook object (automation's), so services compose them:
``ctx.hooks = SecurityHooks(inner=automation_hooks)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.errors import KeelError
from keel.metadata.model import ObjectDef
from keel.metadata.tables import table_for
from keel.security import reach
from keel.security.access import SETUP_OBJECTS, bump_security_version
from keel.security.audit import audit
from keel.security.predicate import ALL
from keel.security.principals import load_role_parents, principal_for_id, recalculate
from keel.security.shareobj import LEVELS, ShareShape, share_object_of, share_shape
from keel.security.tables import shares
from keel.storage import ids

if TYPE_CHECKING:
    from keel.context import Context

_RECALC_OBJECTS = frozenset({"userrole", "group", "groupmember"})
_USER_SHAPE = frozenset({"UserRoleId", "IsActive"})
MANUAL = "Manual"


def _pks(rows: Sequence[Any]) -> list[int]:
    return [int(r.pk) for r in rows if r.pk is not None]


class SecurityHooks:
    def __init__(self, inner: Any = None) -> None:
        self.inner = inner

    def before_save(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[Any]) -> None:
        shape = share_shape(ctx.schema(conn), obj)
        if shape is not None:
            check_share_rows(ctx, conn, shape, rows)
        if self.inner is not None:
            self.inner.before_save(ctx, conn, obj, rows)

    def after_save(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[Any]) -> None:
        self._changed(ctx, conn, obj, rows, "save")
        schema = ctx.schema(conn)
        shape = share_shape(schema, obj)
        if shape is not None:
            mirror_shares(ctx, conn, shape, rows)
        moved = [int(r.pk) for r in rows if r.prior is not None and r.pk is not None and "OwnerId" in r.changed]
        if moved:
            conn.execute(sa.delete(shares).where(shares.c.object_id == obj.id, shares.c.record_id.in_(moved),
                                                 shares.c.row_cause == MANUAL))
            reach.refresh(conn, schema, obj.id, moved)
            own = share_object_of(schema, obj)
            if own is not None:  # the manual share records go too (hard delete: they are derived, not data)
                st = table_for(schema, own.share)
                assert own.parent_field.column
                cause = own.share.get_field("RowCause").column or ""
                conn.execute(sa.delete(st).where(st.c[own.parent_field.column].in_(moved), st.c[cause] == MANUAL))
        if self.inner is not None:
            self.inner.after_save(ctx, conn, obj, rows)

    def before_delete(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[Any]) -> None:
        if self.inner is not None:
            self.inner.before_delete(ctx, conn, obj, rows)

    def after_delete(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[Any]) -> None:
        self._changed(ctx, conn, obj, rows, "delete")
        pks = _pks(rows)
        if pks:
            conn.execute(sa.delete(shares).where(shares.c.object_id == obj.id, shares.c.record_id.in_(pks)))
            reach.forget(conn, ctx.schema(conn), obj.id, pks)
            shape = share_shape(ctx.schema(conn), obj)
            if shape is not None:  # share sObject pks are per table: the parent object tells the mirrors apart
                mirrored = shares.c.object_id == shape.parent.id, shares.c.share_id.in_(pks)
                records = conn.execute(sa.select(shares.c.record_id).where(*mirrored)).scalars().all()
                conn.execute(sa.delete(shares).where(*mirrored))
                reach.refresh(conn, ctx.schema(conn), shape.parent.id, (int(r) for r in records))
        if self.inner is not None:
            self.inner.after_delete(ctx, conn, obj, rows)

    def after_undelete(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[Any]) -> None:
        self._changed(ctx, conn, obj, rows, "undelete")
        shape = share_shape(ctx.schema(conn), obj)
        if shape is not None:
            mirror_shares(ctx, conn, shape, rows)
        if self.inner is not None:
            self.inner.after_undelete(ctx, conn, obj, rows)

    def _changed(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[Any], what: str) -> None:
        if obj.key not in SETUP_OBJECTS or not rows:
            return
        bump_security_version(conn)
        if obj.key != "user":
            audit(conn, "permission_change", actor_id=ctx.actor.user_id, object=obj.api_name,
                  detail={"op": what, "ids": _pks(rows)[:50], "fields": sorted({f for r in rows for f in
                                                                               getattr(r, "changed", ()) or ()})},
                  at=ctx.clock())
        shape = obj.key in _RECALC_OBJECTS or (
            obj.key == "user" and any(r.prior is None or (set(r.changed) & _USER_SHAPE) for r in rows))
        if shape:
            schema = ctx.schema(conn)
            if obj.key == "userrole":
                from keel.security.principals import has_cycle
                if has_cycle(load_role_parents(conn, schema)) is not None:
                    raise KeelError("A role cannot be its own ancestor.", code="CIRCULAR_DEPENDENCY")
            progress = ctx.extras.get("recalc_progress")
            recalculate(conn, schema, progress)


class ShareRowError(KeelError):
    """A share row the actor may not write. Raised from a hook, it fails (and rolls back) the whole save."""

    code = "INSUFFICIENT_ACCESS_OR_READONLY"


def check_share_rows(ctx: Context, conn: Connection, shape: ShareShape, rows: Sequence[Any]) -> None:
    """Manual shares need full access to the shared record; other row causes (programmatic shares) need Modify
    All Data; the grantee must be a user, group or role."""
    actor = ctx.actor
    mad = actor.is_system or bool(getattr(actor.access, "has", lambda _p: False)("ModifyAllData"))
    parents: set[int] = set()
    for r in rows:
        v = r.values
        try:
            principal_for_id(str(v.get("UserOrGroupId") or ""))
        except KeelError as e:
            raise ShareRowError(f"Row {r.index + 1}: {e.message}", code="INVALID_CROSS_REFERENCE_KEY",
                                fields=["UserOrGroupId"]) from None
        if (v.get("RowCause") or MANUAL) != MANUAL and not mad:
            raise ShareRowError(f"Row {r.index + 1}: only users with Modify All Data can write shares with row "
                                f"cause {v.get('RowCause')!r}.", fields=["RowCause"])
        parent = v.get(shape.parent_field.api_name)
        if parent:
            parents.add(ids.split(str(parent))[1])
    if mad or not parents:
        return
    t = table_for(ctx.schema(conn), shape.parent)
    pred = actor.access.record_filter(shape.parent, t, "delete")
    q = sa.select(t.c.id).where(t.c.id.in_(sorted(parents)))
    full = set(conn.execute(q.where(pred) if pred is not None else q).scalars())
    if parents - full:
        raise ShareRowError("Only the owner, users above the owner in the role hierarchy and administrators can "
                            f"share these {shape.parent.label} records.", fields=[shape.parent_field.api_name])


def mirror_shares(ctx: Context, conn: Connection, shape: ShareShape, rows: Sequence[Any]) -> None:
    """Replace the ``keel_share`` rows of these share records with their current values."""
    pks = _pks(rows)
    if not pks:
        return
    # Share sObject pks are per table (AccountShare 1 and Memo__Share 1 both exist): match the parent object too.
    mirrored = shares.c.object_id == shape.parent.id, shares.c.share_id.in_(pks)
    touched = {int(r) for r in conn.execute(sa.select(shares.c.record_id).where(*mirrored)).scalars()}
    conn.execute(sa.delete(shares).where(*mirrored))
    now = ctx.clock()
    out: list[dict[str, Any]] = []
    for r in rows:
        v = r.values
        parent = v.get(shape.parent_field.api_name)
        if r.pk is None or not parent:
            continue
        out.append({"object_id": shape.parent.id, "record_id": ids.split(str(parent))[1],
                    "principal": principal_for_id(str(v["UserOrGroupId"]),
                                                  subordinates=bool(v.get("IncludeSubordinates"))),
                    "access_level": LEVELS.get(str(v.get(shape.level_field.api_name)), ALL),
                    "row_cause": str(v.get("RowCause") or MANUAL), "created_date": now,
                    "created_by_id": ctx.actor.user_id, "share_id": int(r.pk)})
    if out:
        # Two share records for the same grant keep one index row; the unique key is the grant.
        seen: set[tuple[int, int, str]] = set()
        for row in out:
            k = (row["record_id"], row["principal"], row["row_cause"])
            if k in seen:
                continue
            seen.add(k)
            conn.execute(sa.delete(shares).where(shares.c.object_id == row["object_id"],
                                                 shares.c.record_id == row["record_id"],
                                                 shares.c.principal == row["principal"],
                                                 shares.c.row_cause == row["row_cause"]))
            conn.execute(sa.insert(shares).values(**row))
            touched.add(int(row["record_id"]))
    reach.refresh(conn, ctx.schema(conn), shape.parent.id, touched)
