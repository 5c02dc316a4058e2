"""The 3-step invoice approval: manager step, unanimous queue step, CFO step; rejection, resubmission,
self-approval refused, the locked record refusing an edit, history in SOQL, items to approve."""

from __future__ import annotations

from typing import Any

import pytest

from keel.context import Context
from keel.errors import BatchError, KeelError
from keel.records import save_many
from keel.security.package import parse_permission_set
from keel.services import automation as A
from keel.services.query import query
from keel.services.security import deploy_permission_set, user_context
from keel.services.users import create_user


def _user(org: Context, name: str, profile: str = "Biller", **extra: Any) -> str:
    return create_user(org, username=f"{name}@example.com", password=None, last_name=name,
                       email=f"{name}@example.com", profile=profile, extra=extra or None)


@pytest.fixture
def people(auto: Context) -> dict[str, str]:
    with auto.db.transaction() as conn:
        deploy_permission_set(auto, conn, parse_permission_set({
            "name": "Biller", "profile": True, "objects": {"Invoice__c": ["read", "create", "edit"]},
            "fields": {"Invoice__c.Amount__c": ["edit"], "Invoice__c.Status__c": ["edit"],
                       "Invoice__c.Memo__c": ["edit"]}}))
    u = {n: _user(auto, n) for n in ("boss", "q1", "q2", "cfo")}
    u["clerk"] = _user(auto, "clerk", ManagerId=u["boss"])
    queue = save_many(auto, "Group", [{"Name": "Finance", "DeveloperName": "Finance", "Type": "Queue"}])[0].id
    save_many(auto, "GroupMember", [{"GroupId": queue, "UserOrGroupId": u["q1"]},
                                    {"GroupId": queue, "UserOrGroupId": u["q2"]},
                                    {"GroupId": queue, "UserOrGroupId": u["clerk"]}])
    return u


def _items(ctx: Context) -> list[dict[str, Any]]:
    return A.items_to_approve(ctx)


def test_invoice_approval_scenario(auto: Context, people: dict[str, str]) -> None:
    as_ = {n: user_context(auto, uid) for n, uid in people.items()}
    clerk = as_["clerk"]
    inv = save_many(clerk, "Invoice__c", [{"Name": "INV-1", "Amount__c": 9000, "Status__c": "Draft"}])[0].id
    assert inv
    small = save_many(clerk, "Invoice__c", [{"Name": "INV-0", "Amount__c": 10}])[0].id
    with pytest.raises(KeelError) as e:
        A.submit_for_approval(clerk, str(small), "Invoice_Approval")
    assert e.value.code == "NO_APPLICABLE_PROCESS"

    A.submit_for_approval(clerk, inv, "Invoice_Approval", "please")
    status = query(auto, f"SELECT Status__c FROM Invoice__c WHERE Id = '{inv}'")["records"][0]["Status__c"]
    assert status == "Submitted"
    with pytest.raises(KeelError) as e:
        A.submit_for_approval(clerk, inv, "Invoice_Approval")
    assert e.value.code == "ALREADY_IN_PROCESS"
    # locked: the submitter cannot edit; the current approver can
    with pytest.raises(BatchError) as b:
        save_many(clerk, "Invoice__c", [{"Id": inv, "Amount__c": 1}])
    assert b.value.code == "ENTITY_IS_LOCKED"
    assert [i["Name"] for i in _items(as_["boss"])] == ["Manager"]
    assert _items(as_["q1"]) == []
    save_many(as_["boss"], "Invoice__c", [{"Id": inv, "Memo__c": "checked by boss"}])

    # step 1: manager approves
    wi = _items(as_["boss"])[0]["Id"]
    with pytest.raises(KeelError) as e:
        A.approve(as_["q1"], wi)
    assert e.value.code == "INSUFFICIENT_ACCESS_OR_READONLY"
    assert A.approve(as_["boss"], wi, "fine") == "Pending"
    # step 2: the unanimous Finance queue; the clerk is in the queue but never gets their own request
    assert _items(as_["clerk"]) == []
    q1_items, q2_items = _items(as_["q1"]), _items(as_["q2"])
    assert len(q1_items) == len(q2_items) == 1
    assert A.approve(as_["q1"], q1_items[0]["Id"]) == "Pending"
    assert _items(as_["cfo"]) == []  # still waiting for q2
    with pytest.raises(KeelError) as e:  # the submitter cannot act on a request, even another's work item
        A.approve(clerk, q2_items[0]["Id"])
    assert e.value.code == "SELF_APPROVAL_NOT_ALLOWED"
    assert A.approve(as_["q2"], q2_items[0]["Id"]) == "Pending"
    # step 3: the CFO rejects
    cfo_item = _items(as_["cfo"])[0]["Id"]
    assert A.reject(as_["cfo"], cfo_item, "too much") == "Rejected"
    rec = query(auto, f"SELECT Status__c, Memo__c FROM Invoice__c WHERE Id = '{inv}'")["records"][0]
    assert rec["Status__c"] == "Rejected"
    save_many(clerk, "Invoice__c", [{"Id": inv, "Amount__c": 1500}])  # unlocked again

    # resubmission: 1500 skips the CFO step (criteria Amount__c > 5000)
    A.submit_for_approval(clerk, inv, "Invoice_Approval")
    A.approve(as_["boss"], _items(as_["boss"])[0]["Id"])
    A.approve(as_["q2"], _items(as_["q2"])[0]["Id"])
    assert A.approve(as_["q1"], _items(as_["q1"])[0]["Id"]) == "Approved"
    rec = query(auto, f"SELECT Status__c FROM Invoice__c WHERE Id = '{inv}'")["records"][0]
    assert rec["Status__c"] == "Approved"

    # history in SOQL
    insts = query(auto, "SELECT Status, (SELECT StepStatus, StepNumber, Actor.Username FROM Steps "
                        f"ORDER BY CreatedDate, Id) FROM ProcessInstance WHERE TargetObjectId = '{inv}' "
                        "ORDER BY CreatedDate, Id")["records"]
    assert [i["Status"] for i in insts] == ["Rejected", "Approved"]
    steps = [(s["StepStatus"], s["Actor"]["Username"]) for s in insts[0]["Steps"]["records"]]
    assert steps == [("Started", "clerk@example.com"), ("Approved", "boss@example.com"),
                     ("Approved", "q1@example.com"), ("Approved", "q2@example.com"),
                     ("Rejected", "cfo@example.com")]
    n = query(auto, "SELECT COUNT() FROM ProcessInstanceWorkitem")["totalSize"]
    assert n == 0


def test_recall_unlocks(auto: Context, people: dict[str, str]) -> None:
    clerk = user_context(auto, people["clerk"])
    inv = save_many(clerk, "Invoice__c", [{"Name": "INV-2", "Amount__c": 2000}])[0].id
    assert inv
    A.submit_for_approval(clerk, inv, "Invoice_Approval")
    with pytest.raises(KeelError):
        A.recall(user_context(auto, people["q1"]), inv)
    A.recall(clerk, inv, "oops")
    rec = query(auto, f"SELECT Status__c FROM Invoice__c WHERE Id = '{inv}'")["records"][0]
    assert rec["Status__c"] == "Draft"
    save_many(clerk, "Invoice__c", [{"Id": inv, "Amount__c": 2500}])
    assert A.items_to_approve(user_context(auto, people["boss"])) == []
