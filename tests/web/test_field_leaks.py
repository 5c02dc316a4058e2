"""Field-level security on every web surface (domain-research §2: espocrm#2515 lists, frappe/crm#805 activity
logs). The recruiter cannot read Position.Secret_Notes__c, Candidate.SSN__c or Job_Application.Medical_Result__c;
every one of them holds ``SECRET``, so any leak shows up as the string on a page."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from .conftest import SECRET, Org


def _clean(r: object, path: str) -> None:
    text = getattr(r, "text", "")
    assert getattr(r, "status_code", 0) in (200, 400, 403, 404), path
    assert SECRET not in text, f"hidden field value leaked on {path}"


def test_admin_sees_the_secret_so_the_probe_is_real(admin: TestClient, web_org: Org) -> None:
    assert SECRET in admin.get("/o/Position__c").text
    assert SECRET in admin.get(f"/r/{web_org.positions[0]}").text
    assert SECRET in admin.get("/search?q=TOPSECRET").text
    assert SECRET in admin.get("/o/Job_Application__c/kanban").text
    assert SECRET in admin.get("/o/Candidate__c/export.csv").text
    assert SECRET in admin.get("/reports/export.csv?obj=Candidate__c&type=tabular&cols=Name,SSN__c").text


@pytest.mark.parametrize("path", [
    "/o/Position__c", "/o/Candidate__c", "/o/Job_Application__c",  # list columns
    "/o/Position__c?sort=Secret_Notes__c", "/o/Candidate__c?view=all",
    "/o/Job_Application__c/kanban", "/o/Job_Application__c/kanban?field=Stage__c",  # kanban cards
    "/search?q=TOPSECRET", "/search?q=Position", "/search?q=medical",  # search results
    "/o/Position__c/export.csv", "/o/Candidate__c/export.csv", "/o/Job_Application__c/export.csv",  # export
    "/reports?run=1&obj=Position__c&g1=Secret_Notes__c", "/reports?run=1&obj=Candidate__c&g1=SSN__c",
    "/reports?run=1&obj=Job_Application__c&g1=Medical_Result__c", "/reports?obj=Position__c",  # reports
    "/reports/export.xlsx?obj=Candidate__c&g1=SSN__c", "/dashboards",
    "/reports/export.csv?obj=Candidate__c&g1=SSN__c",
    "/reports/export.csv?obj=Candidate__c&type=tabular&cols=Name,SSN__c",
    "/lookup/Candidate__c?q=Cand", "/lookup/Job_Application__c?q=App",  # lookup previews
    "/approvals", "/reports?run=1&obj=Candidate__c&type=tabular&cols=Name,SSN__c",  # approvals, tabular reports
    "/reports?run=1&obj=Job_Application__c&g1=Stage__c&g2=Medical_Result__c&chart=stacked_bar",
])
def test_recruiter_never_sees_hidden_fields(recruiter: TestClient, path: str) -> None:
    _clean(recruiter.get(path), path)


def test_record_page_history_and_related_lists(recruiter: TestClient, web_org: Org) -> None:
    page = recruiter.get(f"/r/{web_org.positions[0]}")
    assert page.status_code == 200
    assert "Max Pay" in page.text  # visible history is there …
    _clean(page, "position record page")  # … hidden history, fields and related columns are not
    for rid in (web_org.candidates[0], web_org.applications[0]):
        _clean(recruiter.get(f"/r/{rid}"), rid)
        _clean(recruiter.get(f"/r/{rid}/edit"), rid + "/edit")


def test_filtering_on_a_hidden_field_is_refused(recruiter: TestClient) -> None:
    r = recruiter.get(f"/o/Position__c?ff=Secret_Notes__c&fo=contains&fv={SECRET}")
    assert r.status_code == 400
    r = recruiter.get(f"/o/Job_Application__c?ff=Position__r.Secret_Notes__c&fo=contains&fv={SECRET}")
    assert r.status_code == 400 and SECRET not in r.text
    r = recruiter.get(f"/o/Position__c/count?ff=Secret_Notes__c&fo=contains&fv={SECRET}")
    assert r.status_code == 400


def test_search_does_not_match_on_hidden_fields(recruiter: TestClient) -> None:
    """Matching would reveal the hidden value one guess at a time."""
    r = recruiter.get(f"/search?q={SECRET}")
    assert "Position 0" not in r.text and "Candidate 0" not in r.text and "No results" in r.text


def test_hidden_field_cannot_be_edited_inline(recruiter: TestClient, web_org: Org) -> None:
    r = recruiter.get(f"/o/Position__c/cell/{web_org.positions[3]}/Secret_Notes__c")
    assert r.status_code == 404 and SECRET not in r.text


def test_setup_is_for_administrators(recruiter: TestClient) -> None:
    assert recruiter.get("/setup").status_code == 403
    assert recruiter.get("/setup/o/Position__c/fields/new").status_code == 403
