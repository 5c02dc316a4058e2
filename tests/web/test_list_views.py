"""List views users save: private to their owner or shared, run as whoever opens them; a shared view cannot be
used to filter on a field the viewer cannot read; only the owner deletes a view."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from .conftest import SECRET, csrf_of


def _save(c: TestClient, query: str, label: str, visibility: str) -> str:
    page = c.get(f"/o/Position__c?{query}")
    params = dict(re.findall(r'name="(q|ff|fo|fv|sort|dir|view)" value="([^"]*)"',
                             page.text.split("Save this list as a view")[1].split("</form>")[0]))
    r = c.post("/o/Position__c/views", data={**params, "csrf_token": csrf_of(page.text), "label": label,
                                             "visibility": visibility}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return str(r.headers["location"])


def test_private_view_is_its_owners(recruiter: TestClient, admin: TestClient) -> None:
    url = _save(recruiter, "ff=Status__c&fo=%3D&fv=Open&sort=Headcount__c&dir=desc", "My <open> roles", "private")
    page = recruiter.get(url)
    assert page.status_code == 200 and "My &lt;open&gt; roles (private)" in page.text
    names = re.findall(r'<a href="/r/[A-Za-z0-9]+">(Position \d+)</a>', page.text)
    assert names and all(int(n.split()[1]) % 2 == 1 for n in names)  # odd positions are Open
    assert "My &lt;open&gt; roles" not in admin.get("/o/Position__c").text
    assert "My &lt;open&gt; roles" not in admin.get(url).text  # another user's private view id is ignored
    view = url.split("view=")[1]
    r = admin.post("/o/Position__c/views/delete", data={"csrf_token": csrf_of(admin.get("/").text), "view": view})
    assert r.status_code == 403
    r = recruiter.post("/o/Position__c/views/delete", data={"csrf_token": csrf_of(page.text), "view": view},
                       follow_redirects=False)
    assert r.status_code == 303 and "My &lt;open&gt; roles" not in recruiter.get("/o/Position__c").text


def test_shared_view_runs_as_the_viewer_and_cannot_probe_hidden_fields(recruiter: TestClient,
                                                                        admin: TestClient) -> None:
    url = _save(admin, "ff=Department__c&fo=%3D&fv=Patrol", "Patrol", "shared")
    assert "Patrol (shared)" in recruiter.get("/o/Position__c").text
    assert recruiter.get(url).status_code == 200
    probe = _save(admin, f"ff=Secret_Notes__c&fo=contains&fv={SECRET}", "Secret probe", "shared")
    assert SECRET in admin.get(probe).text
    r = recruiter.get(probe)
    assert r.status_code == 400 and "cannot read" in r.text and SECRET not in r.text.replace(
        "Secret probe", "")
    count = recruiter.get(probe.replace("/o/Position__c?", "/o/Position__c/count?"))
    assert count.status_code == 400


def test_launcher_apps_come_from_the_app_packages(recruiter: TestClient) -> None:
    from keel.web.definitions import load_launcher

    apps = load_launcher()
    assert "Position__c" in apps["Recruiting"] and "Insurance_Certificate__c" in apps["Vendor Management"]
    home = recruiter.get("/").text
    recruiting = home.split("Recruiting", 1)[1]
    assert "/o/Position__c" in recruiting and "/o/Candidate__c" in recruiting
