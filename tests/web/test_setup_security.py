"""Setup screens for sharing rules and connected apps, through HTTP: a rule made in the screen changes what a user
of the target role sees through SOQL (and deleting it takes that away again); a connected app made in the screen
signs in at ``/services/oauth2/token``, shows its secret once, and a rotated secret or a deactivated app stops
working. Only administrators may use either screen."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient

from keel.records import save_many
from keel.services.query import query
from keel.services.security import create_role, system_context, user_context
from keel.services.users import create_user

from .conftest import ADMIN, Org, csrf_of


@dataclass
class World:
    viewer: str  # a user in the target role
    east: str  # the owners' role
    west: str  # the viewer's role
    account: str  # owned by a member of East


@pytest.fixture(scope="module")
def world(web_org: Org) -> World:
    sysctx = system_context(web_org.ctx, "sharing screen test")
    with web_org.ctx.db.transaction() as conn:
        east = create_role(sysctx, conn, "Sales East")
        west = create_role(sysctx, conn, "Sales West")
    owner = create_user(sysctx, username="east@web.test", password=None, last_name="East", email="east@web.test",
                        role="Sales East")
    viewer = create_user(sysctx, username="west@web.test", password=None, last_name="West", email="west@web.test",
                         role="Sales West")
    acc = save_many(sysctx, "Account", [{"Name": "East Corp", "OwnerId": owner},
                                        {"Name": "Criteria Corp", "OwnerId": owner}])
    return World(viewer, east, west, str(acc[0].id))


def _sees(org: Org, user: str, name: str) -> bool:
    rows = query(user_context(org.ctx, user), f"SELECT Id FROM Account WHERE Name = '{name}'")["records"]
    return len(rows) == 1


def _rule_id(html: str, name: str) -> str:
    m = re.search(rf'aria-label="Delete sharing rule {re.escape(name)}"', html)
    assert m, f"rule {name} is not listed"
    ids = re.findall(r'name="rule" value="(02S[A-Za-z0-9]+)"', html[:m.start()])
    return ids[-1]


def test_owner_rule_grants_and_delete_revokes(admin: TestClient, web_org: Org, world: World) -> None:
    page = admin.get("/setup/sharing")
    assert page.status_code == 200 and "Organization-wide defaults" in page.text
    assert "<td>Account</td><td>Account</td><td>Private</td>" in page.text
    assert f'value="{world.east}:sub"' in page.text and f'value="{world.west}"' in page.text
    assert not _sees(web_org, world.viewer, "East Corp")
    form = {"csrf_token": csrf_of(page.text), "action": "create", "object": "Account", "name": "East to West",
            "rule_type": "Owner", "source": world.east, "target": world.west, "access": "Read"}
    assert admin.post("/setup/sharing", data={**form, "csrf_token": "x"}).status_code == 403
    r = admin.post("/setup/sharing", data=form, follow_redirects=False)
    assert r.status_code == 303
    assert _sees(web_org, world.viewer, "East Corp")
    assert _sees(web_org, world.viewer, "Criteria Corp")  # same owner: the rule covers it too
    page = admin.get(r.headers["location"])
    assert "Sharing rule created" in page.text and "Owned by Role: Sales East" in page.text
    assert "Role: Sales West" in page.text and "Read Only" in page.text
    r = admin.post("/setup/sharing", data={"csrf_token": form["csrf_token"], "action": "delete",
                                           "rule": _rule_id(page.text, "East to West")}, follow_redirects=False)
    assert r.status_code == 303
    assert not _sees(web_org, world.viewer, "East Corp")
    assert "East to West" not in admin.get("/setup/sharing").text


def test_criteria_rule_and_bad_input(admin: TestClient, web_org: Org, world: World) -> None:
    page = admin.get("/setup/sharing")
    base = {"csrf_token": csrf_of(page.text), "action": "create", "object": "Account", "name": "Criteria",
            "rule_type": "Criteria", "field": "Name", "operator": "equals", "value": "Criteria Corp",
            "target": f"{world.west}", "access": "Edit"}
    bad = admin.post("/setup/sharing", data={**base, "field": "NoSuchField"})
    assert bad.status_code == 400 and "no field by that name" in bad.text
    bad = admin.post("/setup/sharing", data={**base, "target": "00Gnotagroup"})
    assert bad.status_code == 400 and "role or group" in bad.text
    bad = admin.post("/setup/sharing", data={**base, "object": "Position__c"})  # public read/write
    assert bad.status_code == 400 and "only apply to private" in bad.text
    assert 'aria-label="Delete sharing rule Criteria"' not in admin.get("/setup/sharing").text
    assert admin.post("/setup/sharing", data=base, follow_redirects=False).status_code == 303
    assert _sees(web_org, world.viewer, "Criteria Corp") and not _sees(web_org, world.viewer, "East Corp")
    page = admin.get("/setup/sharing")
    assert "Name equals Criteria Corp" in page.text and "Read/Write" in page.text
    admin.post("/setup/sharing", data={"csrf_token": base["csrf_token"], "action": "delete",
                                       "rule": _rule_id(page.text, "Criteria")})
    assert not _sees(web_org, world.viewer, "Criteria Corp")


@pytest.mark.parametrize("path", ["/setup/sharing", "/setup/connected-apps"])
def test_non_admin_is_refused(recruiter: TestClient, path: str) -> None:
    assert recruiter.get(path).status_code == 403
    csrf = csrf_of(recruiter.get("/").text)
    r = recruiter.post(path, data={"csrf_token": csrf, "action": "create", "name": "Sneaky", "object": "Account"})
    assert r.status_code == 403


def _token(client: TestClient, client_id: str, secret: str) -> tuple[int, dict[str, str]]:
    r = client.post("/services/oauth2/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                    "client_secret": secret})
    return r.status_code, r.json()


def test_connected_app_secret_once_rotate_deactivate(admin: TestClient, web_org: Org) -> None:
    page = admin.get("/setup/connected-apps")
    assert "No connected apps" in page.text
    admin_id = re.search(rf'<option value="(005[A-Za-z0-9]+)">{re.escape(ADMIN)}</option>', page.text)
    assert admin_id
    csrf = csrf_of(page.text)
    made = admin.post("/setup/connected-apps", data={"csrf_token": csrf, "action": "create",
                                                     "name": "Warehouse <sync>", "run_as": admin_id.group(1)})
    assert made.status_code == 200 and "will not be shown again" in made.text and "Warehouse &lt;sync&gt;" in made.text
    m_id, m_secret = (re.search(rf'id="{k}">([^<]+)</code>', made.text) for k in ("client-id", "client-secret"))
    assert m_id and m_secret
    client_id, secret = m_id.group(1), m_secret.group(1)
    listing = admin.get("/setup/connected-apps").text
    assert client_id in listing and secret not in listing and "will not be shown again" not in listing

    status, body = _token(admin, client_id, secret)
    assert status == 200 and body["access_token"]
    old_token = body["access_token"]
    me = admin.get("/services/oauth2/userinfo", headers={"Authorization": f"Bearer {old_token}"})
    assert me.status_code == 200
    assert _token(admin, client_id, "0" * 64)[1]["error"] == "invalid_client"

    rotated = admin.post("/setup/connected-apps", data={"csrf_token": csrf, "action": "rotate",
                                                        "client_id": client_id})
    m_new = re.search(r'id="client-secret">([^<]+)</code>', rotated.text)
    assert rotated.status_code == 200 and m_new and m_new.group(1) != secret
    assert _token(admin, client_id, secret)[1]["error"] == "invalid_client"
    status, body = _token(admin, client_id, m_new.group(1))
    assert status == 200

    r = admin.post("/setup/connected-apps", data={"csrf_token": csrf, "action": "deactivate",
                                                  "client_id": client_id}, follow_redirects=False)
    assert r.status_code == 303
    page = admin.get(r.headers["location"])
    assert "Connected app deactivated. 2 tokens revoked." in page.text and "Inactive" in page.text
    assert _token(admin, client_id, m_new.group(1))[1]["error"] == "invalid_client_id"
    me = admin.get("/services/oauth2/userinfo", headers={"Authorization": f"Bearer {old_token}"})
    assert me.status_code == 401

    r = admin.post("/setup/connected-apps", data={"csrf_token": csrf, "action": "delete", "client_id": client_id},
                   follow_redirects=False)
    assert r.status_code == 303 and client_id not in admin.get("/setup/connected-apps").text
    audit = admin.get("/setup/audit?action=connected_app_secret_rotated").text
    assert client_id in audit
