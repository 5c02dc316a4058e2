"""List view columns chosen and ordered in the "save this list as a view" form (only fields the user can read are
offered, and a hidden one is refused), editing one's own view in place, and list views filtered on a formula
field."""

from __future__ import annotations

import html
import re
from pathlib import Path

from starlette.testclient import TestClient

from keel.records import save_many
from keel.services.metadata import apply_package
from keel.services.security import system_context

from .conftest import Org, csrf_of

PACKAGE = Path(__file__).parent / "fixtures" / "dependent"


def _headers(page: str) -> list[str]:
    return [html.unescape(h).strip(" ▲▼") for h in
            re.findall(r'<th scope="col"[^>]*>\s*<a href="[^"]*">([^<]*)</a>', page)]


def _offered(page: str) -> list[str]:
    m = re.search(r'<select id="sv-c1" name="c1">(.*?)</select>', page, re.S)
    assert m, "no column picker"
    return re.findall(r'<option value="([^"]+)"', m.group(1))


def _save(c: TestClient, url: str, **form: str) -> object:
    """Post the page's own "save this list as a view" form (its hidden state: view, filter, sort) with ``form``."""
    page = c.get(url).text
    hidden = dict(re.findall(r'<input type="hidden" name="(view|q|ff|fo|fv|sort|dir)" value="([^"]*)">',
                             page.split("Save this list as a view")[1].split("</form>")[0]))
    assert "view" in hidden
    return c.post(url.split("?")[0] + "/views", data={**{k: html.unescape(v) for k, v in hidden.items()},
                                                      "csrf_token": csrf_of(page), "visibility": "private", **form},
                  follow_redirects=False)


def test_the_picker_offers_only_readable_fields(recruiter: TestClient, admin: TestClient) -> None:
    mine = _offered(recruiter.get("/o/Position__c").text)
    assert {"Name", "Department__c", "Headcount__c", "Max_Pay__c"} <= set(mine)
    assert "Secret_Notes__c" not in mine
    assert "Secret_Notes__c" in _offered(admin.get("/o/Position__c").text)  # so the check above is real


def test_chosen_columns_are_saved_in_order_and_a_view_can_be_edited(recruiter: TestClient) -> None:
    r = _save(recruiter, "/o/Position__c", label="Headcount first", c1="Headcount__c", c2="Name", c3="Status__c",
              c4="", c5="Headcount__c")
    assert getattr(r, "status_code", 0) == 303
    url = str(getattr(r, "headers", {})["location"])
    page = recruiter.get(url).text
    assert _headers(page) == ["Headcount", "Position Title", "Status"]
    # the picker opens on the view's columns, and "update" changes this view instead of adding one
    assert re.search(r'<select id="sv-c1" name="c1">.*?<option value="Headcount__c" selected', page, re.S)
    edited = _save(recruiter, url.removeprefix("http://testserver"), label="Headcount first", update="1",
                   c1="Name", c2="Department__c")
    assert getattr(edited, "headers", {})["location"] == url
    assert _headers(recruiter.get(url).text) == ["Position Title", "Department"]
    assert recruiter.get("/o/Position__c").text.count("Headcount first") == 1


def test_a_hidden_or_foreign_column_is_refused(recruiter: TestClient, admin: TestClient) -> None:
    r = _save(recruiter, "/o/Position__c", label="Sneaky", c1="Name", c2="Secret_Notes__c")
    assert getattr(r, "status_code", 0) == 400
    assert "Secret_Notes__c is not a field you can show as a column." in html.unescape(getattr(r, "text", ""))
    assert "Sneaky" not in recruiter.get("/o/Position__c").text
    theirs = _save(admin, "/o/Position__c", label="Admin view", c1="Name")
    view = str(getattr(theirs, "headers", {})["location"]).split("view=")[1]
    page = recruiter.get("/o/Position__c").text
    r = recruiter.post("/o/Position__c/views", data={"csrf_token": csrf_of(page), "view": view, "update": "1",
                                                     "label": "Taken over", "c1": "Name"})
    assert r.status_code in (400, 403)  # another user's (private) view is never changed


def test_a_list_view_filters_on_a_formula_field(admin: TestClient, web_org: Org) -> None:
    apply_package(web_org.ctx, PACKAGE)
    ctx = system_context(web_org.ctx, "formula filter test")
    save_many(ctx, "Assignment__c", [{"Name": "Dog unit", "Division__c": "Patrol", "Unit__c": "K9"},
                                     {"Name": "Road unit", "Division__c": "Patrol", "Unit__c": "Traffic"},
                                     {"Name": "Radio room", "Division__c": "Dispatch", "Unit__c": "Radio"}])
    page = admin.get("/o/Assignment__c").text
    assert re.search(r'<select id="ff" name="ff">.*?<option value="Code__c"', page, re.S)  # offered as a filter
    url = "/o/Assignment__c?ff=Code__c&fo=contains&fv=Patrol%2F"
    names = re.findall(r'<a href="/r/[A-Za-z0-9]+">([^<]+)</a>', admin.get(url).text)
    assert sorted(names) == ["Dog unit", "Road unit"]
    r = _save(admin, url, label="Patrol units", c1="Name", c2="Code__c")
    saved = admin.get(str(getattr(r, "headers", {})["location"])).text
    assert sorted(re.findall(r'<a href="/r/[A-Za-z0-9]+">([^<]+)</a>', saved)) == ["Dog unit", "Road unit"]
    assert _headers(saved) == ["Assignment Name", "Code"] and "Patrol/K9" in saved
