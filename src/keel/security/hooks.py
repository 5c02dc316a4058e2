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
from keel.security.access import SETUP_OBJECTS, bump_security_version
from keel.security.audit import audit
from keel.security.principals import load_role_parents, recalculate
from keel.security.tables import shares

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
        if self.inner is not None:
            self.inner.before_save(ctx, conn, obj, rows)

    def after_save(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[Any]) -> None:
        self._changed(ctx, conn, obj, rows, "save")
        moved = [int(r.pk) for r in rows if r.prior is not None and r.pk is not None and "OwnerId" in r.changed]
        if moved:
            conn.execute(sa.delete(shares).where(shares.c.object_id == obj.id, shares.c.record_id.in_(moved),
                                                 shares.c.row_cause == MANUAL))
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
        if self.inner is not None:
            self.inner.after_delete(ctx, conn, obj, rows)

    def after_undelete(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[Any]) -> None:
        self._changed(ctx, conn, obj, rows, "undelete")
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
