"""Setup screens for administrators: users (create, deactivate, unlock, end sessions), the role tree, profiles
and permission sets, flows and approval processes (activate / deactivate), dead letters, the audit log. Each
action goes through the service functions, which check the administrator's permission again."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from keel.cli.asgi import build_app
from keel.services.automation import deploy_automation, wire_automation
from keel.services.security import create_role, system_context

from .conftest import Org, csrf_of, login

APPROVALS = Path(__file__).parent / "fixtures" / "approvals"
PAGES = ["/setup/users", "/setup/roles", "/setup/profiles", "/setup/flows", "/setup/outbox", "/setup/audit"]


@pytest.mark.parametrize("path", PAGES)
def test_setup_screens_are_for_administrators(recruiter: TestClient, admin: TestClient, path: str) -> None:
    assert recruiter.get(path).status_code == 403
    page = admin.get(path)
    assert page.status_code == 200 and 'aria-label="Setup"' in page.text


def test_users_create_end_sessions_deactivate(admin: TestClient, web_org: Org) -> None:
    page = admin.get("/setup/users")
    assert "recruiter@web.test" in page.text
    form = {"csrf_token": csrf_of(page.text), "action": "create", "username": "temp@web.test",
            "email": "temp@web.test", "last_name": "Temp <b>", "password": "a long temporary passphrase",
            "profile": "Standard User"}
    assert admin.post("/setup/users", data={**form, "csrf_token": ""}).status_code == 403
    r = admin.post("/setup/users", data=form, follow_redirects=False)
    assert r.status_code == 303
    page = admin.get("/setup/users")
    assert "temp@web.test" in page.text and "Temp &lt;b&gt;" in page.text
    uid = re.search(r'<td>temp@web\.test</td>.*?name="user" value="(005[A-Za-z0-9]+)"', page.text, re.S)
    assert uid
    with TestClient(build_app(web_org.ctx, background=False)) as temp:
        login(temp, "temp@web.test", "a long temporary passphrase")
        assert temp.get("/", follow_redirects=False).status_code == 200
        r = admin.post("/setup/users", data={"csrf_token": form["csrf_token"], "action": "kill",
                                             "user": uid.group(1)}, follow_redirects=False)
        assert r.status_code == 303
        assert temp.get("/", follow_redirects=False).status_code == 303  # signed out at once
        assert admin.post("/setup/users", data={"csrf_token": form["csrf_token"], "action": "unlock",
                                                "user": uid.group(1)}).status_code == 200
        r = admin.post("/setup/users", data={"csrf_token": form["csrf_token"], "action": "deactivate",
                                             "user": uid.group(1)}, follow_redirects=False)
        assert r.status_code == 303
        temp.get("/login")
        r = temp.post("/login", data={"username": "temp@web.test", "password": "a long temporary passphrase",
                                      "csrf_token": temp.cookies.get("keel_lcsrf")}, follow_redirects=False)
        assert r.status_code != 303


def test_role_tree(admin: TestClient, web_org: Org) -> None:
    sysctx = system_context(web_org.ctx, "test roles")
    with web_org.ctx.db.transaction() as conn:
        create_role(sysctx, conn, "Chief Recruiter")
        create_role(sysctx, conn, "Recruiting Lead", parent="Chief Recruiter")
    page = admin.get("/setup/roles").text
    assert 'role="tree"' in page
    chief = page.index("Chief Recruiter")
    assert page.index('<ul role="group">', chief) < page.index("Recruiting Lead")


def test_profiles_and_permission_sets_listed(admin: TestClient) -> None:
    page = admin.get("/setup/profiles").text
    assert "Recruiting (limited)" in page and "Recruiting_Limited" in page and "System Administrator" in page


def test_flows_activate_and_deactivate(admin: TestClient, web_org: Org) -> None:
    deploy_automation(wire_automation(web_org.ctx), APPROVALS)
    rid = web_org.positions[30]
    assert "Submit for approval" in admin.get(f"/r/{rid}").text
    page = admin.get("/setup/flows")
    assert "Position_Approval" in page.text and "Active" in page.text
    r = admin.post("/setup/flows", data={"csrf_token": csrf_of(page.text), "kind": "approval",
                                         "name": "Position_Approval", "active": "0"}, follow_redirects=False)
    assert r.status_code == 303 and "Inactive" in admin.get("/setup/flows").text
    assert "Submit for approval" not in admin.get(f"/r/{rid}").text
    admin.post("/setup/flows", data={"csrf_token": csrf_of(page.text), "kind": "approval",
                                     "name": "Position_Approval", "active": "1"})
    assert "Submit for approval" in admin.get(f"/r/{rid}").text


def test_outbox_and_audit_log(admin: TestClient, web_org: Org) -> None:
    page = admin.get("/setup/outbox")
    assert "No dead letters" in page.text
    r = admin.post("/setup/outbox", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 200 and "0 messages queued again" in r.text
    admin.get(f"/r/{web_org.positions[1]}")  # a record page uses the audited system context
    log = admin.get("/setup/audit?action=system_context")
    assert log.status_code == 200 and "record page" in log.text and "<td>login" not in log.text
