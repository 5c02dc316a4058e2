"""``/process/approvals``: Salesforce's Process Approvals resource.

``GET`` lists the active approval processes per object the user can see. ``POST {"requests": [...]}`` submits
records (``Submit``, ``contextId`` = the record), answers requests (``Approve``/``Reject``, ``contextId`` = the
``ProcessInstanceWorkitem``) and withdraws them (``Removed``, the work item or the record). Integrations drive
approvals this way, and the rules that matter most, segregation of duties above all, must hold on it exactly as
in the web app: every action is the automation layer's (``keel.automation.approvals``), as the calling user.

All requests of one call run in one transaction: if any fails, none is applied and the answer is that request's
error, with its index in the message.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from keel.api import describe as D
from keel.api.errors import error
from keel.api.reads import select_all
from keel.api.routing import ApiCall, Reply, method_not_allowed, not_found
from keel.automation import approvals as A
from keel.automation.flows import AutomationHooks
from keel.errors import BatchError, KeelError
from keel.metadata.model import SchemaSnapshot
from keel.records.hooks import RowError
from keel.services.automation import automation_hooks
from keel.storage import ids

ACTIONS = {"submit": "Submit", "approve": "Approve", "reject": "Reject", "removed": "Removed"}
WORKITEM_PREFIX = "04i"


def route(call: ApiCall, rest: list[str]) -> Reply:
    if not rest and call.method in ("GET", "HEAD"):  # the resources under /process (no workflow rules here)
        return Reply(200, {"approvals": f"{call.prefix}/process/approvals"})
    if len(rest) != 1 or rest[0].lower() != "approvals":
        raise not_found()
    if call.method in ("GET", "HEAD"):
        return _list(call)
    if call.method != "POST":
        raise method_not_allowed(call, "GET, HEAD, POST")
    return _process(call)


def _list(call: ApiCall) -> Reply:
    with call.reading() as conn:
        loaded = automation_hooks(call.ctx).registry.get(conn)
    out: dict[str, list[dict[str, Any]]] = {}
    for name, proc in sorted(loaded.approvals.items()):
        if not proc.active:
            continue
        try:
            _, obj = D.visible_object(call, proc.object)
        except KeelError:
            continue  # an object this user cannot read: its processes are not theirs to see
        entries = out.setdefault(obj.api_name, [])
        # Keel names processes; the name is also what processDefinitionNameOrId takes, so it stands in for the id.
        entries.append({"description": proc.source.get("description"), "id": name, "name": name,
                        "object": obj.api_name, "sortOrder": len(entries) + 1})
    return Reply(200, {"approvals": out})


def _requests(call: ApiCall) -> list[dict[str, Any]]:
    reqs = call.json_object().get("requests")
    if not isinstance(reqs, list) or not reqs or not all(isinstance(r, dict) for r in reqs):
        raise error("JSON_PARSER_ERROR", "The body must be {\"requests\": [...]} with at least one request object.")
    for i, r in enumerate(reqs):
        action = str(r.get("actionType") or "").lower()
        if action not in ACTIONS:
            raise error("INVALID_OPERATION", f"Request {i}: actionType must be one of Submit, Approve, Reject or "
                        "Removed.")
        if not isinstance(r.get("contextId"), str) or not r["contextId"].isalnum():
            raise error("MALFORMED_ID", f"Request {i}: contextId must be a record id (Submit) or an approval "
                        "request (ProcessInstanceWorkitem) id.")
        r["actionType"] = ACTIONS[action]
    return reqs


def _process(call: ApiCall) -> Reply:
    reqs = _requests(call)
    schema = call.ctx.schema()
    # Submitting needs the record to be visible to the caller, as on its page; checked before any write.
    targets = {i: _visible_target(call, schema, r) for i, r in enumerate(reqs) if r["actionType"] == "Submit"}
    hooks = automation_hooks(call.ctx)
    results: list[dict[str, Any]] = []
    with call.writing() as conn:
        for i, r in enumerate(reqs):
            try:
                results.append(_one(call, conn, hooks, r, targets.get(i)))
            except RowError as e:
                err = A.step_error(e)
                if len(reqs) > 1:
                    err.message = f"Request {i}: {err.message}"
                raise err from None
            except BatchError:
                raise  # a refused write: its row errors say what and where
            except KeelError as e:
                if len(reqs) > 1:
                    e.message = f"Request {i}: {e.message}"
                raise
    return Reply(200, results)


def _visible_target(call: ApiCall, schema: SchemaSnapshot, r: dict[str, Any]) -> tuple[str, int]:
    rid = str(r["contextId"])
    obj = schema.find_by_prefix(rid[:3])
    if obj is None:
        raise error("MALFORMED_ID", f"{rid} is not the id of a record.")
    pk = ids.decode(rid, obj.key_prefix)
    rid18 = ids.encode(obj.key_prefix, pk)
    if not obj.queryable or not select_all(call, f"SELECT Id FROM {obj.api_name} WHERE Id = '{rid18}'"):
        raise not_found("The record does not exist or is not visible to you.")
    return obj.api_name, pk


def _one(call: ApiCall, conn: Connection, hooks: AutomationHooks, r: dict[str, Any],
         target: tuple[str, int] | None) -> dict[str, Any]:
    ctx = call.ctx
    schema = ctx.schema(conn)
    comments = str(r["comments"])[:4000] if r.get("comments") else None
    action, context_id = r["actionType"], str(r["contextId"])
    before: set[str] = set()
    if action == "Submit":
        assert target is not None
        obj = schema.get_object(target[0])
        loaded = hooks.registry.get(conn)
        name = str(r.get("processDefinitionNameOrId") or "")
        if not name:
            names = sorted(n for n, p in loaded.approvals.items()
                           if p.active and p.object.lower() == obj.api_name.lower())
            if len(names) != 1:
                raise error("NO_APPLICABLE_PROCESS", f"{obj.label} has {len(names) or 'no'} active approval "
                            "processes; name one in processDefinitionNameOrId." if names else
                            f"No active approval process applies to {obj.label}.")
            name = names[0]
        instance = A.submit(ctx, conn, hooks, loaded.approvals.get(name), name, obj, target[1], comments)
        entity = ids.encode(obj.key_prefix, target[1])
    else:
        item = A.workitem(conn, schema, context_id) if context_id[:3] == WORKITEM_PREFIX else None
        if action in ("Approve", "Reject") and item is None:
            raise not_found("That approval request does not exist or was already answered.")
        if item is not None:
            instance, entity = str(item["ProcessInstanceId"]), str(item["TargetObjectId"])
        else:  # Removed, given the record
            entity = ids.to18(context_id) if len(context_id) == 15 else context_id
            found = A.pending_instance(conn, schema, entity)
            if found is None:
                raise not_found("This record is not pending approval.")
            instance = found
        before = {str(w["Id"]) for w in A.instance_state(conn, schema, instance)[1]}
        if action == "Removed":
            A.recall(ctx, conn, hooks, entity, comments)
        else:
            A.act(ctx, conn, hooks, context_id, action.lower(), comments)
    status, pending = A.instance_state(conn, schema, instance)
    new = [w for w in pending if str(w["Id"]) not in before]
    return {"actorIds": [str(w["ActorId"]) for w in new], "entityId": entity, "errors": None,
            "instanceId": instance, "instanceStatus": status, "newWorkitemIds": [str(w["Id"]) for w in new],
            "success": True}
