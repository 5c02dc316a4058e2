"""Permission sets, a profile's own set and permission set groups, edited from setup: the grid's differences are
saved as ObjectPermissions / FieldPermissions records in one transaction, inconsistent combinations are refused
with the rule they break, and an assigned user's very next request runs with the new rights."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from keel.cli.asgi import build_app
from keel.records import save_many
from keel.services.query import query
from keel.services.security import system_context, user_context
from keel.services.users import create_user

from .conftest import Org, csrf_of, login

PASSWORD = "a long permission-test passphrase"


@pytest.fixture(scope="module")
def reader_id(web_org: Org) -> str:
    return create_user(system_context(web_org.ctx, "test user"), username="perms@web.test", password=PASSWORD,
                       last_name="Perms", email="perms@web.test", profile="Standard User")


@pytest.fixture(scope="module")
def reader(web_org: Org, reader_id: str) -> Iterator[TestClient]:
    with TestClient(build_app(web_org.ctx)) as c:
        yield login(c, "perms@web.test", PASSWORD)


def _rows(org: Org, soql: str) -> list[dict[str, object]]:
    return list(query(system_context(org.ctx, "test"), soql)["records"])


def _create_pset(admin: TestClient, token: str, label: str, name: str) -> str:
    r = admin.post("/setup/profiles", data={"csrf_token": token, "action": "create", "label": label, "name": name},
                   follow_redirects=False)
    assert r.status_code == 303, r.text
    m = re.match(r"/setup/permission-sets/(0PS\w+)\?msg=created$", r.headers["location"])
    assert m
    return m.group(1)


def test_grant_and_revoke_apply_on_the_next_request(admin: TestClient, reader: TestClient, reader_id: str,
                                                   web_org: Org) -> None:
    token = csrf_of(admin.get("/setup/profiles").text)
    pid = _create_pset(admin, token, "Position readers", "Position_Readers")
    dup = admin.post("/setup/profiles", data={"csrf_token": token, "action": "create", "label": "Again",
                                              "name": "position_readers"})
    assert dup.status_code == 400 and 'id="e-name"' in dup.text and "DUPLICATE_DEVELOPER_NAME" in dup.text
    bad = admin.post("/setup/profiles", data={"csrf_token": token, "action": "create", "label": "Bad",
                                              "name": "Bad__Name"})
    assert bad.status_code == 400 and "INVALID_API_NAME" in bad.text
    assigned = admin.post(f"/setup/users/{reader_id}", data={"csrf_token": token, "action": "assign",
                                                             "permission_set": pid}, follow_redirects=False)
    assert assigned.status_code == 303
    assert reader.get("/o/Position__c").status_code == 403
    url = f"/setup/permission-sets/{pid}"
    assert 'name="o.Position__c.Read"' in admin.get(url).text

    # Delete without Edit, Modify All without View All: refused, every broken rule named, nothing written
    bad = admin.post(url, data={"csrf_token": token, "o.Position__c.Read": "1", "o.Position__c.Delete": "1",
                                "o.Candidate__c.Read": "1", "o.Candidate__c.ModifyAllRecords": "1"})
    text = html.unescape(bad.text)
    assert bad.status_code == 400 and "INVALID_PERMISSION_DEPENDENCY" in text
    assert "Delete requires Edit" in text and "Modify All requires Edit and Delete and View All" in text
    assert re.search(r'name="o.Position__c.Delete" value="1" [^>]*checked', bad.text)  # the admin's input kept
    assert not _rows(web_org, f"SELECT Id FROM ObjectPermissions WHERE ParentId = '{pid}'")
    assert reader.get("/o/Position__c").status_code == 403

    r = admin.post(url, data={"csrf_token": token, "o.Position__c.Read": "1"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("msg=saved")
    page = reader.get("/o/Position__c")  # the very next request
    assert page.status_code == 200 and "Position 00" in page.text
    saved = _rows(web_org, "SELECT SobjectType, PermissionsRead, PermissionsEdit FROM ObjectPermissions "
                           f"WHERE ParentId = '{pid}'")
    assert [(s["SobjectType"], s["PermissionsRead"], s["PermissionsEdit"]) for s in saved] == [
        ("Position__c", True, False)]
    assert reader.get("/o/Candidate__c").status_code == 403

    # fields: Edit without Read refused; Read granted shows on the user's next request
    furl = f"{url}/o/Position__c"
    assert not user_context(web_org.ctx, reader_id).actor.access.field_readable("Position__c", "Max_Pay__c")
    bad = admin.post(furl, data={"csrf_token": token, "f.Max_Pay__c.Edit": "1"})
    assert bad.status_code == 400 and "Max Pay: Edit requires Read." in html.unescape(bad.text)
    assert not _rows(web_org, f"SELECT Id FROM FieldPermissions WHERE ParentId = '{pid}'")
    r = admin.post(furl, data={"csrf_token": token, "f.Max_Pay__c.Read": "1"}, follow_redirects=False)
    assert r.status_code == 303
    access = user_context(web_org.ctx, reader_id).actor.access
    assert access.field_readable("Position__c", "Max_Pay__c")
    assert not access.field_editable("Position__c", "Max_Pay__c")

    r = admin.post(url, data={"csrf_token": token}, follow_redirects=False)  # untick everything: revoke
    assert r.status_code == 303
    assert reader.get("/o/Position__c").status_code == 403
    assert not _rows(web_org, f"SELECT Id FROM ObjectPermissions WHERE ParentId = '{pid}'")

    # an assigned set cannot be deleted; once unassigned it goes with its permission rows
    refused = admin.post("/setup/profiles", data={"csrf_token": token, "action": "delete", "pset": pid})
    assert refused.status_code == 400 and "DELETE_FAILED" in refused.text
    held = _rows(web_org, f"SELECT Id FROM PermissionSetAssignment WHERE PermissionSetId = '{pid}'")
    admin.post(f"/setup/users/{reader_id}", data={"csrf_token": token, "action": "remove",
                                                  "assignment": held[0]["Id"]})
    r = admin.post("/setup/profiles", data={"csrf_token": token, "action": "delete", "pset": pid},
                   follow_redirects=False)
    assert r.status_code == 303
    assert not _rows(web_org, f"SELECT Id FROM PermissionSet WHERE Id = '{pid}'")
    assert not _rows(web_org, f"SELECT Id FROM FieldPermissions WHERE ParentId = '{pid}'")


def test_profile_permission_set_is_editable(admin: TestClient, reader: TestClient, web_org: Org) -> None:
    page = admin.get("/setup/profiles").text
    own = _rows(web_org, "SELECT Id FROM PermissionSet WHERE Profile.Name = 'Standard User'")[0]["Id"]
    assert f'href="/setup/permission-sets/{own}"' in page
    url = f"/setup/permission-sets/{own}"
    grid = admin.get(url).text
    keep = {m: "1" for m in re.findall(r'name="(o\.[\w.]+)" value="1" [^>]*checked', grid)}
    assert keep  # the standard profile grants the CRM objects
    token = csrf_of(grid)
    r = admin.post(url, data={"csrf_token": token, **keep, "o.Candidate__c.Read": "1"}, follow_redirects=False)
    assert r.status_code == 303
    assert reader.get("/o/Candidate__c").status_code == 200
    admin.post(url, data={"csrf_token": token, **keep})
    assert reader.get("/o/Candidate__c").status_code == 403


def test_permission_set_groups(admin: TestClient, reader: TestClient, reader_id: str, web_org: Org) -> None:
    token = csrf_of(admin.get("/setup/profiles").text)
    pid = _create_pset(admin, token, "Candidate readers", "Candidate_Readers")
    admin.post(f"/setup/permission-sets/{pid}", data={"csrf_token": token, "o.Candidate__c.Read": "1"})

    def post(**data: str) -> None:
        r = admin.post("/setup/permission-set-groups", data={"csrf_token": token, **data}, follow_redirects=False)
        assert r.status_code == 303, r.text

    post(action="create", label="Screeners", name="Screeners")
    gid = str(_rows(web_org, "SELECT Id FROM PermissionSetGroup WHERE DeveloperName = 'Screeners'")[0]["Id"])
    save_many(system_context(web_org.ctx, "test"), "PermissionSetAssignment",
              [{"AssigneeId": reader_id, "PermissionSetGroupId": gid}])
    assert reader.get("/o/Candidate__c").status_code == 403  # an empty group grants nothing
    post(action="add", group=gid, permission_set=pid)
    assert reader.get("/o/Candidate__c").status_code == 200
    again = admin.post("/setup/permission-set-groups", data={"csrf_token": token, "action": "add", "group": gid,
                                                             "permission_set": pid})
    assert again.status_code == 400 and "DUPLICATE_VALUE" in again.text
    assert "Candidate readers" in admin.get("/setup/permission-set-groups").text
    comp = _rows(web_org, f"SELECT Id FROM PermissionSetGroupComponent WHERE PermissionSetGroupId = '{gid}'")
    post(action="remove", group=gid, component=str(comp[0]["Id"]))
    assert reader.get("/o/Candidate__c").status_code == 403


def _routes(org: Org) -> list[str]:
    pid = _rows(org, "SELECT Id FROM PermissionSet WHERE Name = 'Recruiting_Limited'")[0]["Id"]
    return ["/setup/profiles", f"/setup/permission-sets/{pid}", f"/setup/permission-sets/{pid}/o/Position__c",
            "/setup/permission-set-groups"]


def test_administrators_only_and_csrf(admin: TestClient, recruiter: TestClient, web_org: Org) -> None:
    token = csrf_of(recruiter.get("/o/Position__c").text)
    before = _rows(web_org, "SELECT Id, PermissionsDelete FROM ObjectPermissions WHERE "
                            "Parent.Name = 'Recruiting_Limited' ORDER BY Id")
    data = {"action": "create", "label": "Sneaky", "name": "Sneaky", "o.Position__c.Read": "1",
            "o.Position__c.Edit": "1", "f.Max_Pay__c.Read": "1"}
    for url in _routes(web_org):
        assert recruiter.get(url).status_code == 403, url
        assert recruiter.post(url, data={"csrf_token": token, **data}).status_code == 403, url
        assert admin.get(url).status_code == 200, url
        assert admin.post(url, data=data).status_code == 403, url  # no CSRF token
        assert admin.post(url, data={**data, "csrf_token": "0" * 64}).status_code == 403, url
    assert not _rows(web_org, "SELECT Id FROM PermissionSet WHERE Name = 'Sneaky'")
    assert not _rows(web_org, "SELECT Id FROM PermissionSetGroup WHERE Name = 'Sneaky'")
    assert _rows(web_org, "SELECT Id, PermissionsDelete FROM ObjectPermissions WHERE "
                          "Parent.Name = 'Recruiting_Limited' ORDER BY Id") == before
