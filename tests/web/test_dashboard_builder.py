"""The dashboard builder over HTTP on every backend: build a dashboard from saved reports (add, reorder, remove,
chart type, title), save it private or shared, and open it as users who see different rows, or cannot read a
component's object at all. Numbers are whatever SOQL returns for each viewer; nothing is cached across users."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from keel.cli.asgi import build_app
from keel.records import save_many
from keel.services.security import system_context, user_context
from keel.services.users import create_user, find_user_id

from .conftest import RECRUITER, Org, csrf_of, login

VIEWER, VIEWER_PW = "viewer@web.test", "a long viewer passphrase"


@pytest.fixture(scope="module")
def energy(web_org: Org) -> dict[str, int]:
    """Private Accounts in an industry no other test uses: five the administrator owns, two the recruiter owns."""
    sysctx = system_context(web_org.ctx, "dashboard builder test")
    save_many(sysctx, "Account", [{"Name": f"Admin Energy {i}", "Industry": "Energy",
                                   "Type": "Prospect" if i < 3 else "Customer"} for i in range(5)])
    rec = user_context(web_org.ctx, find_user_id(web_org.ctx, RECRUITER))
    save_many(rec, "Account", [{"Name": f"Recruiter Energy {i}", "Industry": "Energy", "Type": "Prospect"}
                               for i in range(2)])
    return {"admin": 7, "recruiter": 2}


@pytest.fixture(scope="module")
def viewer(web_org: Org) -> Iterator[TestClient]:
    """A Standard User without the recruiting permission set: Accounts yes, Positions no."""
    create_user(system_context(web_org.ctx, "dashboard builder test"), username=VIEWER, password=VIEWER_PW,
                last_name="Viewer", email=VIEWER, profile="Standard User")
    with TestClient(build_app(web_org.ctx)) as c:
        yield login(c, VIEWER, VIEWER_PW)


@pytest.fixture(scope="module")
def reports(admin: TestClient, energy: dict[str, int]) -> dict[str, str]:
    """Two shared saved reports and one private one, saved by the administrator through the report builder."""
    token = csrf_of(admin.get("/reports").text)
    saved = {"Energy_By_Type": {"obj": "Account", "g1": "Type", "ff": "Industry", "fo": "=", "fv": "Energy",
                                "agg": "COUNT", "chart": "bar", "shared": "on"},
             "Headcount_By_Dept": {"obj": "Position__c", "g1": "Department__c", "agg": "SUM",
                                   "field": "Headcount__c", "chart": "bar", "shared": "on"},
             "My_Positions": {"obj": "Position__c", "g1": "Status__c", "agg": "COUNT", "chart": "pie"}}
    for name, params in saved.items():
        r = admin.post("/reports/save", data={**params, "csrf_token": token, "name": name, "label": name},
                       follow_redirects=False)
        assert r.status_code == 303, r.text
    return {n: n for n in saved}


def _post(c: TestClient, data: dict[str, Any]) -> Any:
    return c.post("/dashboards/build", data={"csrf_token": csrf_of(c.get("/dashboards/build").text), **data},
                  follow_redirects=False)


def _state(html: str) -> list[tuple[str, str, str]]:
    """The draft's components as the builder shows them: (report, chart, title) in order."""
    out = []
    for i in range(12):
        sel = re.search(rf'name="report{i}">.*?value="([^"]*)" selected', html, re.S)
        if not sel:
            break
        chart = re.search(rf'name="chart{i}">.*?value="([^"]*)" selected', html, re.S)
        title = re.search(rf'name="title{i}" value="([^"]*)"', html)
        assert chart and title
        out.append((sel.group(1), chart.group(1), title.group(1)))
    return out


def _fields(parts: list[tuple[str, str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for i, (rep, chart, title) in enumerate(parts):
        out.update({f"report{i}": rep, f"chart{i}": chart, f"title{i}": title})
    return out


def _save(c: TestClient, name: str, parts: list[tuple[str, str, str]], shared: bool = False) -> Any:
    return _post(c, {"name": name, "label": f"{name} <board>", **({"shared": "on"} if shared else {}),
                     **_fields(parts), "op": "save"})


def _metric(html: str, label: str) -> str:
    m = re.search(rf'<section class="card" aria-label="{re.escape(label)}">\s*<h2>[^<]*</h2><p class="metric">'
                  r"<strong>([^<]*)</strong>", html)
    assert m, f"no metric tile {label}"
    return m.group(1)


def _tiles(html: str) -> list[str]:
    return re.findall(r'<section class="card" aria-label="([^"]*)">', html)


def test_add_reorder_remove_and_save(admin: TestClient, reports: dict[str, str]) -> None:
    r = _post(admin, {"name": "Hiring", "new_report": "Energy_By_Type", "new_chart": "metric",
                      "new_title": "Energy accounts", "op": "add"})
    assert r.status_code == 200 and _state(r.text) == [("Energy_By_Type", "metric", "Energy accounts")]
    parts = _state(r.text)
    r = _post(admin, {"name": "Hiring", **_fields(parts), "new_report": "Headcount_By_Dept", "new_chart": "donut",
                      "new_title": "", "op": "add"})
    r = _post(admin, {"name": "Hiring", **_fields(_state(r.text)), "new_report": "My_Positions",
                      "new_chart": "funnel", "new_title": "Pipeline", "op": "add"})
    assert [p[0] for p in _state(r.text)] == ["Energy_By_Type", "Headcount_By_Dept", "My_Positions"]
    r = _post(admin, {"name": "Hiring", **_fields(_state(r.text)), "op": "up:1"})
    assert [p[0] for p in _state(r.text)] == ["Headcount_By_Dept", "Energy_By_Type", "My_Positions"]
    r = _post(admin, {"name": "Hiring", **_fields(_state(r.text)), "op": "down:0"})
    assert [p[0] for p in _state(r.text)] == ["Energy_By_Type", "Headcount_By_Dept", "My_Positions"]
    r = _post(admin, {"name": "Hiring", **_fields(_state(r.text)), "op": "remove:2"})
    parts = _state(r.text)
    assert parts == [("Energy_By_Type", "metric", "Energy accounts"), ("Headcount_By_Dept", "donut", "")]
    r = _post(admin, {"name": "Hiring", **_fields(parts), "new_report": "Nope", "op": "add"})
    assert r.status_code == 400 and "not a report you can use" in r.text and _state(r.text) == parts  # draft kept
    r = _save(admin, "Hiring", list(reversed(parts)))
    assert r.status_code == 303 and r.headers["location"] == "/dashboards/Hiring"
    page = admin.get("/dashboards/Hiring")
    assert page.status_code == 200 and "Hiring &lt;board&gt;" in page.text
    assert _tiles(page.text) == ["Headcount_By_Dept", "Energy accounts"]
    assert page.text.count("<svg") == 1 and "Record count" in page.text
    listed = admin.get("/dashboards").text
    assert 'href="/dashboards/Hiring"' in listed and 'href="/dashboards/build"' in listed
    edit = admin.get("/dashboards/build?from=Hiring")
    assert edit.status_code == 200 and _state(edit.text) == list(reversed(parts))


def test_each_component_runs_as_the_viewer(admin: TestClient, recruiter: TestClient, viewer: TestClient,
                                           reports: dict[str, str], energy: dict[str, int]) -> None:
    parts = [("Energy_By_Type", "metric", "Energy accounts"), ("Headcount_By_Dept", "bar", "Headcount")]
    assert _save(admin, "Shared_Board", parts, shared=True).status_code == 303
    a, r, v = (c.get("/dashboards/Shared_Board") for c in (admin, recruiter, viewer))
    assert a.status_code == r.status_code == v.status_code == 200
    assert _metric(a.text, "Energy accounts") == str(energy["admin"])
    assert _metric(r.text, "Energy accounts") == str(energy["recruiter"])  # private sharing: only their own
    assert _metric(v.text, "Energy accounts") == "0"
    assert '<svg' in r.text and "Headcount" in r.text
    tile = re.search(r'aria-label="Headcount">\s*<h2>Headcount</h2><p class="error" role="alert">([^<]+)', v.text)
    assert tile and "<svg" not in v.text  # no access to Positions: an error tile, no numbers


def test_refresh_and_the_per_user_cache(admin: TestClient, recruiter: TestClient, reports: dict[str, str]) -> None:
    parts = [("Energy_By_Type", "metric", "Energy"), ("Headcount_By_Dept", "pie", "")]
    assert _save(admin, "Cached", parts, shared=True).status_code == 303
    assert "(0 from cache)" in admin.get("/dashboards/Cached").text
    assert "(2 from cache)" in admin.get("/dashboards/Cached").text
    assert "(0 from cache)" in admin.get("/dashboards/Cached?refresh=1").text
    assert "(0 from cache)" in recruiter.get("/dashboards/Cached").text  # never another user's entry
    assert _save(admin, "Cached", [*parts[:1], ("Headcount_By_Dept", "line", "")], shared=True).status_code == 303
    assert "(1 from cache)" in admin.get("/dashboards/Cached").text  # the edited component reruns


def test_private_shared_ownership_and_csrf(admin: TestClient, recruiter: TestClient,
                                          reports: dict[str, str]) -> None:
    parts = [("Energy_By_Type", "", "")]
    assert _save(admin, "Mine_Only", parts).status_code == 303
    assert recruiter.get("/dashboards/Mine_Only").status_code == 404
    assert 'href="/dashboards/Mine_Only"' not in recruiter.get("/dashboards").text
    assert recruiter.get("/dashboards/build?from=Mine_Only").status_code == 404
    r = _save(recruiter, "Mine_Only", parts)
    assert r.status_code == 400 and "Another user" in r.text
    r = _save(admin, "Leaky", [("My_Positions", "", "")], shared=True)
    assert r.status_code == 400 and "Share the report" in r.text
    r = _save(recruiter, "Nope", [("My_Positions", "", "")])  # another user's private report
    assert r.status_code == 400 and "not a report you can use" in r.text
    assert _save(admin, "build", parts).status_code == 400
    assert _save(admin, "Empty", []).status_code == 400
    r = admin.post("/dashboards/build", data={"name": "No_Token", **_fields(parts), "op": "save"})
    assert r.status_code == 403 and admin.get("/dashboards/No_Token").status_code == 404
    r = _post(recruiter, {"name": "Mine_Only", "op": "delete"})
    assert r.status_code == 400 and admin.get("/dashboards/Mine_Only").status_code == 200
    r = _post(admin, {"name": "Mine_Only", "op": "delete"})
    assert r.status_code == 303 and admin.get("/dashboards/Mine_Only").status_code == 404
