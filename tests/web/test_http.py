"""The web app over HTTP (Starlette TestClient) on every backend: sessions, CSRF, CSP, escaping, paging, counts,
writes through the lifecycle (inline edit, mass actions, kanban, forms, import) and the object manager."""

from __future__ import annotations

import csv
import io
import re
import time

import openpyxl
import pytest
from starlette.testclient import TestClient

from keel.cli.asgi import build_app
from keel.records import save_many
from keel.services.query import query
from keel.web import lists, views

from .conftest import ADMIN, ADMIN_PW, Org, csrf_of, digest_of, login

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def names_on(html: str) -> list[str]:
    return re.findall(r'<a href="/r/[A-Za-z0-9]+">(Position \d+)</a>', html)


def test_login_required_and_logout(web_org: Org) -> None:
    with TestClient(build_app(web_org.ctx)) as c:
        r = c.get("/o/Position__c", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
        c.get("/login")
        r = c.post("/login", data={"username": ADMIN, "password": "wrong password!!",
                                   "csrf_token": c.cookies.get("keel_lcsrf")})
        assert r.status_code == 401 and "Invalid username" in r.text
        login(c, ADMIN, ADMIN_PW)
        assert c.cookies.get("keel_sid")
        page = c.get("/")
        assert page.status_code == 200 and "App launcher" in page.text
        r = c.post("/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
        assert r.status_code == 303
        token_gone = c.get("/", follow_redirects=False)
        assert token_gone.status_code == 303


def test_session_cookie_flags_and_security_headers(web_org: Org) -> None:
    with TestClient(build_app(web_org.ctx)) as c:
        c.get("/login")
        r = c.post("/login", data={"username": ADMIN, "password": ADMIN_PW, "csrf_token": c.cookies.get("keel_lcsrf")},
                   follow_redirects=False)
        set_cookie = r.headers["set-cookie"].lower()
        assert "httponly" in set_cookie and "samesite=lax" in set_cookie
        page = c.get("/o/Position__c")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "<script>" not in re.sub(r'<script src="[^"]+" defer></script>', "", page.text)
    with TestClient(build_app(web_org.ctx), base_url="https://testserver") as s:
        s.get("/login")
        r = s.post("/login", data={"username": ADMIN, "password": ADMIN_PW,
                                   "csrf_token": s.cookies.get("keel_lcsrf")}, follow_redirects=False)
        assert "secure" in r.headers["set-cookie"].lower()


def test_csrf_required_on_every_state_change(admin: TestClient, web_org: Org) -> None:
    pid = web_org.positions[1]
    for path, data in [(f"/o/Position__c/cell/{pid}/Headcount__c", {"value": "9"}),
                       ("/o/Position__c/mass", {"ids": pid, "action": "delete"}),
                       ("/o/Job_Application__c/kanban/move", {"id": web_org.applications[0], "field": "Stage__c",
                                                              "value": "Screening"}),
                       ("/o/Position__c/new", {"Name": "x", "Department__c": "Patrol"}),
                       ("/logout", {})]:
        assert admin.post(path, data=data).status_code == 403, path
        assert admin.post(path, data={**data, "csrf_token": "0" * 64}).status_code == 403, path
    rec = query(web_org.ctx, f"SELECT Headcount__c FROM Position__c WHERE Id = '{pid}'")["records"][0]
    assert rec["Headcount__c"] != 9
    with TestClient(build_app(web_org.ctx)) as fresh:  # login CSRF: no cookie, no login
        r = fresh.post("/login", data={"username": ADMIN, "password": ADMIN_PW, "csrf_token": "forged"})
        assert r.status_code == 403


def test_script_payload_renders_inert_everywhere(admin: TestClient, web_org: Org) -> None:
    res = save_many(web_org.ctx, "Job_Application__c", [{"Name": XSS, "Stage__c": "Applied",
                                                         "Position__c": web_org.positions[0]}])
    rid = res[0].id
    pages = [f"/r/{rid}", "/o/Job_Application__c", "/o/Job_Application__c/kanban", "/search?q=script",
             "/lookup/Job_Application__c?q=%3Cscript", f"/r/{web_org.positions[0]}",
             "/reports?run=1&obj=Job_Application__c&g1=Name&chart=pie"]
    for path in pages:
        r = admin.get(path)
        assert r.status_code == 200, path
        assert "<script>alert" not in r.text and "<img src=x" not in r.text, path
        assert "&lt;script&gt;" in r.text or "&lt;img" in r.text, path


def test_keyset_paging_visits_every_row_once_both_directions(admin: TestClient, web_org: Org) -> None:
    for direction in ("asc", "desc"):
        seen: list[str] = []
        url: str | None = f"/o/Position__c?sort=Name&dir={direction}"
        while url:
            r = admin.get(url, headers={"HX-Request": "true", "HX-Target": "list-rows"} if seen else {})
            assert r.status_code == 200
            seen += names_on(r.text)
            m = re.search(r'hx-get="(/o/Position__c\?[^"]*after=[^"]*)"', r.text)
            url = m.group(1).replace("&amp;", "&") if m else None
        expected = query(web_org.ctx, "SELECT COUNT() FROM Position__c WHERE Name LIKE 'Position %'")["totalSize"]
        assert len(seen) == expected and len(set(seen)) == expected
        assert seen == sorted(seen, reverse=direction == "desc")


def test_keyset_paging_with_ties_on_the_sort_field(admin: TestClient, web_org: Org) -> None:
    seen: list[str] = []
    url: str | None = "/o/Position__c?sort=Department__c"
    while url:
        r = admin.get(url)
        seen += names_on(r.text)
        m = re.search(r'hx-get="(/o/Position__c\?[^"]*after=[^"]*)"', r.text)
        url = m.group(1).replace("&amp;", "&") if m else None
    expected = query(web_org.ctx, "SELECT COUNT() FROM Position__c WHERE Name LIKE 'Position %'")["totalSize"]
    assert len(seen) == expected and len(set(seen)) == expected


def test_count_is_capped_and_exact_on_demand(admin: TestClient, web_org: Org,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "COUNT_CAP", 200)
    monkeypatch.setattr(lists, "COUNT_CAP", 200)
    before = query(web_org.ctx, "SELECT COUNT() FROM Position__c")["totalSize"]
    assert before < 200
    assert admin.get("/o/Position__c/count").text == f"{before} items"
    save_many(web_org.ctx, "Position__c", [{"Name": f"Extra {i}", "Department__c": "Patrol"} for i in range(90)])
    capped = admin.get("/o/Position__c/count").text
    assert "200+" in capped and "Count exactly" in capped
    assert admin.get("/o/Position__c/count?exact=1").text == f"{before + 90} items"
    dispatch = query(web_org.ctx, "SELECT COUNT() FROM Position__c WHERE Department__c = 'Dispatch'")["totalSize"]
    assert admin.get("/o/Position__c/count?ff=Department__c&fo=%3D&fv=Dispatch").text == f"{dispatch} items"


def test_filters_views_and_parent_fields(admin: TestClient, web_org: Org) -> None:
    r = admin.get("/o/Position__c?view=open")
    assert len(names_on(r.text)) == 50 or "Open Positions" in r.text
    r = admin.get("/o/Position__c?q=Position%2000")
    assert sorted(names_on(r.text)) == [f"Position 00{i}" for i in range(10)]
    r = admin.get("/o/Job_Application__c?ff=Position__r.Department__c&fo=%3D&fv=Investigations")
    assert r.status_code == 200
    assert sorted(re.findall(r">(Application \d+)<", r.text)) == ["Application 01", "Application 04"]


def test_inline_edit_goes_through_validation(admin: TestClient, web_org: Org) -> None:
    page = admin.get("/o/Job_Application__c")
    token = csrf_of(page.text)
    aid = web_org.applications[0]
    r = admin.get(f"/o/Job_Application__c/cell/{aid}/Score__c")
    assert r.status_code == 200 and 'name="value"' in r.text
    r = admin.post(f"/o/Job_Application__c/cell/{aid}/Score__c", data={"value": "77", "csrf_token": token})
    assert r.status_code == 200 and ">77<" in r.text
    r = admin.post(f"/o/Job_Application__c/cell/{aid}/Stage__c", data={"value": "Offer", "csrf_token": token})
    assert r.status_code == 422 and "An offer needs an offer amount." in r.text
    rec = query(web_org.ctx, f"SELECT Score__c, Stage__c FROM Job_Application__c WHERE Id = '{aid}'")["records"][0]
    assert rec["Score__c"] == 77 and rec["Stage__c"] == "Applied"


def test_mass_actions_touch_exactly_the_selection(admin: TestClient, web_org: Org) -> None:
    token = csrf_of(admin.get("/o/Position__c").text)
    chosen = web_org.positions[10:13]
    before = query(web_org.ctx, "SELECT COUNT() FROM Position__c")["totalSize"]
    r = admin.post("/o/Position__c/mass", data={"ids": chosen, "action": "update", "field": "Status__c",
                                                "mass_value": "Closed", "csrf_token": token})
    assert r.status_code == 200 and "3 records updated" in r.text
    closed = query(web_org.ctx, "SELECT Id FROM Position__c WHERE Status__c = 'Closed'")["records"]
    assert sorted(x["Id"] for x in closed) == sorted(chosen)
    r = admin.post("/o/Position__c/mass", data={"ids": chosen[:2], "action": "delete", "csrf_token": token})
    assert "2 records deleted" in r.text
    assert query(web_org.ctx, "SELECT COUNT() FROM Position__c")["totalSize"] == before - 2


def test_kanban_move_is_an_ordinary_update(admin: TestClient, web_org: Org) -> None:
    token = csrf_of(admin.get("/o/Job_Application__c/kanban").text)
    aid = web_org.applications[1]
    ok = admin.post("/o/Job_Application__c/kanban/move", data={"id": aid, "field": "Stage__c",
                                                               "value": "Interview", "csrf_token": token})
    assert ok.status_code == 200
    refused = admin.post("/o/Job_Application__c/kanban/move", data={"id": aid, "field": "Stage__c",
                                                                    "value": "Hired", "csrf_token": token})
    assert refused.status_code == 422 and "An offer needs an offer amount." in refused.text
    rec = query(web_org.ctx, f"SELECT Stage__c FROM Job_Application__c WHERE Id = '{aid}'")["records"][0]
    assert rec["Stage__c"] == "Interview"
    hist = admin.get(f"/r/{aid}").text
    assert "Applied → Interview" in hist


def test_form_shows_field_level_errors_and_creates(admin: TestClient, web_org: Org) -> None:
    page = admin.get("/o/Job_Application__c/new")
    token = csrf_of(page.text)
    assert 'role="combobox"' in page.text  # lookup picker
    r = admin.post("/o/Job_Application__c/new", data={"Name": "New app", "Stage__c": "Offer",
                                                      "Position__c": web_org.positions[2], "csrf_token": token})
    assert r.status_code == 422
    assert re.search(r'id="e-Offer_Amount__c">An offer needs an offer amount\.', r.text)
    r = admin.post("/o/Job_Application__c/new", data={"Name": "New app", "Stage__c": "Offer", "Offer_Amount__c": "5000",
                                                      "Position__c": web_org.positions[2], "csrf_token": token},
                   follow_redirects=False)
    assert r.status_code == 303
    rec = admin.get(r.headers["location"]).text
    assert "New app" in rec and "Position 002" in rec
    r = admin.post("/o/Position__c/new", data={"Name": "No dept", "csrf_token": token})
    assert r.status_code == 422 and 'id="e-Department__c"' in r.text


def test_lookup_search(admin: TestClient, web_org: Org) -> None:
    r = admin.get("/lookup/Position__c?Position__c__label=Position%2011&target=f-Position__c")
    assert "Position 110" in r.text and 'role="option"' in r.text


def test_report_with_chart_and_xlsx(admin: TestClient, web_org: Org) -> None:
    r = admin.get("/reports?run=1&obj=Position__c&g1=Department__c&agg=SUM&field=Headcount__c&chart=bar")
    assert r.status_code == 200 and "<svg" in r.text and "Sum of Headcount by Department" in r.text
    total = query(web_org.ctx, "SELECT SUM(Headcount__c) s FROM Position__c")["records"][0]["s"]
    assert f"{int(total)}" in r.text
    m = admin.get("/reports?run=1&obj=Position__c&g1=Department__c&g2=Status__c")
    assert "Subtotal" in m.text
    x = admin.get("/reports/export.xlsx?obj=Position__c&g1=Department__c&agg=COUNT")
    wb = openpyxl.load_workbook(io.BytesIO(x.content))
    rows = list(wb.active.iter_rows(values_only=True))  # type: ignore[union-attr]
    n = query(web_org.ctx, "SELECT COUNT() FROM Position__c")["totalSize"]
    assert rows[0] == ("Department", "Record count") and rows[-1][-1] == n
    d = admin.get("/dashboards")
    assert d.status_code == 200 and d.text.count("<svg") >= 3


def test_import_wizard_dry_run_then_import(admin: TestClient, web_org: Org) -> None:
    token = csrf_of(admin.get("/o/Candidate__c/import").text)
    data = "Candidate Name,email,Source\nAnn Import,ann@example.com,Web\nBob Import,not-an-email,Web\n" \
           "Cy Import,cy@example.com,Nowhere\n"
    r = admin.post("/o/Candidate__c/import", data={"step": "upload", "csrf_token": token},
                   files={"file": ("c.csv", data.encode(), "text/csv")})
    assert r.status_code == 200
    token_file = re.search(r'name="token" value="([0-9a-f]+)"', r.text)
    assert token_file
    mapping = dict(re.findall(r'name="map_(\d)">.*?<option value="([A-Za-z_]+)" selected', r.text))
    assert mapping == {"0": "Name", "1": "Email__c", "2": "Source__c"}
    form = {"csrf_token": token, "token": token_file.group(1), "map_0": "Name", "map_1": "Email__c",
            "map_2": "Source__c", "key": ""}
    dry = admin.post("/o/Candidate__c/import", data={**form, "step": "dry"})
    assert "Error report" in dry.text and "Nothing was saved" in dry.text
    assert re.search(r"3 rows: 1 would succeed .* 2 with errors", dry.text), dry.text[-1500:]
    assert query(web_org.ctx, "SELECT COUNT() FROM Candidate__c WHERE Name LIKE '%Import'")["totalSize"] == 0
    run = admin.post("/o/Candidate__c/import", data={**form, "step": "run"}, follow_redirects=False)
    assert run.status_code == 303 and run.headers["location"].startswith("/imports/750")
    page = wait_for_import(admin, run.headers["location"])
    assert "1 imported (1 new), 2 with errors" in page and "Error report" in page and "not-an-email" in page
    assert query(web_org.ctx, "SELECT COUNT() FROM Candidate__c WHERE Name LIKE '%Import'")["totalSize"] == 1
    # undo deletes exactly what the import created
    undo = re.search(r'action="(/imports/[A-Za-z0-9]+/undo)"', page)
    assert undo
    r = admin.post(undo.group(1), data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and "Undone: 1 record" in admin.get(r.headers["location"]).text
    assert query(web_org.ctx, "SELECT COUNT() FROM Candidate__c WHERE Name LIKE '%Import'")["totalSize"] == 0


def wait_for_import(client: TestClient, url: str) -> str:
    """The progress panel polls (htmx); here we poll the same URL until the job is done."""
    deadline = time.time() + 60
    while True:
        panel = client.get(url, headers={"HX-Request": "true"}).text
        assert 'id="import-progress"' in panel and "<html" not in panel
        if "hx-trigger" not in panel:
            return str(client.get(url).text)
        assert time.time() < deadline, panel
        time.sleep(0.2)


def test_object_manager_plans_then_applies_a_field(admin: TestClient, web_org: Org) -> None:
    token = csrf_of(admin.get("/setup/o/Candidate__c/fields/new").text)
    form = {"label": "Badge Number", "name": "Badge_Number", "type": "text", "csrf_token": token}
    plan = admin.post("/setup/o/Candidate__c/fields/new", data={**form, "step": "plan"})
    assert "add_field" in plan.text and "Candidate__c.Badge_Number__c" in plan.text
    assert web_org.ctx.schema().get_object("Candidate__c").find_field("Badge_Number__c") is None
    done = admin.post("/setup/o/Candidate__c/fields/new", data={**form, "step": "apply",
                                                                 "plan_digest": digest_of(plan.text)},
                      follow_redirects=False)
    assert done.status_code == 303
    assert 'name="Badge_Number__c"' in admin.get("/o/Candidate__c/new").text


def test_export_is_neutralised(admin: TestClient, web_org: Org) -> None:
    save_many(web_org.ctx, "Position__c", [{"Name": "=HYPERLINK(\"http://x\")", "Department__c": "Patrol"}])
    r = admin.get("/o/Position__c/export.csv?q=HYPERLINK")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[1][1].startswith("'=")
    assert r.headers["content-disposition"].startswith("attachment")
