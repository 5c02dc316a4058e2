"""Approval processes: submit, approve, reject, recall, the record lock, and who approves each step.

History lives in the standard objects ``ProcessInstance`` (one per submission), ``ProcessInstanceStep`` (one per
decision) and ``ProcessInstanceWorkitem`` (one per pending approver), written through ``save_many`` as the audited
system actor, so SOQL, the API and reports see approvals like any other data.

Segregation of duties: the submitter is never made an approver and can never act on a work item of their own
request, not even as an administrator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.automation import outbox
from keel.automation.definitions import ApprovalProcess, Approver
from keel.automation.support import flow_system_context, formula_context, is_admin, load_records
from keel.errors import KeelError, NotFoundError
from keel.formula import compile_python
from keel.metadata.model import ObjectDef, SchemaSnapshot
from keel.metadata.tables import table_for
from keel.records import delete_many, save_many
from keel.records.hooks import RowError, RowState
from keel.records.validate import row_to_values
from keel.storage import ids

if TYPE_CHECKING:
    from keel.automation.flows import AutomationHooks
    from keel.context import Context

PI, STEP, WI = "ProcessInstance", "ProcessInstanceStep", "ProcessInstanceWorkitem"
LOCKED = "ENTITY_IS_LOCKED"
SELF_APPROVAL = "SELF_APPROVAL_NOT_ALLOWED"


def _find(conn: Connection, schema: SchemaSnapshot, obj_name: str, **eq: Any) -> list[dict[str, Any]]:
    """Live records of ``obj_name`` whose fields equal the given values (lookups by integer key; lists mean IN)."""
    obj = schema.get_object(obj_name)
    t = table_for(schema, obj)
    q = sa.select(t).where(t.c.is_deleted == sa.false())
    for name, value in eq.items():
        col = t.c[obj.get_field(name).column or "id"]
        q = q.where(col.in_(value) if isinstance(value, list | tuple | set) else col == value)
    return [row_to_values(schema, obj, dict(r)) for r in conn.execute(q.order_by(t.c.id)).mappings()]


def workitem(conn: Connection, schema: SchemaSnapshot, workitem_id: str) -> dict[str, Any] | None:
    """A pending approval request (``ProcessInstanceWorkitem``) with its instance's target and status."""
    items = _find(conn, schema, WI, Id=_pk(workitem_id))
    if not items:
        return None
    inst = _find(conn, schema, PI, Id=_pk(items[0]["ProcessInstanceId"]))[0]
    return {**items[0], "TargetObjectId": inst["TargetObjectId"], "Status": inst["Status"]}


def instance_state(conn: Connection, schema: SchemaSnapshot, instance_id: str) -> tuple[str, list[dict[str, Any]]]:
    """An approval instance's status and its pending work items (one per approver waiting)."""
    inst = _find(conn, schema, PI, Id=_pk(instance_id))[0]
    return str(inst["Status"]), _find(conn, schema, WI, ProcessInstanceId=_pk(instance_id))


def pending_instance(conn: Connection, schema: SchemaSnapshot, target_id: str) -> str | None:
    found = _find(conn, schema, PI, TargetObjectId=target_id, Status="Pending")
    return str(found[0]["Id"]) if found else None


def _pk(public_id: Any) -> int:
    return ids.split(str(public_id))[1]


def check_locks(ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None:
    """Refuse edits and deletes of records pending approval, except by administrators and current approvers."""
    if is_admin(ctx):
        return
    targets = {ids.encode(obj.key_prefix, r.pk): r for r in rows if r.pk is not None}
    if not targets:
        return
    schema = ctx.schema(conn)
    pending = _find(conn, schema, PI, TargetObjectId=list(targets), Status="Pending")
    for inst in pending:
        mine = _find(conn, schema, WI, ProcessInstanceId=_pk(inst["Id"]), ActorId=ctx.actor.user_id)
        if not mine:
            r = targets[inst["TargetObjectId"]]
            raise RowError(r.index, LOCKED, "This record is locked while it is pending approval; only an "
                           "administrator or the current approver can edit it.", [])


def submit(ctx: Context, conn: Connection, hooks: AutomationHooks, proc: ApprovalProcess | None, name: str,
           obj: ObjectDef, pk: int, comments: str | None) -> str:
    """Submit a record; returns the ProcessInstance id. ``ctx`` is the submitter."""
    if proc is None or not proc.active:
        raise KeelError(f"No active approval process named {name}.", code="NO_APPLICABLE_PROCESS")
    if proc.object.lower() != obj.api_name.lower():
        raise KeelError(f"Approval process {name} is for {proc.object}, not {obj.api_name}.",
                        code="NO_APPLICABLE_PROCESS")
    schema = ctx.schema(conn)
    rec = load_records(conn, schema, obj, [pk]).get(pk)
    if rec is None:
        raise NotFoundError(f"No {obj.label} record {ids.encode(obj.key_prefix, pk)}.")
    target = ids.encode(obj.key_prefix, pk)
    if proc.entry_criteria:
        cond = compile_python(proc.entry_criteria, obj, schema, context_kind="flow", returns="checkbox")
        if not cond(rec, formula_context(ctx, conn, schema).for_row(rec)):
            raise KeelError(f"This record does not meet the entry criteria of {name}.", code="NO_APPLICABLE_PROCESS")
    if _find(conn, schema, PI, TargetObjectId=target, Status="Pending"):
        raise KeelError("This record is already pending approval.", code="ALREADY_IN_PROCESS")
    sys_ctx = flow_system_context(ctx, conn, f"approval {name}")
    inst = save_many(sys_ctx, PI, [{"Name": name, "TargetObjectId": target, "ProcessDefinitionName": name,
                                    "Status": "Pending", "SubmittedById": ids.encode("005", ctx.actor.user_id),
                                    "CurrentStepNumber": 0}], conn=conn)[0].id
    assert inst is not None
    save_many(sys_ctx, STEP, [{"Name": "Submitted", "ProcessInstanceId": inst, "StepStatus": "Started",
                               "ActorId": ids.encode("005", ctx.actor.user_id), "StepNumber": 0,
                               "Comments": comments}], conn=conn)
    _run(ctx, conn, hooks, obj, pk, f"approval {name} submit", proc.on_submit)
    _enter_step(ctx, sys_ctx, conn, hooks, proc, obj, pk, _pk(inst), ctx.actor.user_id, 1)
    return inst


def _run(ctx: Context, conn: Connection, hooks: AutomationHooks, obj: ObjectDef, pk: int, source: str,
         actions: Sequence[Any]) -> None:
    if not actions:
        return
    rec = load_records(conn, ctx.schema(conn), obj, [pk]).get(pk)
    if rec is not None:
        hooks.runner.run(ctx, conn, obj, source, actions, [RowState(index=0, values=rec, pk=pk, prior=rec)])


def step_error(e: RowError) -> KeelError:
    """An approval step an action of which failed, as its caller reports it (the web page, the API): the error of
    the write that refused it, e.g. the validation rule an approval's field update broke. Inside a save (a flow
    that submits a record) the ``RowError`` itself fails that row instead."""
    d = e.cause
    return KeelError(d.message, code=d.code, fields=d.fields) if d else KeelError(e.message, code=e.code,
                                                                                   fields=e.fields)


def resolve_approvers(conn: Connection, schema: SchemaSnapshot, approvers: Sequence[Approver],
                      submitter: int) -> list[int]:
    out: list[int] = []
    for a in approvers:
        found: list[int] = []
        if a.kind == "user":
            found = [_pk(u["Id"]) for u in _find(conn, schema, "User", Username=a.name, IsActive=True)]
        elif a.kind == "manager":
            sub = _find(conn, schema, "User", Id=submitter)
            if sub and sub[0].get("ManagerId"):
                found = [_pk(sub[0]["ManagerId"])]
        elif a.kind == "role":
            roles = _find(conn, schema, "UserRole", Name=a.name)
            if roles:
                found = [_pk(u["Id"]) for u in _find(conn, schema, "User", UserRoleId=[_pk(r["Id"]) for r in roles],
                                                      IsActive=True)]
        elif a.kind == "queue":
            groups = _find(conn, schema, "Group", DeveloperName=a.name) or _find(conn, schema, "Group", Name=a.name)
            if groups:
                members = _find(conn, schema, "GroupMember", GroupId=[_pk(g["Id"]) for g in groups])
                found = [_pk(m["UserOrGroupId"]) for m in members if str(m["UserOrGroupId"]).startswith("005")]
        for u in found:
            if u != submitter and u not in out:
                out.append(u)
    return out


def _enter_step(ctx: Context, sys_ctx: Context, conn: Connection, hooks: AutomationHooks, proc: ApprovalProcess,
                obj: ObjectDef, pk: int, inst: int, submitter: int, number: int) -> None:
    schema = ctx.schema(conn)
    inst_id = ids.encode("04g", inst)
    while number <= len(proc.steps):
        step = proc.steps[number - 1]
        if step.criteria:
            rec = load_records(conn, schema, obj, [pk]).get(pk) or {}
            cond = compile_python(step.criteria, obj, schema, context_kind="flow", returns="checkbox")
            if not cond(rec, formula_context(ctx, conn, schema).for_row(rec)):
                number += 1
                continue
        approvers = resolve_approvers(conn, schema, step.approvers, submitter)
        if not approvers:
            raise KeelError(f"Step {step.name} of {proc.name} has no approver other than the submitter.",
                            code="NO_APPLICABLE_APPROVER")
        save_many(sys_ctx, WI, [{"Name": step.name, "ProcessInstanceId": inst_id, "ActorId": ids.encode("005", u),
                                 "StepNumber": number} for u in approvers], conn=conn)
        save_many(sys_ctx, PI, [{"Id": inst_id, "CurrentStepNumber": number}], conn=conn)
        _notify(ctx, conn, schema, obj, pk, proc, step.name, approvers)
        return
    save_many(sys_ctx, PI, [{"Id": inst_id, "Status": "Approved", "CompletedDate": ctx.clock()}], conn=conn)
    _run(ctx, conn, hooks, obj, pk, f"approval {proc.name} approve", proc.on_approve)


def _notify(ctx: Context, conn: Connection, schema: SchemaSnapshot, obj: ObjectDef, pk: int, proc: ApprovalProcess,
            step: str, approvers: Sequence[int]) -> None:
    """An approval-request email per approver, through the outbox like every other side effect."""
    users = _find(conn, schema, "User", Id=list(approvers))
    rec = load_records(conn, schema, obj, [pk]).get(pk) or {}
    now = ctx.clock()
    msgs = [outbox.message(outbox.EMAIL, {
        "to": [u["Email"]], "cc": [], "subject": f"Approval requested: {rec.get('Name') or ''} ({proc.name})",
        "body": f"{obj.label} {rec.get('Name') or ''} is waiting for your approval at step {step}.\n"
                f"Record: {ids.encode(obj.key_prefix, pk)}\n", "source": f"approval {proc.name}"},
        now, object_id=obj.id, record_id=pk) for u in users if u.get("Email")]
    outbox.enqueue(conn, msgs)


def act(ctx: Context, conn: Connection, hooks: AutomationHooks, workitem_id: str, action: str,
        comments: str | None) -> str:
    """Approve or reject a work item; returns the instance's status afterwards."""
    if action not in ("approve", "reject"):
        raise KeelError("action is approve or reject", code="INVALID_OPERATION")
    schema = ctx.schema(conn)
    items = _find(conn, schema, WI, Id=_pk(workitem_id))
    if not items:
        raise NotFoundError("That approval request does not exist or was already answered.")
    wi = items[0]
    inst = _find(conn, schema, PI, Id=_pk(wi["ProcessInstanceId"]))[0]
    submitter = _pk(inst["SubmittedById"])
    if ctx.actor.user_id == submitter:
        raise KeelError("You submitted this request, so you cannot approve or reject it.", code=SELF_APPROVAL)
    if ctx.actor.user_id != _pk(wi["ActorId"]) and not is_admin(ctx):
        raise KeelError("This approval request is assigned to someone else.", code="INSUFFICIENT_ACCESS_OR_READONLY")
    loaded = hooks.registry.get(conn)
    proc = loaded.approvals.get(str(inst["ProcessDefinitionName"]))
    target_obj = schema.find_by_prefix(str(inst["TargetObjectId"])[:3])
    if proc is None or target_obj is None:
        raise KeelError("The approval process of this request is no longer deployed.", code="NO_APPLICABLE_PROCESS")
    pk = _pk(inst["TargetObjectId"])
    number = int(wi["StepNumber"] or 0)
    sys_ctx = flow_system_context(ctx, conn, f"approval {proc.name} {action}")
    status = "Approved" if action == "approve" else "Rejected"
    save_many(sys_ctx, STEP, [{"Name": wi["Name"], "ProcessInstanceId": inst["Id"], "StepStatus": status,
                               "ActorId": ids.encode("005", ctx.actor.user_id), "OriginalActorId": wi["ActorId"],
                               "StepNumber": number, "Comments": comments}], conn=conn)
    delete_many(sys_ctx, WI, [wi["Id"]], conn=conn)
    remaining = _find(conn, schema, WI, ProcessInstanceId=_pk(inst["Id"]))
    if action == "reject":
        _close(ctx, sys_ctx, conn, hooks, proc, target_obj, pk, inst["Id"], remaining, "Rejected", proc.on_reject)
        return "Rejected"
    same_step = [w for w in remaining if int(w["StepNumber"] or 0) == number]
    if same_step and proc.steps[number - 1].mode == "unanimous":
        return "Pending"
    if same_step:
        delete_many(sys_ctx, WI, [w["Id"] for w in same_step], conn=conn)
    _run(ctx, conn, hooks, target_obj, pk, f"approval {proc.name} step {number} approve",
         proc.steps[number - 1].on_approve)
    _enter_step(ctx, sys_ctx, conn, hooks, proc, target_obj, pk, _pk(inst["Id"]), submitter, number + 1)
    return str(_find(conn, schema, PI, Id=_pk(inst["Id"]))[0]["Status"])


def _close(ctx: Context, sys_ctx: Context, conn: Connection, hooks: AutomationHooks, proc: ApprovalProcess,
           obj: ObjectDef, pk: int, inst_id: str, remaining: Sequence[dict[str, Any]], status: str,
           actions: Sequence[Any]) -> None:
    if remaining:
        delete_many(sys_ctx, WI, [w["Id"] for w in remaining], conn=conn)
    save_many(sys_ctx, PI, [{"Id": inst_id, "Status": status, "CompletedDate": ctx.clock()}], conn=conn)
    _run(ctx, conn, hooks, obj, pk, f"approval {proc.name} {status.lower()}", actions)


def recall(ctx: Context, conn: Connection, hooks: AutomationHooks, target_id: str, comments: str | None) -> None:
    """The submitter (or an administrator) withdraws a pending request; the record unlocks."""
    schema = ctx.schema(conn)
    pending = _find(conn, schema, PI, TargetObjectId=target_id, Status="Pending")
    if not pending:
        raise NotFoundError("This record is not pending approval.")
    inst = pending[0]
    if ctx.actor.user_id != _pk(inst["SubmittedById"]) and not is_admin(ctx):
        raise KeelError("Only the submitter or an administrator can recall this request.",
                        code="INSUFFICIENT_ACCESS_OR_READONLY")
    proc = hooks.registry.get(conn).approvals.get(str(inst["ProcessDefinitionName"]))
    obj = schema.find_by_prefix(target_id[:3])
    assert obj is not None
    sys_ctx = flow_system_context(ctx, conn, "approval recall")
    save_many(sys_ctx, STEP, [{"Name": "Recalled", "ProcessInstanceId": inst["Id"], "StepStatus": "Removed",
                               "ActorId": ids.encode("005", ctx.actor.user_id), "Comments": comments,
                               "StepNumber": inst.get("CurrentStepNumber") or 0}], conn=conn)
    remaining = _find(conn, schema, WI, ProcessInstanceId=_pk(inst["Id"]))
    _close(ctx, sys_ctx, conn, hooks, proc or _EMPTY, obj, _pk(target_id), inst["Id"], remaining, "Removed",
           proc.on_recall if proc else ())


_EMPTY = ApprovalProcess(name="(removed)", object="", entry_criteria=None, steps=())
