"""Dependent picklists are enforced by the record lifecycle, not only hidden by the form: a value that is not valid
for the controlling field's value is refused with ``INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`` through
``save_many`` (API, import, flows) and through a crafted form post, on every backend."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from keel.errors import BatchError
from keel.records import save_many
from keel.services.metadata import apply_package
from keel.services.query import query
from keel.services.security import system_context

from .conftest import Org, csrf_of

PACKAGE = Path(__file__).parent / "fixtures" / "dependent"
CODE = "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"


@pytest.fixture(scope="module")
def dep_org(web_org: Org) -> Org:
    apply_package(web_org.ctx, PACKAGE)
    return web_org


def test_save_many_refuses_a_dependent_value_invalid_for_its_controller(dep_org: Org) -> None:
    ctx = system_context(dep_org.ctx, "dependent picklist test")
    ok = save_many(ctx, "Assignment__c", [
        {"Name": "A1", "Division__c": "Patrol", "Unit__c": "K9"},
        {"Name": "A2", "Division__c": "Dispatch", "Unit__c": "Radio"},
        {"Name": "A3", "Division__c": "Investigations", "Unit__c": "Training"},  # no valid_for: always valid
        {"Name": "A4", "Unit__c": "Training"}])
    assert all(r.success for r in ok)
    with pytest.raises(BatchError) as bad:
        save_many(ctx, "Assignment__c", [{"Name": "B1", "Division__c": "Dispatch", "Unit__c": "K9"}])
    err = bad.value.results[0].errors[0]
    assert (err.code, err.fields) == (CODE, ("Unit__c",))
    assert "K9" in err.message and "Division is Dispatch" in err.message
    partial = save_many(ctx, "Assignment__c", [
        {"Name": "B2", "Unit__c": "Homicide"},  # no controlling value: a restricted dependent value is invalid
        {"Name": "B3", "Division__c": "Investigations", "Unit__c": "Homicide"}], all_or_none=False)
    assert [r.success for r in partial] == [False, True]
    assert partial[0].errors[0].code == CODE and "Division is blank" in partial[0].errors[0].message
    # an update that changes only the controller is checked against the stored dependent value
    with pytest.raises(BatchError) as moved:
        save_many(ctx, "Assignment__c", [{"Id": ok[0].id, "Division__c": "Investigations"}])
    assert moved.value.results[0].errors[0].code == CODE
    save_many(ctx, "Assignment__c", [{"Id": ok[0].id, "Division__c": "Investigations", "Unit__c": "Homicide"}])
    rec = query(dep_org.ctx, f"SELECT Division__c, Unit__c FROM Assignment__c WHERE Id = '{ok[0].id}'")["records"]
    assert (rec[0]["Division__c"], rec[0]["Unit__c"]) == ("Investigations", "Homicide")
    names = {r["Name"] for r in query(dep_org.ctx, "SELECT Name FROM Assignment__c")["records"]}
    assert names == {"A1", "A2", "A3", "A4", "B3"}


def test_a_checkbox_controller_matches_yaml_booleans(dep_org: Org) -> None:
    """``valid_for: [true]`` is a YAML boolean; the controller's value is matched as the text ``true``."""
    ctx = system_context(dep_org.ctx, "dependent picklist test")
    ok = save_many(ctx, "Assignment__c", [{"Name": "W1", "Armed__c": True, "Weapon__c": "Sidearm"},
                                          {"Name": "W2", "Armed__c": False, "Weapon__c": "None Issued"}])
    assert all(r.success for r in ok)
    with pytest.raises(BatchError) as bad:
        save_many(ctx, "Assignment__c", [{"Name": "W3", "Armed__c": False, "Weapon__c": "Sidearm"}])
    assert bad.value.results[0].errors[0].code == CODE


def test_a_crafted_form_post_is_refused_next_to_the_field(admin: TestClient, dep_org: Org) -> None:
    form = admin.get("/o/Assignment__c/new").text
    assert 'data-controller="f-Division__c"' in form and 'data-valid-for="Dispatch;Patrol"' in form
    token = csrf_of(form)
    r = admin.post("/o/Assignment__c/new", data={"csrf_token": token, "Name": "Crafted", "Division__c": "Dispatch",
                                                 "Unit__c": "Homicide"}, follow_redirects=False)
    assert r.status_code == 422
    page = html.unescape(r.text)
    assert 'id="e-Unit__c"' in page and "bad value for restricted picklist field: Homicide" in page
    assert not query(dep_org.ctx, "SELECT Id FROM Assignment__c WHERE Name = 'Crafted'")["records"]
    good = admin.post("/o/Assignment__c/new", data={"csrf_token": token, "Name": "Crafted",
                                                    "Division__c": "Dispatch", "Unit__c": "Radio"},
                      follow_redirects=False)
    assert good.status_code == 303
    assert query(dep_org.ctx, "SELECT Unit__c FROM Assignment__c WHERE Name = 'Crafted'")["records"][0][
        "Unit__c"] == "Radio"
