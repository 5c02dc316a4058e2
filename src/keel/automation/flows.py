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
from keel.automation.definitions import Flow
from keel.automation.registry import Registry
from keel.automation.support import formula_context, load_records, prior_of, record_of
from keel.automation.templates import Templates
from keel.formula import FormulaContext, compile_python
from keel.metadata.model import ObjectDef, SchemaSnapshot
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
        flows = [f for f in loaded.flows_for(obj.key) if f.set_fields]
        if not flows:
            return
        schema = ctx.schema(conn)
        from keel.records.prepare import write_plan

        plan = write_plan(schema, obj, conn.dialect.name)
        fctx = formula_context(ctx, conn, schema)
        for flow in flows:
            for r in self._matching(flow, obj, schema, fctx, rows)[1]:
                rec = record_of(obj, r)
                c = fctx.for_row(r.prior)
                for name, text in flow.set_fields.items():
                    value = compile_python(text, obj, schema, context_kind="flow")(rec, c)
                    value = None if value == "" else value
                    coerce = plan.coercers.get(name)
                    try:
                        value = coerce(value) if coerce is not None and value is not None else value
                    except Exception as e:
                        raise RowError(r.index, "CANNOT_EXECUTE_FLOW_TRIGGER",
                                       f"flow {flow.name}: {name}: {e}", [name]) from None
                    if r.prior is None or r.prior.get(name) != value:
                        r.changed.add(name)
                    r.values[name] = value
                    rec[name] = value

    def after_save(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None:
        if self.inner is not None:
            self.inner.after_save(ctx, conn, obj, rows)
        loaded = self.registry.get(conn)
        if loaded.version is None:
            return
        flows = loaded.flows_for(obj.key)
        if not flows:
            return
        schema = ctx.schema(conn)
        fctx = formula_context(ctx, conn, schema)
        created = [r for r in rows if r.prior is None]
        updated = [r for r in rows if r.prior is not None]
        for flow in flows:
            for kind, group in (("created", created), ("updated", updated)):
                if not group or not flow.fires_on(kind):
                    continue
                holding, entered = self._entered(flow, obj, schema, fctx, group)
                firing = entered if flow.only_when_changed else holding
                held = {id(r) for r in holding}  # identity: a list test would compare RowStates, O(n²) per batch
                stopped = [r for r in group if r.prior is not None and id(r) not in held]
                # paths relative to the trigger start when the record enters the condition, not on every save
                scheduling.sync(ctx, conn, obj, flow, holding, {r.index for r in entered}, stopped)
                self.runner.run(ctx, conn, obj, f"flow {flow.name}", flow.actions, firing)

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
        schema = ctx.schema(conn)
        fctx = formula_context(ctx, conn, schema)
        for flow in loaded.flows_for(obj.key):
            if flow.fires_on(kind):
                firing = self._matching(flow, obj, schema, fctx, rows)[1]
                self.runner.run(ctx, conn, obj, f"flow {flow.name}", flow.actions, firing)

    def _matching(self, flow: Flow, obj: ObjectDef, schema: SchemaSnapshot, fctx: FormulaContext,
                  rows: Sequence[RowState]) -> tuple[list[RowState], list[RowState]]:
        """(rows meeting the condition, rows the flow fires on). With ``only_when_changed`` an update fires only
        when the prior version did not meet the condition."""
        holding, entered = self._entered(flow, obj, schema, fctx, rows)
        return holding, (entered if flow.only_when_changed else holding)

    @staticmethod
    def _entered(flow: Flow, obj: ObjectDef, schema: SchemaSnapshot, fctx: FormulaContext,
                 rows: Sequence[RowState]) -> tuple[list[RowState], list[RowState]]:
        """(rows meeting the condition, those of them that did not meet it before this save)."""
        if not flow.condition:
            return list(rows), [r for r in rows if r.prior is None]
        cond = compile_python(flow.condition, obj, schema, context_kind="flow", returns="checkbox")
        holding: list[RowState] = []
        entered: list[RowState] = []
        for r in rows:
            if not cond(record_of(obj, r), fctx.for_row(r.prior)):
                continue
            holding.append(r)
            if r.prior is not None:
                prior = prior_of(obj, r)
                assert prior is not None
                if cond(prior, fctx.for_row(prior)):
                    continue
            entered.append(r)
        return holding, entered

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
