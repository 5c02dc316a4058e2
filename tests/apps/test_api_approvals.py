"""Approvals over ``/process/approvals``, as an integration drives them: submit, approve, reject, recall, and the
segregation-of-duties rules of Vendor Management refused on that path with their own codes and messages."""

from __future__ import annotations

from typing import Any

import httpx

from keel.context import Context
from keel.records import save_many
from keel.services.automation import items_to_approve
from keel.services.query import query
from tests.apps.rest import Persona, Rest, V, assert_code, assert_rule
from tests.apps.test_vendors_philanthropy import vendor


def process(p: Persona, *requests: dict[str, Any]) -> httpx.Response:
    return p.client.post(f"{V}/process/approvals", json={"requests": list(requests)}, headers=p.headers)


def new_po(apps: Context, vid: str, requested_by: str, price: float = 100.0) -> str:
    po = save_many(apps, "Purchase_Order__c", [{"Vendor__c": vid, "Requested_By__c": requested_by}])[0].id
    assert po
    save_many(apps, "PO_Line__c", [{"Purchase_Order__c": po, "Quantity__c": 10, "Unit_Price__c": price}])
    return po


def field(apps: Context, obj: str, rid: str, name: str) -> Any:
    return query(apps, f"SELECT {name} FROM {obj} WHERE Id = '{rid}'")["records"][0][name]


def my_item(p: Persona) -> str:
    (item,) = items_to_approve(p.ctx)
    return str(item["Id"])


def test_submit_approve_and_the_answers_shapes(apps: Context, rest: Rest) -> None:
    req = rest.login("req", "Vendor_Requester")
    officer = rest.login("po", "Vendor_Procurement_Officer", role="Procurement Manager")
    assert officer.client.get(f"{V}/process", headers=officer.headers).json() == {
        "approvals": f"{V}/process/approvals"}
    listed = officer.client.get(f"{V}/process/approvals", headers=officer.headers)
    assert listed.status_code == 200
    names = {e["name"]: e for entries in listed.json()["approvals"].values() for e in entries}
    assert {"Contract_Approval", "Purchase_Order_Approval"} <= set(names)
    assert names["Purchase_Order_Approval"]["object"] == "Purchase_Order__c"
    po = new_po(apps, vendor(apps, "Approved Co", owner=req.ctx), req.id)
    save_many(apps, "Purchase_Order__c", [{"Id": po, "OwnerId": req.id}])
    r = process(req, {"actionType": "Submit", "contextId": po, "comments": "please",
                      "processDefinitionNameOrId": "Purchase_Order_Approval"})
    assert r.status_code == 200, r.text
    (sub,) = r.json()
    assert sub["success"] is True and sub["errors"] is None and sub["entityId"] == po
    assert sub["instanceStatus"] == "Pending" and sub["instanceId"].startswith("04g")
    assert sub["actorIds"] == [officer.id] and sub["newWorkitemIds"] == [my_item(officer)]
    assert field(apps, "Purchase_Order__c", po, "Status__c") == "Submitted"
    # the requester who submitted can never answer it, even over the API
    assert_code(process(req, {"actionType": "Approve", "contextId": sub["newWorkitemIds"][0]}), 400,
                "SELF_APPROVAL_NOT_ALLOWED", "cannot approve")
    r = process(officer, {"actionType": "Approve", "contextId": sub["newWorkitemIds"][0], "comments": "ok"})
    assert r.status_code == 200, r.text
    assert r.json()[0]["instanceStatus"] == "Approved" and r.json()[0]["newWorkitemIds"] == []
    assert field(apps, "Purchase_Order__c", po, "Approval_Granted__c") is True
    assert field(apps, "Purchase_Order__c", po, "Approved_By__c") == officer.id


def test_reject_recall_and_all_or_none(apps: Context, rest: Rest) -> None:
    req = rest.login("req", "Vendor_Requester")
    officer = rest.login("po", "Vendor_Procurement_Officer", role="Procurement Manager")
    vid = vendor(apps, "Rejected Co", owner=req.ctx)
    first, second = new_po(apps, vid, req.id), new_po(apps, vid, req.id)
    save_many(apps, "Purchase_Order__c", [{"Id": p, "OwnerId": req.id} for p in (first, second)])
    r = process(req, *({"actionType": "submit", "contextId": p} for p in (first, second)))  # the only process
    assert r.status_code == 200 and [x["entityId"] for x in r.json()] == [first, second], r.text
    items = {str(i["ProcessInstance"]["TargetObjectId"]): str(i["Id"]) for i in items_to_approve(officer.ctx)}
    # one bad request fails the call, and the good one before it is not applied
    r = process(officer, {"actionType": "Approve", "contextId": items[first]},
                {"actionType": "Approve", "contextId": "04i000000000999AAA"})
    assert_code(r, 404, "NOT_FOUND", "Request 1")
    assert field(apps, "Purchase_Order__c", first, "Status__c") == "Submitted"
    r = process(officer, {"actionType": "Reject", "contextId": items[first], "comments": "too dear"})
    assert r.status_code == 200 and r.json()[0]["instanceStatus"] == "Rejected", r.text
    assert field(apps, "Purchase_Order__c", first, "Status__c") == "Draft"
    # only the submitter (or an administrator) withdraws a request; by the work item or by the record
    assert_code(process(officer, {"actionType": "Removed", "contextId": items[second]}), 400,
                "INSUFFICIENT_ACCESS_OR_READONLY", "submitter")
    r = process(req, {"actionType": "Removed", "contextId": second})
    assert r.status_code == 200 and r.json()[0]["instanceStatus"] == "Removed", r.text
    assert field(apps, "Purchase_Order__c", second, "Status__c") == "Draft"
    assert_code(process(req, {"actionType": "Removed", "contextId": second}), 404, "NOT_FOUND", "not pending")
    assert_code(process(req, {"actionType": "Escalate", "contextId": second}), 400, "INVALID_OPERATION", "Submit")
    assert_code(process(req, {"actionType": "Submit", "contextId": "001000000000999AAA"}), 404, "NOT_FOUND",
                "not visible")


def test_the_requester_never_approves_their_own_contract_or_order(apps: Context, rest: Rest) -> None:
    """An officer who requested a contract or an order is also its approver: the approval's field update is
    refused by the rule, and nothing of the approval is kept."""
    boss = rest.login("boss", profile="System Administrator")
    officer = rest.login("po", "Vendor_Procurement_Officer", role="Procurement Manager")
    vid = vendor(apps, "Own Co")
    contract = save_many(apps, "Contract__c", [{
        "Vendor__c": vid, "Title__c": "Own fleet", "Value__c": 5000, "Start_Date__c": "2027-01-01",
        "End_Date__c": "2027-12-31", "Requested_By__c": officer.id}])[0].id
    assert contract
    po = new_po(apps, vid, officer.id)
    r = process(boss, {"actionType": "Submit", "contextId": contract}, {"actionType": "Submit", "contextId": po})
    assert r.status_code == 200, r.text
    items = {str(i["ProcessInstance"]["TargetObjectId"]): str(i["Id"]) for i in items_to_approve(officer.ctx)}
    assert_rule(process(officer, {"actionType": "Approve", "contextId": items[contract]}),
                "Contract__c.Requester_Never_Approves")
    assert_rule(process(officer, {"actionType": "Approve", "contextId": items[po]}),
                "Purchase_Order__c.Requester_Never_Approves")
    assert field(apps, "Contract__c", contract, "Status__c") == "In Approval"
    assert field(apps, "Purchase_Order__c", po, "Approved_By__c") is None
    assert len(items_to_approve(officer.ctx)) == 2  # both requests still wait for a proper approver


def test_a_large_order_needs_two_different_approvers(apps: Context, rest: Rest) -> None:
    req = rest.login("req", "Vendor_Requester")
    boss = rest.login("boss", profile="System Administrator")
    rest.login("po", "Vendor_Procurement_Officer", role="Procurement Manager")
    rest.login("cpo", "Vendor_Procurement_Officer", role="Chief Procurement Officer")
    po = new_po(apps, vendor(apps, "Big Co", owner=req.ctx), req.id, price=20000.0)  # 200,000: two steps
    save_many(apps, "Purchase_Order__c", [{"Id": po, "OwnerId": req.id}])
    (sub,) = process(req, {"actionType": "Submit", "contextId": po}).json()
    r = process(boss, {"actionType": "Approve", "contextId": sub["newWorkitemIds"][0]})  # an administrator may
    assert r.status_code == 200 and r.json()[0]["instanceStatus"] == "Pending", r.text
    (step2,) = r.json()[0]["newWorkitemIds"]
    assert_rule(process(boss, {"actionType": "Approve", "contextId": step2}),
                "Purchase_Order__c.Two_Distinct_Approvers")
    assert field(apps, "Purchase_Order__c", po, "Second_Approver__c") is None
