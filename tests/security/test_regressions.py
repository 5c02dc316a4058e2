"""Regression scenarios from peers' trackers (domain-research §2), against the surfaces that exist now."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from keel.context import Context
from keel.errors import BatchError, KeelError
from keel.records import save_many
from keel.services.export import export_csv
from keel.services.query import query
from keel.services.security import read_history, read_record
from tests.security.conftest import Recruiting, deploy_objects, new_user

SSN = "123-45-6789"


def test_espocrm_2515_list_does_not_leak_hidden_field(recruiting: Recruiting, tmp_path: Path) -> None:
    """A field hidden by FLS must not appear in lists, filters, sorts, exports or single reads."""
    hm = recruiting.ctx("hm1")
    rows = query(hm, "SELECT Id, Name FROM Candidate__c")["records"]
    assert rows and all("SSN__c" not in r for r in rows)
    for text in ("SELECT Id, SSN__c FROM Candidate__c",
                 f"SELECT Id FROM Candidate__c WHERE SSN__c = '{SSN}'",  # no existence oracle
                 "SELECT Id FROM Candidate__c ORDER BY SSN__c",
                 "SELECT COUNT(Id), SSN__c FROM Candidate__c GROUP BY SSN__c",
                 "SELECT Id, Candidate__r.SSN__c FROM Job_Application__c"):
        with pytest.raises(KeelError):
            query(hm, text)
    assert "SSN__c" not in read_record(hm, "Candidate__c", recruiting.records["cand1"])
    out = tmp_path / "cands.csv"
    export_csv(hm, "Candidate__c", out)
    text = out.read_text()
    assert SSN not in text and "SSN__c" not in next(csv.reader(text.splitlines()))
    # The recruiter, who may read it, gets it on the same surfaces.
    rc = recruiting.ctx("recruiter")
    assert query(rc, "SELECT SSN__c FROM Candidate__c")["records"][0]["SSN__c"] == SSN
    export_csv(rc, "Candidate__c", out)
    assert SSN in out.read_text()
    from keel.security.audit import audit_rows
    with recruiting.org.db.read() as conn:
        exports = audit_rows(conn, action="export")
    assert [(r["actor_id"], r["object"]) for r in exports] == [(recruiting.pk("hm1"), "Candidate__c"),
                                                               (recruiting.pk("recruiter"), "Candidate__c")]


def test_frappe_crm_805_history_does_not_leak_hidden_field(recruiting: Recruiting) -> None:
    pos = recruiting.records["pos1"]
    save_many(recruiting.ctx("hm1"), "Position__c", [{"Id": pos, "Salary_Max__c": 72000, "Status__c": "Open"}])
    employee = read_history(recruiting.ctx("employee"), "Position__c", pos)
    assert [h["Field"] for h in employee] == ["Status__c"]
    assert all("72000" not in str(h["NewValue"]) for h in employee)
    hm = read_history(recruiting.ctx("hm1"), "Position__c", pos)
    assert {h["Field"] for h in hm} == {"Status__c", "Salary_Max__c"}


def test_krayin_2303_kanban_move_runs_the_whole_lifecycle(org: Context, tmp_path: Path) -> None:
    """A stage move by drag and drop is an ordinary update: permissions, required fields and picklist checks run."""
    deploy_objects(org, [{"object": "Deal__c", "sharing": "public_read_write", "name_field": {"type": "text"},
                          "fields": [
                              {"name": "Stage__c", "type": "picklist", "restricted": True,
                               "values": ["New", "Won", "Lost"]},
                              {"name": "Amount__c", "type": "currency", "required": True},
                              {"name": "Lost_Reason__c", "type": "text", "length": 80}]}], tmp_path)
    from keel.security.package import parse_permission_set
    from keel.services.security import deploy_permission_set, user_context

    with org.db.transaction() as conn:
        deploy_permission_set(org, conn, parse_permission_set({
            "name": "Seller", "profile": True, "objects": {"Deal__c": ["read", "create", "edit"]},
            "fields": {"Deal__c.Stage__c": ["edit"], "Deal__c.Lost_Reason__c": ["edit"]}}))
        deploy_permission_set(org, conn, parse_permission_set({
            "name": "Viewer", "profile": True, "objects": {"Deal__c": ["read", "edit"]},
            "fields": {"Deal__c.Stage__c": ["read"]}}))
    seller = user_context(org, new_user(org, "sel@example.com", "Seller"))
    viewer = user_context(org, new_user(org, "vie@example.com", "Viewer"))
    deal = save_many(seller, "Deal__c", [{"Name": "D1", "Stage__c": "New", "Amount__c": 10}])[0].id
    assert deal
    with pytest.raises(BatchError) as e:  # the card move carries a cleared required field
        save_many(seller, "Deal__c", [{"Id": deal, "Stage__c": "Won", "Amount__c": None}])
    assert e.value.details()[0].code == "REQUIRED_FIELD_MISSING"
    with pytest.raises(BatchError) as e:  # a column that is not a stage
        save_many(seller, "Deal__c", [{"Id": deal, "Stage__c": "Archived"}])
    assert e.value.details()[0].code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    with pytest.raises(BatchError) as e:  # espocrm#3350: no Edit on the stage field, so no drag and drop
        save_many(viewer, "Deal__c", [{"Id": deal, "Stage__c": "Lost"}])
    assert e.value.details()[0].code == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert read_record(org, "Deal__c", deal)["Stage__c"] == "New"  # nothing half-applied
    save_many(seller, "Deal__c", [{"Id": deal, "Stage__c": "Lost", "Lost_Reason__c": "price"}])
    assert read_record(org, "Deal__c", deal)["Stage__c"] == "Lost"


def test_mass_assignment_of_system_fields_is_rejected(recruiting: Recruiting) -> None:
    """S11: extra keys for fields the user may not write are errors, never silently dropped."""
    hm = recruiting.ctx("hm1")
    pos = recruiting.records["pos1"]
    for field, value in (("CreatedById", recruiting.users["hm2"]), ("IsDeleted", True),
                         ("LastModifiedDate", "2020-01-01T00:00:00Z")):
        with pytest.raises(BatchError) as e:
            save_many(hm, "Position__c", [{"Id": pos, field: value}])
        assert e.value.details()[0].code == "INVALID_FIELD_FOR_INSERT_UPDATE", field
    with pytest.raises(BatchError) as e:  # an auto-number name is system-managed even for its owner
        save_many(recruiting.ctx("interviewer"), "Review__c", [{"Id": recruiting.records["rev_iv"], "Name": "R-9"}])
    assert e.value.details()[0].code == "INVALID_FIELD_FOR_INSERT_UPDATE"
    with pytest.raises(BatchError) as e:  # the employee profile cannot write Position pay fields
        save_many(recruiting.ctx("employee"), "Position__c", [{"Name": "x", "Salary_Max__c": 1}])
    codes = {d.code for d in e.value.details()}
    assert "INVALID_FIELD_FOR_INSERT_UPDATE" in codes
