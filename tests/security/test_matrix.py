"""The security matrix: users × objects × records × fields × surfaces.

Every expectation is a literal in the tables below, written from the Recruiting-app model (domain-research §4.1),
not computed by the code under test. Surfaces: single read, SOQL list, SOQL aggregate, child subquery, parent path,
SOQL field selection, field history, and write (save_many).
"""

from __future__ import annotations

from typing import Any

import pytest

from keel.context import Context
from keel.errors import BatchError, KeelError
from keel.query.run import run_soql
from keel.records import save_many
from keel.services.security import read_history, read_record
from tests.security.conftest import Recruiting

USERS = ("recruiter", "hm1", "hm2", "interviewer", "employee", "vp")
ALL = " ".join(USERS)

# (object, record) -> users who can read the record
VISIBLE: dict[tuple[str, str], str] = {
    ("Position__c", "pos1"): ALL,  # Public Read Only
    ("Position__c", "pos2"): ALL,
    ("Candidate__c", "cand1"): "recruiter hm1 hm2 vp",  # employees have no Candidate permission
    # The interviewer has a manual share; hm2, above the interviewer's role, inherits it (grant access using
    # hierarchies), as in Salesforce.
    ("Job_Application__c", "app1"): "recruiter hm1 hm2 interviewer vp",
    ("Job_Application__c", "app2"): "recruiter vp",
    ("Review__c", "rev_iv"): "recruiter hm1 hm2 interviewer vp",  # Interviewer role is below Hiring Manager
    ("Review__c", "rev_hm"): "recruiter hm1 vp",
    ("Offer__c", "offer1"): "recruiter hm1 hm2 vp",  # controlled by parent: follows app1
    ("Offer__c", "offer2"): "recruiter vp",
}

# (object, record, field) -> users whose update succeeds
EDITABLE: dict[tuple[str, str, str], str] = {
    ("Position__c", "pos1", "Salary_Max__c"): "hm1 vp",
    ("Position__c", "pos2", "Salary_Max__c"): "hm2 vp",
    ("Candidate__c", "cand1", "Email__c"): "recruiter",
    ("Job_Application__c", "app1", "Stage__c"): "hm1 vp",
    ("Job_Application__c", "app2", "Stage__c"): "recruiter vp",
    ("Review__c", "rev_iv", "Score__c"): "hm1 hm2 interviewer vp",
    ("Review__c", "rev_hm", "Score__c"): "hm1 vp",
    ("Offer__c", "offer1", "Amount__c"): "",  # only recruiters edit offers, and app1 is not theirs to edit
    ("Offer__c", "offer2", "Amount__c"): "recruiter",
}

# (object, field) -> users who can read the field
READABLE: dict[tuple[str, str], str] = {
    ("Position__c", "Department__c"): ALL,
    ("Position__c", "Salary_Max__c"): "recruiter hm1 hm2 vp",  # pay fields hidden from employees
    ("Candidate__c", "Email__c"): "recruiter hm1 hm2 vp",
    ("Candidate__c", "SSN__c"): "recruiter",  # hiring managers cannot read SSN
    ("Review__c", "Score__c"): ALL,
    ("Offer__c", "Amount__c"): "recruiter hm1 hm2 vp",
}

# (user) -> {application: [reviews visible in its Reviews__r subquery]}
CHILDREN: dict[str, dict[str, set[str]]] = {
    "recruiter": {"app1": {"rev_iv", "rev_hm"}, "app2": set()},
    "hm1": {"app1": {"rev_iv", "rev_hm"}},
    "hm2": {"app1": {"rev_iv"}},  # the inherited application; hm1's own review belongs to a peer
    "interviewer": {"app1": {"rev_iv"}},  # not the hiring manager's own review
    "employee": {},
    "vp": {"app1": {"rev_iv", "rev_hm"}, "app2": set()},
}

# (user, review) -> is Job_Application__r.Name visible through the parent path
PARENT_PATH: dict[tuple[str, str], bool] = {
    ("recruiter", "rev_iv"): True, ("recruiter", "rev_hm"): True,
    ("hm1", "rev_iv"): True, ("hm1", "rev_hm"): True,
    ("hm2", "rev_iv"): True,  # the application through the interviewer's inherited share
    ("interviewer", "rev_iv"): True,  # the application is shared with the interviewer
    ("vp", "rev_iv"): True, ("vp", "rev_hm"): True,
}

OBJECTS = sorted({o for o, _ in VISIBLE})


def users_of(spec: str) -> set[str]:
    return set(spec.split())


def soql(ctx: Context, text: str) -> dict[str, Any]:
    access: Any = ctx.actor.access
    with ctx.db.read() as conn:
        return run_soql(conn, ctx.schema(conn), text, dialect=ctx.db.dialect, row_filter=access.row_filter,
                        field_mask=access.field_mask, security_key=access.security_key,
                        user_id=ctx.actor.user_id)


@pytest.fixture
def ctxs(recruiting: Recruiting) -> dict[str, Context]:
    return {u: recruiting.ctx(u) for u in USERS}


def test_single_read_and_soql_list(recruiting: Recruiting, ctxs: dict[str, Context]) -> None:
    rec = recruiting.records
    for user, ctx in ctxs.items():
        for obj in OBJECTS:
            listed = {r["Id"] for r in soql(ctx, f"SELECT Id FROM {obj}")["records"]}
            expected = {rec[k] for (o, k), who in VISIBLE.items() if o == obj and user in users_of(who)}
            assert listed == expected, (user, obj)
            count = soql(ctx, f"SELECT COUNT(Id) n FROM {obj}")["records"][0]["n"]
            assert count == len(expected), (user, obj, "aggregate")
        for (obj, key), who in VISIBLE.items():
            if user in users_of(who):
                assert read_record(ctx, obj, rec[key])["Id"] == rec[key]
            else:
                with pytest.raises(KeelError):
                    read_record(ctx, obj, rec[key])


def test_fields_on_every_read_surface(recruiting: Recruiting, ctxs: dict[str, Context]) -> None:
    rec = recruiting.records
    sample = {"Position__c": "pos1", "Candidate__c": "cand1", "Review__c": "rev_iv", "Offer__c": "offer1"}
    for (obj, field), who in READABLE.items():
        for user, ctx in ctxs.items():
            key = sample[obj]
            if user not in users_of(VISIBLE[(obj, key)]):
                key = next((k for (o, k), w in VISIBLE.items() if o == obj and user in users_of(w)), "")
            allowed = user in users_of(who)
            if key:
                got = read_record(ctx, obj, rec[key])
                assert (field in got) == allowed, (user, obj, field, "single read")
            if allowed:
                soql(ctx, f"SELECT Id, {field} FROM {obj}")
            else:
                with pytest.raises(KeelError):
                    soql(ctx, f"SELECT Id, {field} FROM {obj}")


def test_child_subquery(recruiting: Recruiting, ctxs: dict[str, Context]) -> None:
    rec = recruiting.records
    back = {v: k for k, v in rec.items()}
    for user, ctx in ctxs.items():
        if not ctx.actor.access.can("Job_Application__c", "read"):
            continue
        out = soql(ctx, "SELECT Id, (SELECT Id FROM Reviews__r) FROM Job_Application__c")
        got = {back[r["Id"]]: {back[c["Id"]] for c in (r["Reviews__r"] or {"records": []})["records"]}
               for r in out["records"]}
        assert got == CHILDREN[user], user


def test_parent_path_into_invisible_record_is_null(recruiting: Recruiting, ctxs: dict[str, Context]) -> None:
    rec = recruiting.records
    back = {v: k for k, v in rec.items()}
    for user, ctx in ctxs.items():
        out = soql(ctx, "SELECT Id, Job_Application__r.Name FROM Review__c")
        for r in out["records"]:
            parent = r.get("Job_Application__r")
            visible = parent is not None and parent.get("Name") is not None
            assert visible == PARENT_PATH[(user, back[r["Id"]])], (user, back[r["Id"]])


def test_writes(recruiting: Recruiting, ctxs: dict[str, Context]) -> None:
    rec = recruiting.records
    values = {"Salary_Max__c": 99000, "Email__c": "new@x.org", "Stage__c": "Interview", "Score__c": 3,
              "Amount__c": 70000}
    for (obj, key, field), who in EDITABLE.items():
        for user, ctx in ctxs.items():
            ok = True
            try:
                save_many(ctx, obj, [{"Id": rec[key], field: values[field]}])
            except BatchError:
                ok = False
            assert ok == (user in users_of(who)), (user, obj, key, field)


def test_history_hides_unreadable_fields(recruiting: Recruiting, ctxs: dict[str, Context]) -> None:
    """frappe/crm#805: an activity log must not show a change to a field the reader cannot see."""
    rec = recruiting.records
    save_many(ctxs["hm1"], "Position__c", [{"Id": rec["pos1"], "Salary_Max__c": 75000, "Status__c": "Open"}])
    for user, ctx in ctxs.items():
        fields = {h["Field"] for h in read_history(ctx, "Position__c", rec["pos1"])}
        expected = {"Status__c"} | ({"Salary_Max__c"} if user in users_of(READABLE[("Position__c", "Salary_Max__c")])
                                    else set())
        assert fields == expected, user
