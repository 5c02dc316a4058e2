"""``AutomationHooks``: the lifecycle hooks that run record-triggered flows, enforce approval locks and keep
scheduled paths in step.

It wraps an optional ``inner`` hooks object and calls it first, so whatever was wired before (security) keeps
running; ``keel.services.automation.wire_automation`` composes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from keel.automation import approvals, scheduling
from keel.automation.actions import ActionRunner
from keel.automation.compiled import Records, entered, object_flows
from keel.automation.registry import Registry
from keel.automation.support import formula_context, load_records, prefetch_parents, record_of
from keel.automation.templates import Templates
from keel.formula import compile_python
from keel.metadata.model import ObjectDef
from keel.records.hooks import RowError, RowState

if TYPE_CHECKING:
    from keel.context import Context


class AutomationHooks:
    def __init__(self, inner: Any = None) -> None:
        self.inner = inner
        self.registry = Registry()
        self.templates = Templates()
        self.runner = ActionRunner(self.templates, submit=self._submit)

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def before_save(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None:
        if self.inner is not None:
            self.inner.before_save(ctx, conn, obj, rows)
        loaded = self.registry.get(conn)
        if loaded.version is None:
            return
        if loaded.approvals_for(obj.api_name):
            approvals.check_locks(ctx, conn, obj, rows)
        if not loaded.flows_for(obj.key):
            return
        schema = ctx.schema(conn)
        flows = object_flows(loaded, schema, obj, conn.dialect.name).before
        if not flows:
            return
        records = Records(obj, formula_context(ctx, conn, schema))
        prefetch_parents(records.fctx, obj, rows, (cf.flow.condition for cf in flows))
        for cf in flows:
            fires = [r for r in rows if cf.flow.fires_on("created" if r.prior is None else "updated")]
            holding, entered_ = entered(cf, records, fires)
            for r in (entered_ if cf.flow.only_when_changed else holding):
                rec, c = records.of(r), records.context(r)
                for name, fn, coerce in cf.sets:
                    value = fn(rec, c)
                    value = None if value == "" else value
                    try:
                        value = coerce(value) if coerce is not None and value is not None else value
                    except Exception as e:
                        raise RowError(r.index, "CANNOT_EXECUTE_FLOW_TRIGGER",
                                       f"flow {cf.flow.name}: {name}: {e}", [name]) from None
                    if r.prior is None or r.prior.get(name) != value:
                        r.changed.add(name)
                    r.values[name] = value
                    rec[name] = value

    def after_save(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None:
        if self.inner is not None:
            self.inner.after_save(ctx, conn, obj, rows)
        loaded = self.registry.get(conn)
        if loaded.version is None or not loaded.flows_for(obj.key):
            return
        schema = ctx.schema(conn)
        flows = object_flows(loaded, schema, obj, conn.dialect.name).after
        records = Records(obj, formula_context(ctx, conn, schema))
        prefetch_parents(records.fctx, obj, rows, (cf.flow.condition for cf in flows))
        created = [r for r in rows if r.prior is None]
        updated = [r for r in rows if r.prior is not None]
        for cf in flows:
            flow = cf.flow
            for kind, group in (("created", created), ("updated", updated)):
                if not group or not flow.fires_on(kind):
                    continue
                holding, entered_ = entered(cf, records, group)
                firing = entered_ if flow.only_when_changed else holding
                if flow.scheduled_paths:
                    held = {id(r) for r in holding}  # identity: comparing RowStates would be O(n²) per batch
                    stopped = [r for r in group if r.prior is not None and id(r) not in held]
                    # paths relative to the trigger start when the record enters the condition, not on every save
                    scheduling.sync(ctx, conn, obj, flow, holding, {r.index for r in entered_}, stopped)
                self.runner.run(ctx, conn, obj, f"flow {flow.name}", flow.actions, firing, records)

    def before_delete(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None:
        if self.inner is not None:
            self.inner.before_delete(ctx, conn, obj, rows)
        loaded = self.registry.get(conn)
        if loaded.version is not None and loaded.approvals_for(obj.api_name):
            approvals.check_locks(ctx, conn, obj, rows)

    def after_delete(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None:
        if self.inner is not None:
            self.inner.after_delete(ctx, conn, obj, rows)
        self._simple(ctx, conn, obj, rows, "deleted")

    def after_undelete(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None:
        if self.inner is not None:
            self.inner.after_undelete(ctx, conn, obj, rows)
        self._simple(ctx, conn, obj, rows, "undeleted")

    # -- helpers ---------------------------------------------------------------------------------------------------
    def _simple(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState], kind: str) -> None:
        loaded = self.registry.get(conn)
        if loaded.version is None:
            return
        if kind == "deleted":
            scheduling.cancel_for(conn, obj, [r.pk for r in rows if r.pk is not None])
        if not loaded.flows_for(obj.key):
            return
        schema = ctx.schema(conn)
        records = Records(obj, formula_context(ctx, conn, schema))
        for cf in object_flows(loaded, schema, obj, conn.dialect.name).after:
            if cf.flow.fires_on(kind):
                holding, entered_ = entered(cf, records, rows)
                firing = entered_ if cf.flow.only_when_changed else holding
                self.runner.run(ctx, conn, obj, f"flow {cf.flow.name}", cf.flow.actions, firing, records)

    def _submit(self, ctx: Context, conn: Connection, process: str, obj: ObjectDef, pks: Sequence[int]) -> None:
        proc = self.registry.get(conn).approvals.get(process)
        for pk in pks:
            approvals.submit(ctx, conn, self, proc, process, obj, pk, None)

    # -- scheduled paths ---------------------------------------------------------------------------------------------
    def fire_scheduled(self, ctx: Context, conn: Connection, row: dict[str, Any]) -> str:
        """Run one claimed due row; returns the final state (done | cancelled)."""
        loaded = self.registry.get(conn)
        flow = next((f for fl in loaded.flows.values() for f in fl if f.name == row["flow"]), None)
        path = None if flow is None else next((p for p in flow.scheduled_paths if p.name == row["path"]), None)
        schema = ctx.schema(conn)
        obj = next((o for o in schema if o.id == row["object_id"]), None)
        if flow is None or path is None or obj is None:
            return "cancelled"
        rec = load_records(conn, schema, obj, [int(row["record_id"])]).get(int(row["record_id"]))
        if rec is None:
            return "cancelled"
        state = RowState(index=0, values=rec, pk=int(row["record_id"]), prior=rec)
        if flow.condition:
            fctx = formula_context(ctx, conn, schema)
            cond = compile_python(flow.condition, obj, schema, context_kind="flow", returns="checkbox")
            if not cond(record_of(obj, state), fctx.for_row(rec)):
                return "cancelled"
        try:
            self.runner.run(ctx, conn, obj, f"flow {flow.name} path {path.name}", path.actions, [state])
        except RowError as e:
            raise RuntimeError(e.message) from None
        return "done"
