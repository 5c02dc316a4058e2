"""Approvals in the web app: the history and buttons on a record page, the actions, and "Items to approve".

Every action goes through ``keel.services.automation`` (submit, approve, reject, recall), so segregation of duties
(the submitter never approves), the record lock and the on_* field updates are the automation layer's, not ours.

Reading the history: approvers and submitters need no permission on ``ProcessInstance``/``ProcessInstanceStep``
(Salesforce shows the history to whoever can see the record), so the page first proves the user can read the
record (``record_page`` selects it through SOQL as the user) and only then reads the history through the audited
system context that ``RecordExtras`` opens once per page. Nothing of the target record is read that way: the history
holds names, statuses, dates and comments, never field values, so field-level security is not bypassed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.responses import RedirectResponse, Response

from keel.context import Context
from keel.errors import KeelError
from keel.metadata.model import ObjectDef
from keel.services import automation
from keel.services.query import query
from keel.storage import ids
from keel.web.base import Web, soql_literal


@dataclass
class Approval:
    """What the record page shows: past and current requests, and which buttons this user gets."""

    instances: list[dict[str, Any]] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)  # processes the user may submit this record to
    pending: dict[str, Any] | None = None
    my_workitem: str | None = None
    can_recall: bool = False

    @property
    def locked(self) -> bool:
        return self.pending is not None


def processes_for(ctx: Context, obj: ObjectDef) -> list[str]:
    with ctx.db.read() as conn:
        loaded = automation.automation_hooks(ctx).registry.get(conn)
    return sorted(n for n, p in loaded.approvals.items() if p.active and p.object.lower() == obj.api_name.lower())


def approval_for(web: Web, sys_ctx: Context, obj: ObjectDef, rid18: str, can_edit: bool) -> Approval:
    """The approval panel of a record the user is known to see (``rid18`` came back from their SOQL)."""
    out = Approval(processes=processes_for(web.ctx, obj))
    soql = ("SELECT Id, ProcessDefinitionName, Status, SubmittedById, SubmittedBy.Name, CreatedDate, CompletedDate, "
            "(SELECT Id, Name, StepStatus, Actor.Name, StepNumber, Comments, CreatedDate FROM Steps "
            "ORDER BY CreatedDate, Id), (SELECT Id, Name, ActorId, Actor.Name, StepNumber FROM Workitems) "
            f"FROM ProcessInstance WHERE TargetObjectId = {soql_literal(None, rid18)} "
            "ORDER BY CreatedDate DESC, Id DESC LIMIT 20")
    me = ids.encode("005", web.ctx.actor.user_id)
    for inst in query(sys_ctx, soql)["records"]:
        steps = list((inst.get("Steps") or {}).get("records") or [])
        items = list((inst.get("Workitems") or {}).get("records") or [])
        inst["steps"], inst["workitems"] = steps, items
        out.instances.append(inst)
        if inst.get("Status") == "Pending" and out.pending is None:
            out.pending = inst
            mine = [w for w in items if str(w.get("ActorId")) == me]
            out.my_workitem = str(mine[0]["Id"]) if mine else None
            out.can_recall = str(inst.get("SubmittedById")) == me
    if out.pending is not None or not can_edit:
        out.processes = []
    return out


def approval_action(web: Web) -> Response:
    """``POST /r/{id}/approval``: submit, approve, reject or recall; a refusal is shown with its reason."""
    rid = str(web.path["id"])
    action = str(web.form.get("action", ""))
    comments = str(web.form.get("comments", "")).strip()[:4000] or None
    # The user must see the record to act on it from its page (approvers get read access via the request).
    if action == "submit":
        obj = web.schema().find_by_prefix(rid[:3])
        if obj is None or not rid.isalnum():
            raise KeelError("No such record.", code="NOT_FOUND")
        recs = query(web.ctx, f"SELECT Id FROM {obj.api_name} WHERE Id = {soql_literal(None, rid)}")["records"]
        if not recs:
            raise KeelError("The record does not exist or is not visible to you.", code="NOT_FOUND")
        automation.submit_for_approval(web.ctx, str(recs[0]["Id"]), str(web.form.get("process", "")), comments)
    elif action in ("approve", "reject"):
        item = str(web.form.get("workitem", ""))
        if not item.isalnum():
            raise KeelError("No such approval request.", code="NOT_FOUND")
        (automation.approve if action == "approve" else automation.reject)(web.ctx, item, comments)
    elif action == "recall":
        automation.recall(web.ctx, ids.to18(rid[:15]) if rid.isalnum() and len(rid) >= 15 else rid, comments)
    else:
        raise KeelError("Unknown approval action.", code="INVALID_OPERATION")
    back = str(web.form.get("next", ""))
    return RedirectResponse(back if back == "/approvals" else f"/r/{rid}", status_code=303)


def items_page(web: Web) -> Response:
    """``/approvals``: the requests waiting for this user, with the target's name when the user can read it."""
    items = automation.items_to_approve(web.ctx)
    by_obj: dict[str, list[str]] = {}
    for w in items:
        target = str((w.get("ProcessInstance") or {}).get("TargetObjectId") or "")
        w["target"] = target
        obj = web.schema().find_by_prefix(target[:3]) if target else None
        w["object"] = obj
        if obj is not None:
            by_obj.setdefault(obj.api_name, []).append(target)
    names: dict[str, str] = {}
    for name, targets in by_obj.items():
        lits = ", ".join(soql_literal(None, t) for t in targets[:200])
        try:
            for r in query(web.ctx, f"SELECT Id, Name FROM {name} WHERE Id IN ({lits})")["records"]:
                names[str(r["Id"])] = str(r.get("Name") or r["Id"])
        except KeelError:
            continue  # no read access to the object: the request still shows, by id
    return web.render("approvals.html", items=items, names=names)
