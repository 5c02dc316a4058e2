"""Read-only fields on record pages and forms: a field the user can read but not change (read-only by field
security, or computed) is shown in the form as a read-only control with a marker and ``aria-readonly``, is never
posted by the form, and a crafted post of it is refused by the lifecycle rather than silently dropped."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from keel.records import save_many
from keel.security.package import PermissionSetSpec
from keel.services.metadata import apply_package
from keel.services.query import query
from keel.services.security import assign_permission_set, deploy_permission_set, system_context

from .conftest import RECRUITER, Org, csrf_of

PACKAGE = Path(__file__).parent / "fixtures" / "dependent"


@pytest.fixture(scope="module")
def rid(web_org: Org) -> str:
    """An Assignment the recruiter may edit, with Unit read-only for them by field security."""
    apply_package(web_org.ctx, PACKAGE)
    sysctx = system_context(web_org.ctx, "read-only marker test")
    with web_org.ctx.db.transaction() as conn:
        deploy_permission_set(sysctx, conn, PermissionSetSpec(
            "Assignments_Limited", "Assignments (limited)", False, (), {"Assignment__c": ("read", "create", "edit")},
            {"Assignment__c.Division__c": (True, True), "Assignment__c.Unit__c": (True, False),
             "Assignment__c.Code__c": (True, False)}))
        uid = query(sysctx, f"SELECT Id FROM User WHERE Username = '{RECRUITER}'")["records"][0]["Id"]
        assign_permission_set(sysctx, conn, uid, "Assignments_Limited")
    return str(save_many(sysctx, "Assignment__c", [{"Name": "R1", "Division__c": "Patrol", "Unit__c": "K9"}])[0].id)


def _control(page: str, name: str) -> str:
    m = re.search(rf'<(input|select)[^>]*id="f-{name}"[^>]*>', page)
    assert m, f"no control for {name}"
    return m.group(0)


def _label(page: str, name: str) -> str:
    m = re.search(rf'<label for="f-{name}">(.*?)</label>', page, re.S)
    assert m, f"no label for {name}"
    return m.group(1)


def test_edit_form_shows_read_only_fields_as_read_only(recruiter: TestClient, rid: str) -> None:
    page = recruiter.get(f"/r/{rid}/edit").text
    unit, code, division = _control(page, "Unit__c"), _control(page, "Code__c"), _control(page, "Division__c")
    for ctl, value in ((unit, "K9"), (code, "Patrol/K9")):
        assert 'readonly aria-readonly="true"' in ctl and f'value="{value}"' in ctl and "name=" not in ctl
        assert "(read-only)" in _label(page, ctl.split('id="f-')[1].split('"')[0])
    assert division.startswith("<select") and 'name="Division__c"' in division
    assert "(read-only)" not in _label(page, "Division__c") and "readonly" not in division
    new = recruiter.get("/o/Assignment__c/new").text
    assert 'readonly aria-readonly="true"' in _control(new, "Unit__c")


def test_saving_keeps_read_only_fields_and_a_crafted_post_is_refused(recruiter: TestClient, web_org: Org,
                                                                     rid: str) -> None:
    page = recruiter.get(f"/r/{rid}/edit").text
    version = re.search(r'name="__version__" value="(\d+)"', page)
    assert version
    form = {"csrf_token": csrf_of(page), "__version__": version.group(1), "Name": "R1 renamed",
            "Division__c": "Patrol"}
    crafted = recruiter.post(f"/r/{rid}/edit", data={**form, "Unit__c": "Traffic"}, follow_redirects=False)
    assert crafted.status_code == 422
    text = html.unescape(crafted.text)
    assert 'id="e-Unit__c"' in text and "Unable to create/update fields: Unit__c" in text
    assert 'value="K9"' in _control(crafted.text, "Unit__c")  # the read-only value is still shown
    ok = recruiter.post(f"/r/{rid}/edit", data=form, follow_redirects=False)
    assert ok.status_code == 303, ok.text
    rec = query(web_org.ctx, f"SELECT Name, Unit__c FROM Assignment__c WHERE Id = '{rid}'")["records"][0]
    assert (rec["Name"], rec["Unit__c"]) == ("R1 renamed", "K9")


def _dt(page: str, label: str) -> str:
    m = re.search(rf"<dt>{label}(.*?)</dt>", page, re.S)
    assert m, f"no {label} on the record page"
    return m.group(1)


def test_record_page_marks_read_only_fields_per_user(recruiter: TestClient, admin: TestClient, rid: str) -> None:
    mine, theirs = recruiter.get(f"/r/{rid}").text, admin.get(f"/r/{rid}").text
    assert "(read-only)" in _dt(mine, "Unit") and "(read-only)" not in _dt(mine, "Division")
    assert "(read-only)" not in _dt(theirs, "Unit")  # the administrator may edit it
    assert "(read-only)" in _dt(theirs, "Code") and "(read-only)" in _dt(mine, "Code")  # a formula, for everyone
