"""The import wizard's upsert path: with a match key chosen, rows whose key matches a record update it (same id,
no duplicate), the rest are created, a row the lifecycle refuses is in the error report, and "undo this import"
deletes only what the import created."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from keel.records import save_many
from keel.services.metadata import apply_package
from keel.services.query import query
from keel.services.security import system_context

from .conftest import Org, csrf_of
from .test_http import wait_for_import

PACKAGE = Path(__file__).parent / "fixtures" / "dependent"
CSV = ("Roster Code,Assignment Name,Division,Unit\n"
       "R-1,Night traffic,Patrol,Traffic\n"  # matches: updated
       "r-2,Desk (moved),Dispatch,Radio\n"  # matches case-insensitively: updated
       "R-3,New beat,Patrol,K9\n"  # no match: created
       "R-4,Bad unit,Dispatch,K9\n")  # refused: K9 is not a Dispatch unit


@pytest.fixture(scope="module")
def existing(web_org: Org) -> dict[str, str]:
    apply_package(web_org.ctx, PACKAGE)
    ctx = system_context(web_org.ctx, "import upsert test")
    res = save_many(ctx, "Assignment__c", [{"Name": "Old 1", "Roster_Code__c": "R-1", "Division__c": "Patrol"},
                                           {"Name": "Old 2", "Roster_Code__c": "R-2", "Division__c": "Patrol"}])
    return {"R-1": str(res[0].id), "R-2": str(res[1].id)}


def _rows(org: Org) -> dict[str, tuple[str, str, str, str | None]]:
    recs = query(org.ctx, "SELECT Id, Roster_Code__c, Name, Division__c, Unit__c FROM Assignment__c")["records"]
    return {r["Roster_Code__c"]: (r["Id"], r["Name"], r["Division__c"], r["Unit__c"]) for r in recs}


def test_upsert_on_a_chosen_match_key_updates_instead_of_duplicating(admin: TestClient, web_org: Org,
                                                                     existing: dict[str, str]) -> None:
    token = csrf_of(admin.get("/o/Assignment__c/import").text)
    up = admin.post("/o/Assignment__c/import", data={"step": "upload", "csrf_token": token},
                    files={"file": ("a.csv", CSV.encode(), "text/csv")})
    assert up.status_code == 200
    key_select = re.search(r'<select id="key" name="key">.*?</select>', up.text, re.S)
    assert key_select and 'value="Roster_Code__c"' in key_select.group(0)
    file_token = re.search(r'name="token" value="([0-9a-f]+)"', up.text)
    assert file_token
    form = {"csrf_token": token, "token": file_token.group(1), "map_0": "Roster_Code__c", "map_1": "Name",
            "map_2": "Division__c", "map_3": "Unit__c", "key": "Roster_Code__c"}
    dry = admin.post("/o/Assignment__c/import", data={**form, "step": "dry"})
    assert "4 rows: 3 would succeed (1 new, 2 updated), 1 with errors" in dry.text, dry.text[-1500:]
    assert "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" in dry.text
    assert set(_rows(web_org)) == {"R-1", "R-2"}  # a dry run saves nothing
    run = admin.post("/o/Assignment__c/import", data={**form, "step": "run"}, follow_redirects=False)
    assert run.status_code == 303
    page = wait_for_import(admin, run.headers["location"])
    assert "3 imported (1 new), 1 with errors" in page and "Bad unit" in page
    rows = _rows(web_org)
    assert set(rows) == {"R-1", "R-2", "R-3"}
    assert rows["R-1"] == (existing["R-1"], "Night traffic", "Patrol", "Traffic")
    assert rows["R-2"] == (existing["R-2"], "Desk (moved)", "Dispatch", "Radio")
    assert rows["R-3"][1:] == ("New beat", "Patrol", "K9")
    undo = re.search(r'action="(/imports/[A-Za-z0-9]+/undo)"', page)
    assert undo
    done = admin.post(undo.group(1), data={"csrf_token": token}, follow_redirects=False)
    assert "Undone: 1 record" in admin.get(done.headers["location"]).text
    assert set(_rows(web_org)) == {"R-1", "R-2"}  # the updated records stay
