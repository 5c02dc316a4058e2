"""Editing a picklist's values in the object manager: relabel, reorder, (de)activate, set the default, add and
remove, shown as a metadata plan first and applied in one transaction; data that forbids a change refuses it."""

from __future__ import annotations

import html

from starlette.testclient import TestClient

from keel.metadata.model import FieldDef

from .conftest import Org, csrf_of, digest_of, plan_and_apply

STATUS = "/setup/o/Position__c/fields/Status__c/values"
SOURCE = "/setup/o/Candidate__c/fields/Source__c/values"


def _field(org: Org, obj: str, name: str) -> FieldDef:
    return org.ctx.schema().get_object(obj).get_field(name)


def test_values_are_planned_then_applied(admin: TestClient, web_org: Org) -> None:
    page = admin.get("/setup/o/Position__c").text
    assert f'href="{STATUS}"' in page
    editor = admin.get(STATUS).text
    assert 'name="l1" value="Open"' in editor
    before = _field(web_org, "Position__c", "Status__c").values
    form = {"csrf_token": csrf_of(editor), "o0": "2", "l0": "Draft", "a0": "on",
            "o1": "1", "l1": "Open for applications", "a1": "on",
            "o2": "3", "l2": "Closed",  # not ticked active: deactivated
            "default": "Open", "new": "On Hold\n"}
    planned = admin.post(STATUS, data={**form, "step": "plan"})
    assert planned.status_code == 200, planned.text
    text = html.unescape(planned.text)
    assert "update_field" in text and "Position__c.Status__c" in text
    for part in ("+['On Hold'] -[]", "relabelled Open: 'Open' -> 'Open for applications'", "deactivated Closed",
                 "default Open", "reordered Open; Draft; Closed"):
        assert part in text, part
    assert _field(web_org, "Position__c", "Status__c").values == before  # a plan changes nothing
    done = admin.post(STATUS, data={**form, "step": "apply", "plan_digest": digest_of(planned.text)},
                      follow_redirects=False)
    assert done.status_code == 303
    after = _field(web_org, "Position__c", "Status__c").values
    assert [(v.value, v.label, v.active, v.default) for v in after] == [
        ("Open", "Open for applications", True, True), ("Draft", "Draft", True, False),
        ("Closed", "Closed", False, False), ("On Hold", "On Hold", True, False)]
    new_form = admin.get("/o/Position__c/new").text
    assert ">Open for applications</option>" in new_form and 'value="On Hold"' in new_form
    assert 'value="Closed"' not in new_form  # inactive: records keep it, new ones cannot choose it
    again = admin.post(STATUS, data={"csrf_token": form["csrf_token"], "step": "plan", "default": "Open",
                                      **{f"a{i}": "on" for i in (0, 1, 3)},
                                      **{f"l{i}": v.label for i, v in enumerate(after)}})
    assert "(no changes)" in again.text


def test_removing_a_value_records_hold_is_refused_with_their_number(admin: TestClient, web_org: Org) -> None:
    editor = admin.get(SOURCE).text
    held = web_org.ctx.db
    with held.read() as conn:
        table = web_org.ctx.schema().get_object("Candidate__c")
        col = table.get_field("Source__c").column
        n = conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table.table} WHERE {col} = 'Web'").scalar()
    assert n
    form = {"csrf_token": csrf_of(editor), "r0": "on", "a1": "on", "a2": "on", "l1": "Referral", "l2": "Agency"}
    r = plan_and_apply(admin, SOURCE, form)
    assert r.status_code == 400
    assert f"{n} row(s) hold values that are not in the restricted picklist" in html.unescape(r.text)
    assert [v.value for v in _field(web_org, "Candidate__c", "Source__c").values] == ["Web", "Referral", "Agency"]


def test_a_repeated_new_value_is_refused(admin: TestClient, web_org: Org) -> None:
    editor = admin.get(SOURCE).text
    form = {"csrf_token": csrf_of(editor), "a0": "on", "a1": "on", "a2": "on", "new": "web", "step": "plan"}
    r = admin.post(SOURCE, data=form)
    assert r.status_code == 400 and "repeated" in html.unescape(r.text)


def test_only_customizers_edit_values_and_only_of_picklists(admin: TestClient, recruiter: TestClient,
                                                            web_org: Org) -> None:
    assert admin.get("/setup/o/Position__c/fields/Headcount__c/values").status_code == 404
    token = csrf_of(recruiter.get("/o/Position__c").text)
    r = recruiter.post(SOURCE, data={"csrf_token": token, "a0": "on", "new": "Sneaky", "step": "apply"})
    assert r.status_code == 403
    assert "Sneaky" not in [v.value for v in _field(web_org, "Candidate__c", "Source__c").values]
