"""A user's profile, role and permission sets, and the role tree (add, rename, move), edited from setup: the
writes are records saved through the lifecycle, so the user's next request sees the change and a moved role's
closure is rebuilt in the same transaction."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from keel.cli.asgi import build_app
from keel.security.tables import role_closure
from keel.services.query import query
from keel.services.security import system_context
from keel.services.users import create_user
from keel.storage import ids

from .conftest import Org, csrf_of, login

PASSWORD = "a long access-test passphrase"


@pytest.fixture(scope="module")
def temp_user(web_org: Org) -> str:
    return create_user(system_context(web_org.ctx, "test user"), username="access@web.test", password=PASSWORD,
                       last_name="Access", email="access@web.test", profile="Standard User")


@pytest.fixture(scope="module")
def temp(web_org: Org, temp_user: str) -> Iterator[TestClient]:
    with TestClient(build_app(web_org.ctx)) as c:
        yield login(c, "access@web.test", PASSWORD)


def _ids(org: Org, soql: str) -> dict[str, str]:
    return {str(r["Name"]): str(r["Id"]) for r in query(system_context(org.ctx, "test"), soql)["records"]}


def test_profile_role_and_permission_sets_apply_on_the_next_request(admin: TestClient, temp: TestClient,
                                                                    temp_user: str, web_org: Org) -> None:
    url = f"/setup/users/{temp_user}"
    assert f'href="{url}"' in admin.get("/setup/users").text
    assert temp.get("/o/Position__c").status_code == 403
    page = admin.get(url)
    token = csrf_of(page.text)
    psets = _ids(web_org, "SELECT Id, Name FROM PermissionSet WHERE IsOwnedByProfile = false")
    r = admin.post(url, data={"csrf_token": token, "action": "assign",
                              "permission_set": psets["Recruiting_Limited"]}, follow_redirects=False)
    assert r.status_code == 303
    assert temp.get("/o/Position__c").status_code == 200  # the very next request
    again = admin.post(url, data={"csrf_token": token, "action": "assign",
                                  "permission_set": psets["Recruiting_Limited"]})
    assert again.status_code == 400 and "DUPLICATE_VALUE" in again.text
    held = query(system_context(web_org.ctx, "test"), "SELECT Id FROM PermissionSetAssignment "
                 f"WHERE AssigneeId = '{temp_user}'")["records"]
    assert len(held) == 1
    page = admin.get(url).text
    assert "Recruiting (limited)" in page and re.search(r'name="assignment" value="0Pa', page)
    r = admin.post(url, data={"csrf_token": token, "action": "remove", "assignment": held[0]["Id"]},
                   follow_redirects=False)
    assert r.status_code == 303
    assert temp.get("/o/Position__c").status_code == 403

    profiles = _ids(web_org, "SELECT Id, Name FROM Profile")
    sysctx = system_context(web_org.ctx, "test roles")
    role = ids.encode("00E", 0)  # not a role: refused next to the field
    bad = admin.post(url, data={"csrf_token": token, "action": "access", "profile": profiles["Standard User"],
                                "role": role})
    assert bad.status_code == 400 and 'id="e-role"' in bad.text
    from keel.services.security import create_role
    with web_org.ctx.db.transaction() as conn:
        role = create_role(sysctx, conn, "Access Testers")
    assert temp.get("/setup").status_code == 403
    r = admin.post(url, data={"csrf_token": token, "action": "access",
                              "profile": profiles["System Administrator"], "role": role}, follow_redirects=False)
    assert r.status_code == 303
    assert temp.get("/setup").status_code == 200
    saved = query(sysctx, f"SELECT ProfileId, UserRoleId FROM User WHERE Id = '{temp_user}'")["records"][0]
    assert (saved["ProfileId"], saved["UserRoleId"]) == (profiles["System Administrator"], role)
    admin.post(url, data={"csrf_token": token, "action": "access", "profile": profiles["Standard User"],
                          "role": ""})
    assert temp.get("/setup").status_code == 403


def _closure(org: Org, role: str) -> set[tuple[int, int]]:
    with org.ctx.db.read() as conn:
        return {(int(a), int(d)) for a, d in conn.execute(sa.select(role_closure.c.ancestor_id, role_closure.c.depth)
                                                          .where(role_closure.c.role_id == ids.decode(role, "00E")))}


def test_roles_add_rename_move(admin: TestClient, web_org: Org) -> None:
    page = admin.get("/setup/roles")
    token = csrf_of(page.text)

    def post(**data: str) -> str:
        r = admin.post("/setup/roles", data={"csrf_token": token, **data}, follow_redirects=False)
        assert r.status_code == 303, r.text
        return str(r.headers["location"])

    post(action="add", name="Director of Hiring")
    top = _ids(web_org, "SELECT Id, Name FROM UserRole")["Director of Hiring"]
    post(action="add", name="Hiring Lead", parent=top)
    post(action="add", name="Screener")
    roles = _ids(web_org, "SELECT Id, Name FROM UserRole")
    lead, screener = roles["Hiring Lead"], roles["Screener"]
    assert _closure(web_org, screener) == {(ids.decode(screener, "00E"), 0)}
    assert post(action="move", role=screener, parent=lead) == "/setup/roles?msg=moved"
    assert _closure(web_org, screener) == {(ids.decode(screener, "00E"), 0), (ids.decode(lead, "00E"), 1),
                                           (ids.decode(top, "00E"), 2)}
    post(action="rename", role=lead, name="Lead Recruiter")
    tree = admin.get("/setup/roles").text
    director = tree.index(">Director of Hiring<")
    assert director < tree.index(">Lead Recruiter<") < tree.index(">Screener<")
    assert "Hiring Lead" not in tree
    cycle = admin.post("/setup/roles", data={"csrf_token": token, "action": "move", "role": top, "parent": screener})
    assert cycle.status_code == 400 and "CIRCULAR_DEPENDENCY" in html.unescape(cycle.text)
    assert _closure(web_org, top) == {(ids.decode(top, "00E"), 0)}  # nothing changed
    blank = admin.post("/setup/roles", data={"csrf_token": token, "action": "add", "name": " "})
    assert blank.status_code == 400 and 'id="e-add-name"' in blank.text
    post(action="move", role=screener, parent="")
    assert _closure(web_org, screener) == {(ids.decode(screener, "00E"), 0)}


@pytest.mark.parametrize("path", ["/setup/roles", "/setup/users/{user}"])
def test_people_setup_is_for_administrators(recruiter: TestClient, temp_user: str, web_org: Org,
                                            path: str) -> None:
    url = path.format(user=temp_user)
    assert recruiter.get(url).status_code == 403
    token = csrf_of(recruiter.get("/o/Position__c").text)
    profiles = _ids(web_org, "SELECT Id, Name FROM Profile")
    r = recruiter.post(url, data={"csrf_token": token, "action": "add" if "roles" in url else "access",
                                  "name": "Sneaky", "profile": profiles["System Administrator"]})
    assert r.status_code == 403
    assert "Sneaky" not in _ids(web_org, "SELECT Id, Name FROM UserRole")
    prof = query(system_context(web_org.ctx, "t"), f"SELECT Profile.Name FROM User WHERE Id = '{temp_user}'")
    assert prof["records"][0]["Profile"]["Name"] == "Standard User"
