"""Automation use cases: wiring the hooks into a Context, deploying flows and approval processes, approval
actions, the dead-letter queue, scheduled paths and the in-process dispatcher.

Wiring: ``ctx = wire_automation(ctx)`` composes ``SecurityHooks(inner=AutomationHooks(...))`` (security first,
then flows), keeps any hooks already present, and is idempotent. ``keel up``, the API app and the web app call it
on their base Context; ``start_dispatcher(ctx)`` starts the in-process delivery thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from keel.automation import approvals, scheduling
from keel.automation.definitions import check_approval, check_flow, load_definitions
from keel.automation.dispatcher import Dispatcher, Sender, Stats, dead_letters, retry
from keel.automation.flows import AutomationHooks
from keel.automation.registry import store
from keel.automation.tables import create_automation_tables
from keel.context import SYSTEM_ACTOR, Context
from keel.errors import KeelError
from keel.records.hooks import RowError, find_hook
from keel.security.hooks import SecurityHooks
from keel.services.security import system_context, user_context, wire_security
from keel.storage import ids
from keel.storage.system import set_meta


def wire_automation(ctx: Context) -> Context:
    """A Context whose lifecycle runs security's hooks, then flows, approval locks and scheduled paths."""
    ctx = wire_security(ctx)
    if find_hook(ctx.hooks, AutomationHooks) is not None:
        return ctx
    sec = find_hook(ctx.hooks, SecurityHooks)
    assert sec is not None
    with ctx.db.transaction() as conn:
        create_automation_tables(conn)
    return replace(ctx, hooks=SecurityHooks(inner=AutomationHooks(inner=sec.inner)))


def automation_hooks(ctx: Context) -> AutomationHooks:
    found = find_hook(ctx.hooks, AutomationHooks)
    if found is not None:
        return found
    raise KeelError("Automation is not wired into this context; call wire_automation(ctx).",
                    code="NOT_INITIALISED")


def deploy_automation(ctx: Context, package_path: str | Path) -> int:
    """Check and store a package's ``flows/*.yaml`` and ``approvals/*.yaml``; returns how many were deployed.
    Every formula is type-checked against the current schema first, so a bad definition changes nothing."""
    flows, procs = load_definitions(package_path)
    if not flows and not procs:
        return 0
    with ctx.db.transaction() as conn:
        schema = ctx.schema(conn)
        for f in flows:
            check_flow(f, schema)
        for p in procs:
            check_approval(p, schema)
        return store(conn, flows, procs)


# -- approvals ------------------------------------------------------------------------------------------------------
def submit_for_approval(ctx: Context, record_id: str, process: str, comments: str | None = None) -> str:
    hooks = automation_hooks(ctx)
    with ctx.db.transaction() as conn:
        schema = ctx.schema(conn)
        obj = schema.find_by_prefix(record_id[:3])
        if obj is None:
            raise KeelError(f"Unknown record id {record_id}.", code="MALFORMED_ID")
        proc = hooks.registry.get(conn).approvals.get(process)
        try:
            return approvals.submit(ctx, conn, hooks, proc, process, obj, ids.decode(record_id, obj.key_prefix),
                                    comments)
        except RowError as e:
            raise approvals.step_error(e) from None


def approve(ctx: Context, workitem_id: str, comments: str | None = None) -> str:
    return _act(ctx, workitem_id, "approve", comments)


def reject(ctx: Context, workitem_id: str, comments: str | None = None) -> str:
    return _act(ctx, workitem_id, "reject", comments)


def _act(ctx: Context, workitem_id: str, action: str, comments: str | None) -> str:
    hooks = automation_hooks(ctx)
    with ctx.db.transaction() as conn:
        try:
            return approvals.act(ctx, conn, hooks, workitem_id, action, comments)
        except RowError as e:
            raise approvals.step_error(e) from None


def recall(ctx: Context, record_id: str, comments: str | None = None) -> None:
    hooks = automation_hooks(ctx)
    with ctx.db.transaction() as conn:
        try:
            approvals.recall(ctx, conn, hooks, record_id, comments)
        except RowError as e:
            raise approvals.step_error(e) from None


def items_to_approve(ctx: Context, user_id: str | None = None) -> list[dict[str, Any]]:
    """The pending approval requests assigned to a user (default: the acting user), oldest first."""
    from keel.services.query import query_all_records

    uid = user_id or ids.encode("005", ctx.actor.user_id)
    soql = ("SELECT Id, Name, StepNumber, CreatedDate, ProcessInstanceId, ProcessInstance.TargetObjectId, "
            "ProcessInstance.ProcessDefinitionName, ProcessInstance.SubmittedById FROM ProcessInstanceWorkitem "
            f"WHERE ActorId = '{ids.to18(uid[:15]) if len(uid) >= 15 else uid}' ORDER BY CreatedDate, Id")
    # A user's own queue: read as the audited system context, since approvers need no permission on the
    # approval objects themselves (Salesforce shows the list to every approver).
    return list(query_all_records(system_context(ctx, "items to approve"), soql))


def list_definitions(ctx: Context) -> list[dict[str, Any]]:
    """Every deployed flow and approval process, active or not (the setup screen; administrators only)."""
    _require_admin(ctx)
    from keel.automation.tables import definitions

    with ctx.db.read() as conn:
        rows = conn.execute(sa.select(definitions.c.kind, definitions.c.name, definitions.c.object,
                                      definitions.c.active).order_by(definitions.c.kind, definitions.c.name))
        return [dict(r) for r in rows.mappings()]


def set_definition_active(ctx: Context, kind: str, name: str, active: bool) -> None:
    """Activate or deactivate a flow or approval process; the registry version bump reloads it everywhere."""
    _require_admin(ctx)
    import orjson

    from keel.automation.registry import bump
    from keel.automation.tables import definitions
    from keel.security.audit import audit

    d = definitions
    with ctx.db.transaction() as conn:
        row = conn.execute(sa.select(d.c.definition).where(d.c.kind == kind, d.c.name == name)).first()
        if row is None:
            raise KeelError(f"No {kind} named {name}.", code="NOT_FOUND")
        doc = {**orjson.loads(row[0]), "active": active}
        conn.execute(sa.update(d).where(d.c.kind == kind, d.c.name == name)
                     .values(active=active, definition=orjson.dumps(doc).decode()))
        bump(conn)
        audit(conn, "automation_activate" if active else "automation_deactivate", actor_id=ctx.actor.user_id,
              detail={"kind": kind, "name": name}, at=ctx.clock())


# -- outbox ---------------------------------------------------------------------------------------------------------
def _require_admin(ctx: Context) -> None:
    if not (ctx.actor.is_system or ctx.actor.profile == "System Administrator"):
        raise KeelError("Only administrators can manage the outbox.", code="INSUFFICIENT_ACCESS_OR_READONLY")


def list_dead_letters(ctx: Context, limit: int = 200) -> list[dict[str, Any]]:
    _require_admin(ctx)
    with ctx.db.read() as conn:
        return dead_letters(conn, limit)


def retry_dead_letters(ctx: Context, outbox_ids: list[int]) -> int:
    _require_admin(ctx)
    with ctx.db.transaction() as conn:
        return retry(conn, outbox_ids, ctx.clock())


def fire_due_scheduled(ctx: Context, *, limit: int = 100) -> int:
    """Run scheduled-path actions due by ``ctx.clock()``; each in its own transaction, as the user who triggered
    the flow. Returns how many rows were handled."""
    hooks = automation_hooks(ctx)
    now = ctx.clock()
    with ctx.db.transaction() as conn:
        rows = scheduling.claim_due(conn, now, limit)
    for row in rows:
        state, error = "done", None
        try:
            run_as = int(row.get("run_as_id") or SYSTEM_ACTOR.user_id)
            run_ctx = ctx.as_actor(SYSTEM_ACTOR) if run_as == SYSTEM_ACTOR.user_id else user_context(ctx, run_as)
            with ctx.db.transaction() as conn:
                state = hooks.fire_scheduled(run_ctx, conn, row)
                scheduling.finish(conn, row["id"], state, now)
            continue
        except Exception as e:  # recorded on the row; the action's own writes rolled back
            state, error = "failed", f"{type(e).__name__}: {e}"
        with ctx.db.transaction() as conn:
            scheduling.finish(conn, row["id"], state, now, error)
    return len(rows)


def pending_scheduled(ctx: Context) -> list[dict[str, Any]]:
    from keel.automation.tables import scheduled

    with ctx.db.read() as conn:
        q = sa.select(scheduled).where(scheduled.c.state == "pending").order_by(scheduled.c.due_at)
        return [dict(r) for r in conn.execute(q).mappings()]


def dispatcher(ctx: Context, senders: dict[str, Sender] | None = None) -> Dispatcher:
    return Dispatcher(ctx, senders)


def deliver_pending(ctx: Context, senders: dict[str, Sender] | None = None) -> Stats:
    """Deliver everything due now (tests, ``keel worker --once``)."""
    return Dispatcher(ctx, senders).drain()


@dataclass
class Running:
    thread: threading.Thread
    stop: threading.Event

    def close(self, timeout: float = 5.0) -> None:
        self.stop.set()
        self.thread.join(timeout)


WORKER_HEARTBEAT_KEY = "worker_heartbeat"  # keel_meta: when a dispatcher last looked at the outbox
HEARTBEAT_SECONDS = 15


def with_heartbeat(fire: Any) -> Any:
    """Wrap a dispatcher round so it also records a heartbeat (at most every 15 s) for ``/readyz``."""
    last = [0.0]

    def round_(ctx: Context) -> int:
        now = time.monotonic()
        if now - last[0] >= HEARTBEAT_SECONDS:
            with ctx.db.transaction() as conn:
                set_meta(conn, WORKER_HEARTBEAT_KEY, ctx.clock().isoformat())
            last[0] = now
        return int(fire(ctx)) if fire is not None else 0

    return round_


def start_dispatcher(ctx: Context, senders: dict[str, Sender] | None = None, *, scheduled: bool = True) -> Running:
    """The in-process dispatcher thread of ``keel up``: delivers outbox rows and fires due scheduled paths.

    The thread wires its own context: it outlives whatever context its caller had in hand, and one without
    automation's hooks failed every round with "Automation is not wired" (the soak log showed it while the API's
    metrics wrapper still replaced the shared hooks in place, before af01c1b)."""
    ctx = wire_automation(ctx)
    stop = threading.Event()
    d = Dispatcher(ctx, senders)
    fire = with_heartbeat(fire_due_scheduled if scheduled else None)
    t = threading.Thread(target=d.run_forever, args=(stop,), kwargs={"fire_scheduled": fire},
                         name="keel-dispatcher", daemon=True)
    t.start()
    return Running(t, stop)
