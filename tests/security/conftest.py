"""Security fixtures: users with profiles and roles, and the Recruiting-app permission model as test-local
objects. The organisation itself comes from the suite-wide ``org`` fixture (SQLite, and PostgreSQL in a fresh
schema when KEEL_TEST_PG is set)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from keel.context import Context
from keel.records import save_many
from keel.security.package import parse_permission_set
from keel.services.metadata import apply_package
from keel.services.security import (
    create_role,
    deploy_permission_set,
    ensure_share_objects,
    share_record,
    user_context,
)
from keel.services.users import create_user
from keel.storage import ids

PASSWORD = "correct horse battery staple"

RECRUITING_OBJECTS: list[dict[str, Any]] = [
    {"object": "Position__c", "sharing": "public_read", "track_history": True, "name_field": {"type": "text"},
     "fields": [
        {"name": "Department__c", "type": "picklist", "values": ["Patrol", "Detectives", "Admin"]},
        {"name": "Status__c", "type": "picklist", "values": ["Open", "Closed"]},
        {"name": "Salary_Min__c", "type": "currency"},
        {"name": "Salary_Max__c", "type": "currency"},
    ]},
    {"object": "Candidate__c", "sharing": "public_read", "name_field": {"type": "text"}, "fields": [
        {"name": "Email__c", "type": "email"},
        {"name": "SSN__c", "type": "text", "length": 11, "sensitive": True},
    ]},
    {"object": "Job_Application__c", "sharing": "private", "name_field": {"type": "auto_number", "format": "JA-{0000}"},
     "fields": [
         {"name": "Position__c", "type": "lookup", "to": "Position__c", "relationship_name": "Position__r",
          "child_relationship_name": "Job_Applications__r"},
         {"name": "Candidate__c", "type": "lookup", "to": "Candidate__c", "relationship_name": "Candidate__r",
          "child_relationship_name": "Job_Applications__r"},
         {"name": "Stage__c", "type": "picklist", "values": ["Applied", "Interview", "Offer", "Hired", "Rejected"]},
         {"name": "Reject_Reason__c", "type": "text", "length": 80},
     ],
     "validation_rules": [{"name": "Reason_On_Reject", "condition": "AND(ISPICKVAL(Stage__c, 'Rejected'), "
                           "ISBLANK(Reject_Reason__c))", "message": "Give a reason when rejecting.",
                           "field": "Reject_Reason__c"}]},
    {"object": "Review__c", "sharing": "private", "name_field": {"type": "auto_number", "format": "R-{0000}"},
     "fields": [
         {"name": "Job_Application__c", "type": "lookup", "to": "Job_Application__c",
          "relationship_name": "Job_Application__r", "child_relationship_name": "Reviews__r"},
         {"name": "Score__c", "type": "number"},
     ]},
    {"object": "Offer__c", "sharing": "controlled_by_parent", "name_field": {"type": "text"}, "fields": [
        {"name": "Job_Application__c", "type": "master_detail", "to": "Job_Application__c",
         "relationship_name": "Job_Application__r", "child_relationship_name": "Offers__r"},
        {"name": "Amount__c", "type": "currency"},
    ]},
]

RECRUITING_PROFILES: list[dict[str, Any]] = [
    {"name": "Recruiter", "profile": True, "system": ["ApiEnabled"], "objects": {
        "Position__c": ["read", "create", "edit", "delete", "view_all"],
        "Candidate__c": ["read", "create", "edit", "delete"],
        "Job_Application__c": ["read", "create", "edit", "delete", "view_all"],
        "Review__c": ["read", "view_all"], "Offer__c": ["read", "create", "edit"]},
     "fields": {"Position__c.Department__c": ["edit"], "Position__c.Status__c": ["edit"],
                "Position__c.Salary_Min__c": ["edit"], "Position__c.Salary_Max__c": ["edit"],
                "Candidate__c.Email__c": ["edit"], "Candidate__c.SSN__c": ["edit"],
                "Job_Application__c.Position__c": ["edit"], "Job_Application__c.Candidate__c": ["edit"],
                "Job_Application__c.Stage__c": ["edit"], "Job_Application__c.Reject_Reason__c": ["edit"],
                "Review__c.Job_Application__c": ["read"], "Review__c.Score__c": ["read"],
                "Offer__c.Job_Application__c": ["edit"], "Offer__c.Amount__c": ["edit"]}},
    {"name": "Hiring Manager", "profile": True, "objects": {
        "Position__c": ["read", "create", "edit"], "Candidate__c": ["read"],
        "Job_Application__c": ["read", "edit"], "Review__c": ["read", "create", "edit"], "Offer__c": ["read"]},
     "fields": {"Position__c.Department__c": ["edit"], "Position__c.Status__c": ["edit"],
                "Position__c.Salary_Min__c": ["edit"], "Position__c.Salary_Max__c": ["edit"],
                "Candidate__c.Email__c": ["read"],
                "Job_Application__c.Position__c": ["read"], "Job_Application__c.Candidate__c": ["read"],
                "Job_Application__c.Stage__c": ["edit"], "Job_Application__c.Reject_Reason__c": ["edit"],
                "Review__c.Job_Application__c": ["edit"], "Review__c.Score__c": ["edit"],
                "Offer__c.Amount__c": ["read"], "Offer__c.Job_Application__c": ["read"]}},
    {"name": "Standard Employee", "profile": True, "objects": {
        "Position__c": ["read"], "Review__c": ["read", "create", "edit"], "Job_Application__c": ["read"]},
     "fields": {"Position__c.Department__c": ["read"], "Position__c.Status__c": ["read"],
                "Job_Application__c.Stage__c": ["read"],
                "Review__c.Job_Application__c": ["edit"], "Review__c.Score__c": ["edit"]}},
]


@dataclass
class Recruiting:
    org: Context
    users: dict[str, str]  # label -> user id
    records: dict[str, str]  # label -> record id

    def ctx(self, who: str) -> Context:
        return user_context(self.org, self.users[who])

    def pk(self, who: str) -> int:
        return ids.decode(self.users[who], "005")


def deploy_objects(org: Context, docs: list[dict[str, Any]], tmp: Path) -> None:
    folder = tmp / "pkg"
    folder.mkdir(parents=True, exist_ok=True)
    for d in docs:
        (folder / f"{d['object']}.yaml").write_text(yaml.safe_dump(d))
    apply_package(org, folder)


def new_user(org: Context, username: str, profile: str, role: str | None = None, **extra: Any) -> str:
    return create_user(org, username=username, password=PASSWORD, last_name=username.split("@")[0], email=username,
                       profile=profile, role=role, extra=extra or None)


@pytest.fixture
def recruiting(org: Context, tmp_path: Path) -> Iterator[Recruiting]:
    """Roles: CEO > VP People > {Recruiting Lead > Recruiter, Hiring Manager}; Interviewers under Hiring Manager.
    Positions are Private (Recruiters see all via View All); Reviews are Private (own only)."""
    deploy_objects(org, RECRUITING_OBJECTS, tmp_path)
    ensure_share_objects(org)
    with org.db.transaction() as conn:
        for spec in RECRUITING_PROFILES:
            deploy_permission_set(org, conn, parse_permission_set(spec))
        create_role(org, conn, "CEO")
        create_role(org, conn, "VP People", "CEO")
        create_role(org, conn, "Hiring Manager", "VP People")
        create_role(org, conn, "Interviewer", "Hiring Manager")
        create_role(org, conn, "Recruiter", "VP People")
    users = {
        "recruiter": new_user(org, "rita@example.com", "Recruiter", "Recruiter"),
        "hm1": new_user(org, "hank@example.com", "Hiring Manager", "Hiring Manager"),
        "hm2": new_user(org, "hilda@example.com", "Hiring Manager", "Hiring Manager"),
        "interviewer": new_user(org, "ivan@example.com", "Standard Employee", "Interviewer"),
        "employee": new_user(org, "emma@example.com", "Standard Employee"),
        "vp": new_user(org, "victor@example.com", "Hiring Manager", "VP People"),
    }
    rec = Recruiting(org, users, {})
    hm1, hm2, iv = rec.ctx("hm1"), rec.ctx("hm2"), rec.ctx("interviewer")
    r = rec.records
    r["pos1"] = save_many(hm1, "Position__c", [{"Name": "Patrol Officer", "Department__c": "Patrol",
                                                "Salary_Min__c": 50000, "Salary_Max__c": 70000}])[0].id or ""
    r["pos2"] = save_many(hm2, "Position__c", [{"Name": "Detective", "Department__c": "Detectives",
                                                "Salary_Min__c": 80000, "Salary_Max__c": 95000}])[0].id or ""
    r["cand1"] = save_many(rec.ctx("recruiter"), "Candidate__c", [{"Name": "Alex Doe", "Email__c": "alex@x.org",
                                                                   "SSN__c": "123-45-6789"}])[0].id or ""
    rc = rec.ctx("recruiter")
    r["app1"] = save_many(rc, "Job_Application__c", [{"Position__c": r["pos1"], "Candidate__c": r["cand1"],
                                                      "Stage__c": "Applied", "OwnerId": users["hm1"]}])[0].id or ""
    r["app2"] = save_many(rc, "Job_Application__c", [{"Position__c": r["pos2"], "Candidate__c": r["cand1"],
                                                      "Stage__c": "Applied"}])[0].id or ""
    r["offer1"] = save_many(rc, "Offer__c", [{"Name": "Offer A", "Job_Application__c": r["app1"],
                                              "Amount__c": 61000}])[0].id or ""
    r["offer2"] = save_many(rc, "Offer__c", [{"Name": "Offer B", "Job_Application__c": r["app2"],
                                              "Amount__c": 88000}])[0].id or ""
    share_record(hm1, "Job_Application__c", r["app1"], users["interviewer"], "Read")
    r["rev_iv"] = save_many(iv, "Review__c", [{"Job_Application__c": r["app1"], "Score__c": 4}])[0].id or ""
    r["rev_hm"] = save_many(hm1, "Review__c", [{"Job_Application__c": r["app1"], "Score__c": 5}])[0].id or ""
    yield rec
