"""Scheduled paths: due rows in ``keel_scheduled_action``, kept in step with the record.

When a flow's condition holds after a save, each path's due time is (re)computed from its date field (or from the
moment the flow fired); a changed date moves the pending row; a blank date or a condition that stopped holding
cancels it. ``fire_due`` runs rows whose time has come under ``ctx.clock``, each in its own transaction, and
re-checks the condition first, so a record edited after scheduling never gets a stale action.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.automation.definitions import Flow, ScheduledPath
from keel.automation.support import formula_context
from keel.automation.tables import scheduled
from keel.formula.evaluate import compile_python
from keel.metadata import values as V
from keel.metadata.model import ObjectDef
from keel.records.hooks import RowState

if TYPE_CHECKING:
    from keel.context import Context


def due_time(path: ScheduledPath, record: dict[str, Any], now: dt.datetime) -> dt.datetime | None:
    if path.date_field is None:
        base: Any = now
    else:
        base = record.get(path.date_field)
        if base in (None, ""):
            return None
        if isinstance(base, str):
            base = V.parse_datetime(base) if "T" in base or " " in base else V.parse_date(base)
        if not isinstance(base, dt.datetime):
            base = dt.datetime.combine(base, dt.time())
        if base.tzinfo is not None:
            base = base.astimezone(dt.UTC).replace(tzinfo=None)
    return base + dt.timedelta(hours=path.offset_hours)  # type: ignore[no-any-return]


def sync(ctx: Context, conn: Connection, obj: ObjectDef, flow: Flow, holding: Sequence[RowState],
         firing: set[int], stopped: Sequence[RowState]) -> None:
    """Bring due rows in line with a save: ``holding`` rows meet the condition (``firing`` of them just fired);
    ``stopped`` rows no longer do."""
    if not flow.scheduled_paths:
        return
    now = ctx.clock()
    t = scheduled
    pks = [r.pk for r in [*holding, *stopped] if r.pk is not None]
    if not pks:
        return
    existing: dict[tuple[int, str], tuple[int, dt.datetime]] = {}
    for part in range(0, len(pks), 900):
        q = sa.select(t.c.id, t.c.record_id, t.c.path, t.c.due_at).where(
            t.c.object_id == obj.id, t.c.flow == flow.name, t.c.state == "pending",
            t.c.record_id.in_(pks[part:part + 900]))
        for sid, rid, path, due in conn.execute(q):
            existing[(int(rid), path)] = (int(sid), due)
    cancel: list[int] = [sid for r in stopped for (rid, _), (sid, _) in existing.items() if rid == r.pk]
    computed = _formula_dates(ctx, conn, obj, flow, holding)
    inserts: list[dict[str, Any]] = []
    moves: list[dict[str, Any]] = []
    for r in holding:
        assert r.pk is not None
        for p in flow.scheduled_paths:
            have = existing.get((r.pk, p.name))
            if p.date_field is None:
                if have is None and r.index in firing:
                    inserts.append(_row(ctx, obj, flow, p, r.pk, now + dt.timedelta(hours=p.offset_hours), now))
                continue
            due = due_time(p, computed.get((r.index, p.name), r.values), now)
            if due is None:
                if have is not None:
                    cancel.append(have[0])
            elif have is None:
                inserts.append(_row(ctx, obj, flow, p, r.pk, due, now))
            elif have[1] != due:
                moves.append({"b_id": have[0], "b_due": due})
    if cancel:
        conn.execute(sa.update(t).where(t.c.id.in_(cancel)).values(state="cancelled"))
    if moves:
        conn.execute(sa.update(t).where(t.c.id == sa.bindparam("b_id")).values(due_at=sa.bindparam("b_due")), moves)
    if inserts:
        conn.execute(sa.insert(t), inserts)


def _formula_dates(ctx: Context, conn: Connection, obj: ObjectDef, flow: Flow,
                   holding: Sequence[RowState]) -> dict[tuple[int, str], dict[str, Any]]:
    """Paths relative to a date *formula* (a contract's current end date, say): formulas are computed at query
    time, so the saved row does not carry them; evaluate each against the row as saved. The due time is fixed at
    save time, so such a formula should depend on the record's fields, not on TODAY()."""
    paths = [p for p in flow.scheduled_paths
             if p.date_field is not None and obj.get_field(p.date_field).type == "formula"]
    if not paths or not holding:
        return {}
    schema = ctx.schema(conn)
    fctx = formula_context(ctx, conn, schema)
    out: dict[tuple[int, str], dict[str, Any]] = {}
    for p in paths:
        assert p.date_field is not None
        fn = compile_python(p.date_field, obj, schema, context_kind="flow")
        for r in holding:
            out[(r.index, p.name)] = {p.date_field: fn(r.values, fctx.for_row(r.prior))}
    return out


def cancel_for(conn: Connection, obj: ObjectDef, pks: Sequence[int]) -> None:
    """A deleted record keeps no pending scheduled actions."""
    if pks:
        conn.execute(sa.update(scheduled).where(scheduled.c.object_id == obj.id, scheduled.c.record_id.in_(list(pks)),
                                                scheduled.c.state == "pending").values(state="cancelled"))


def _row(ctx: Context, obj: ObjectDef, flow: Flow, p: ScheduledPath, pk: int, due: dt.datetime,
         now: dt.datetime) -> dict[str, Any]:
    return {"flow": flow.name, "path": p.name, "object_id": obj.id, "record_id": pk, "due_at": due,
            "state": "pending", "run_as_id": ctx.actor.user_id, "created_date": now}


def claim_due(conn: Connection, now: dt.datetime, limit: int) -> list[dict[str, Any]]:
    """Pending rows due by ``now``, marked running in the caller's transaction (skip-locked on PostgreSQL)."""
    t = scheduled
    q = sa.select(t).where(t.c.state == "pending", t.c.due_at <= now).order_by(t.c.due_at, t.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    rows = [dict(r) for r in conn.execute(q).mappings()]
    if rows:
        conn.execute(sa.update(t).where(t.c.id.in_([r["id"] for r in rows])).values(state="running"))
    return rows


def finish(conn: Connection, sid: int, state: str, now: dt.datetime, error: str | None = None) -> None:
    conn.execute(sa.update(scheduled).where(scheduled.c.id == sid).values(state=state, fired_date=now,
                                                                          last_error=error))
