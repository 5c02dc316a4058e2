"""The object manager creates a custom object and edits an object's and a field's properties, always as a plan
shown first and applied second; mistakes are shown next to the form field they concern, and a field change that
existing rows forbid is refused at plan time with their number."""

from __future__ import annotations

import html
import re

import pytest
from starlette.testclient import TestClient

from keel.metadata.model import ObjectDef

from .conftest import Org, csrf_of, digest_of, plan_and_apply

SETUP_ROUTES = ["/setup/objects/new", "/setup/o/Position__c/edit", "/setup/o/Position__c/fields/Department__c/edit"]


def _obj(org: Org, name: str) -> ObjectDef | None:
    return org.ctx.schema().find_object(name)


def test_create_an_object_then_use_it(admin: TestClient, web_org: Org) -> None:
    page = admin.get("/setup")
    assert 'href="/setup/objects/new"' in page.text
    form = {"csrf_token": csrf_of(admin.get("/setup/objects/new").text), "label": "Badge Request",
            "plural_label": "Badge Requests", "name": "", "name_type": "auto_number", "name_label": "Request Number",
            "name_format": "BR-{0000}", "sharing": "public_read", "track_history": "on"}
    planned = admin.post("/setup/objects/new", data={**form, "step": "plan"})
    assert planned.status_code == 200, planned.text
    text = html.unescape(planned.text)
    assert "create_object  Badge_Request__c" in text
    assert 'name="name" value="Badge_Request__c"' in text  # derived from the label, and editable
    assert _obj(web_org, "Badge_Request__c") is None  # a plan changes nothing
    done = admin.post("/setup/objects/new", data={**form, "name": "Badge_Request__c", "step": "apply",
                                                  "plan_digest": digest_of(planned.text)}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/setup/o/Badge_Request__c"
    obj = _obj(web_org, "Badge_Request__c")
    assert obj is not None and obj.label == "Badge Request" and obj.sharing == "public_read" and obj.track_history
    assert obj.name_field.type == "auto_number" and obj.name_field.display_format == "BR-{0000}"
    assert 'href="/o/Badge_Request__c"' in admin.get("/").text  # a tab in the app launcher
    listing = admin.get("/o/Badge_Request__c")
    assert listing.status_code == 200 and "Badge Requests" in listing.text
    new = admin.get("/o/Badge_Request__c/new")
    assert new.status_code == 200
    r = admin.post("/o/Badge_Request__c/new", data={"csrf_token": csrf_of(new.text)}, follow_redirects=False)
    assert r.status_code == 303, r.text
    record = admin.get(r.headers["location"]).text
    assert "BR-0001" in record


def test_object_form_errors_sit_next_to_their_field(admin: TestClient, web_org: Org) -> None:
    token = csrf_of(admin.get("/setup/objects/new").text)
    bad = admin.post("/setup/objects/new", data={"csrf_token": token, "label": "X", "name": "9 lives",
                                                 "step": "plan"})
    assert bad.status_code == 400
    assert re.search(r'id="name"[^>]*aria-invalid="true" aria-describedby="e-name"', bad.text)
    assert 'id="e-name"' in bad.text and "is not an API name" in html.unescape(bad.text)
    dup = admin.post("/setup/objects/new", data={"csrf_token": token, "label": "Position", "name": "Position__c",
                                                 "step": "plan"})
    assert dup.status_code == 400 and "An object named Position__c already exists." in dup.text
    assert 'id="e-name"' in dup.text
    fmt = admin.post("/setup/objects/new", data={"csrf_token": token, "label": "Ticket", "name_type": "auto_number",
                                                 "name_format": "T-", "step": "plan"})
    assert fmt.status_code == 400 and 'id="e-name_format"' in fmt.text
    assert _obj(web_org, "Ticket__c") is None and _obj(web_org, "X__c") is None


def test_edit_object_properties(admin: TestClient, web_org: Org) -> None:
    url = "/setup/o/Candidate__c/edit"
    before = _obj(web_org, "Candidate__c")
    assert before is not None
    page = admin.get(url).text
    assert f'value="{before.plural_label}"' in page
    form = {"csrf_token": csrf_of(page), "label": "Applicant", "plural_label": "Applicants",
            "sharing": "public_read", **({"track_history": "on"} if before.track_history else {})}
    planned = admin.post(url, data={**form, "step": "plan"})
    assert "update_object  Candidate__c  (label, plural_label, sharing)" in html.unescape(planned.text)
    r = plan_and_apply(admin, url, form)
    assert r.status_code == 303
    after = _obj(web_org, "Candidate__c")
    assert after is not None and (after.label, after.plural_label, after.sharing) == (
        "Applicant", "Applicants", "public_read")
    assert "Applicants" in admin.get("/o/Candidate__c").text
    bad = admin.post(url, data={**form, "sharing": "controlled_by_parent", "step": "plan"})
    assert bad.status_code == 400 and 'id="e-sharing"' in bad.text
    assert admin.get("/setup/o/User/edit").status_code == 400  # standard objects keep their properties
    plan_and_apply(admin, url, {**form, "label": before.label, "plural_label": before.plural_label,
                                "sharing": before.sharing})


def test_edit_a_field(admin: TestClient, web_org: Org) -> None:
    url = "/setup/o/Position__c/fields/Department__c/edit"
    obj = _obj(web_org, "Position__c")
    assert obj is not None
    f = obj.get_field("Department__c")
    assert f'href="{url}"' in admin.get("/setup/o/Position__c").text
    page = admin.get(url).text
    assert f.type == "picklist" and f.required and 'name="length"' not in page  # a picklist has no length
    form = {"csrf_token": csrf_of(page), "label": "Division", "help_text": "Where the officer works",
            "required": "on", "track_history": "on"}
    planned = admin.post(url, data={**form, "step": "plan"})
    text = html.unescape(planned.text)
    assert planned.status_code == 200 and "update_field   Position__c.Department__c" in text
    assert "label: 'Department' -> 'Division'" in text
    r = admin.post(url, data={**form, "step": "apply", "plan_digest": digest_of(planned.text)},
                   follow_redirects=False)
    assert r.status_code == 303
    g = web_org.ctx.schema().get_object("Position__c").get_field("Department__c")
    assert (g.label, g.help_text, g.track_history) == ("Division", "Where the officer works", True)
    assert "Division" in admin.get(f"/r/{web_org.positions[0]}").text


def test_field_changes_that_data_forbids_are_refused_with_counts(admin: TestClient, web_org: Org) -> None:
    url = "/setup/o/Position__c/fields/Secret_Notes__c/edit"
    obj = _obj(web_org, "Position__c")
    assert obj is not None
    f = obj.get_field("Secret_Notes__c")
    with web_org.ctx.db.read() as conn:
        longer = conn.exec_driver_sql(
            f'SELECT COUNT(*) FROM "{obj.table}" WHERE length("{f.column}") > 10').scalar()
    assert longer
    form = {"csrf_token": csrf_of(admin.get(url).text), "label": f.label, "length": "10"}
    r = admin.post(url, data={**form, "step": "plan"})
    assert r.status_code == 400
    text = html.unescape(r.text)
    assert f"narrowing the length to 10 would truncate {longer} row(s)" in text
    assert 'name="plan_digest"' not in r.text  # nothing to apply
    r = admin.post(url, data={**form, "length": "99999", "step": "plan"})
    assert r.status_code == 400 and 'id="e-length"' in r.text
    col = obj.get_field("Headcount__c").column
    with web_org.ctx.db.read() as conn:
        dupes = conn.exec_driver_sql(
            f'SELECT COUNT(*) FROM (SELECT "{col}" FROM "{obj.table}" WHERE is_deleted = false AND "{col}" IS NOT '
            f'NULL GROUP BY "{col}" HAVING COUNT(*) > 1) d').scalar()
    assert dupes
    count = "/setup/o/Position__c/fields/Headcount__c/edit"
    r = admin.post(count, data={"csrf_token": form["csrf_token"], "label": "Headcount", "precision": "5",
                                "scale": "0", "unique": "on", "step": "plan"})
    assert r.status_code == 400
    assert f"{dupes} value(s) are duplicated, so the field cannot become unique" in html.unescape(r.text)
    r = admin.post(count, data={"csrf_token": form["csrf_token"], "label": "Headcount", "precision": "5",
                                "scale": "9", "step": "plan"})
    assert r.status_code == 400 and 'id="e-scale"' in r.text
    dep = "/setup/o/Position__c/fields/Department__c/edit"
    r = admin.post(dep, data={"csrf_token": form["csrf_token"], "label": "Division", "unique": "on",
                              "step": "plan"})
    assert r.status_code == 400 and 'id="e-unique"' in r.text  # a picklist cannot be unique
    assert web_org.ctx.schema().get_object("Position__c").get_field("Secret_Notes__c").length == f.length


@pytest.mark.parametrize("path", SETUP_ROUTES)
def test_object_setup_is_for_customizers(recruiter: TestClient, web_org: Org, path: str) -> None:
    assert recruiter.get(path).status_code == 403
    token = csrf_of(recruiter.get("/o/Position__c").text)
    r = recruiter.post(path, data={"csrf_token": token, "label": "Hacked", "plural_label": "Hacked",
                                   "sharing": "public_read_write", "step": "apply"})
    assert r.status_code == 403
    assert _obj(web_org, "Hacked__c") is None
    assert web_org.ctx.schema().get_object("Position__c").label != "Hacked"
