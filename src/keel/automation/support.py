"""Small shared pieces: records as formulas see them, parent resolution, loading records, the system actor for
flow writes (audited), and the formula context of a save."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.context import SYSTEM_ACTOR
from keel.formula import FormulaContext
from keel.metadata.model import ObjectDef, SchemaSnapshot
from keel.metadata.tables import table_for
from keel.records.hooks import RowState
from keel.records.validate import chunks, row_to_values
from keel.security.audit import audit
from keel.storage import ids

if TYPE_CHECKING:
    from keel.context import Context

ADMIN_PROFILE = "System Administrator"


def is_admin(ctx: Context) -> bool:
    return ctx.actor.is_system or ctx.actor.profile == ADMIN_PROFILE


def record_of(obj: ObjectDef, r: RowState) -> dict[str, Any]:
    """The record mapping formulas and templates see: the values plus the public ``Id``."""
    rec = dict(r.values)
    if r.pk is not None:
        rec["Id"] = ids.encode(obj.key_prefix, r.pk)
    return rec


def prior_of(obj: ObjectDef, r: RowState) -> dict[str, Any] | None:
    if r.prior is None:
        return None
    rec = dict(r.prior)
    if r.pk is not None:
        rec["Id"] = ids.encode(obj.key_prefix, r.pk)
    return rec


def load_records(conn: Connection, schema: SchemaSnapshot, obj: ObjectDef, pks: Sequence[int], *,
                 include_deleted: bool = False) -> dict[int, dict[str, Any]]:
    """Records by primary key as the lifecycle sees them (API names, public ids), read in the caller's
    transaction so uncommitted rows of this save are visible."""
    t = table_for(schema, obj)
    out: dict[int, dict[str, Any]] = {}
    for part in chunks(list(pks)):
        q = sa.select(t).where(t.c.id.in_(part))
        if not include_deleted:
            q = q.where(t.c.is_deleted == sa.false())
        for row in conn.execute(q).mappings():
            rec = row_to_values(schema, obj, dict(row))
            out[int(row["id"])] = rec
    return out


def formula_context(ctx: Context, conn: Connection, schema: SchemaSnapshot) -> FormulaContext:
    """Clock and time zone from the Context; parents are fetched in the save's own transaction."""
    cache: dict[tuple[str, Any], Mapping[str, Any] | None] = {}

    def resolve(obj_name: str, public_id: Any) -> Mapping[str, Any] | None:
        key = (obj_name, public_id)
        if key not in cache:
            target = schema.find_object(obj_name)
            if target is None or public_id in (None, ""):
                cache[key] = None
            else:
                try:
                    pk = ids.split(str(public_id))[1]
                except Exception:
                    cache[key] = None
                    return None
                cache[key] = load_records(conn, schema, target, [pk]).get(pk)
        return cache[key]

    return FormulaContext(now=ctx.clock(), time_zone=ctx.actor.time_zone, resolve_parent=resolve,
                          user={"Id": ids.encode("005", ctx.actor.user_id), "Username": ctx.actor.username})


def flow_system_context(ctx: Context, conn: Connection, reason: str) -> Context:
    """Flow writes run as the explicit system actor, one level deeper; the switch is audited in the save's
    transaction (so a rolled-back save leaves no entry)."""
    audit(conn, "system_context", actor_id=SYSTEM_ACTOR.user_id, on_behalf_of_id=ctx.actor.user_id,
          detail={"reason": reason}, at=ctx.clock())
    return replace(ctx, actor=SYSTEM_ACTOR, depth=ctx.depth + 1)
