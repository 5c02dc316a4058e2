"""A user who may read a record but not the object its lookup points to still gets the page: the lookup shows
the parent's id instead of its name, and nothing about the parent leaks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from keel.cli.asgi import build_app
from keel.records import save_many
from keel.security.package import PermissionSetSpec
from keel.services.security import assign_permission_set, deploy_permission_set, system_context
from keel.services.users import create_user
from tests.web.conftest import Org, login

SCREENER, SCREENER_PW = "screener@web.test", "a long screener passphrase"


@pytest.fixture(scope="module")
def screener(web_org: Org) -> Iterator[TestClient]:
    """Reads applications (and their two lookups) but neither positions nor candidates."""
    sysctx = system_context(web_org.ctx, "web test setup")
    with web_org.ctx.db.transaction() as conn:
        deploy_permission_set(sysctx, conn, PermissionSetSpec(
            "Applications_Only", "Applications only", False, (), {"Job_Application__c": ("read",)},
            {f"Job_Application__c.{n}": (True, False) for n in ("Position__c", "Candidate__c", "Stage__c")}))
    uid = create_user(sysctx, username=SCREENER, password=SCREENER_PW, last_name="Screener", email=SCREENER,
                      profile="Standard User")
    with web_org.ctx.db.transaction() as conn:
        assign_permission_set(sysctx, conn, uid, "Applications_Only")
    # Private sharing hides other users' applications: give the screener the first two.
    save_many(sysctx, "Job_Application__c", [{"Id": a, "OwnerId": uid} for a in web_org.applications[:2]])
    with TestClient(build_app(web_org.ctx)) as c:
        yield login(c, SCREENER, SCREENER_PW)


def test_record_page_shows_an_unreadable_parent_as_its_id(screener: TestClient, web_org: Org) -> None:
    app_id = web_org.applications[0]
    r = screener.get(f"/r/{app_id}")
    assert r.status_code == 200, r.text[:500]
    assert "Application 00" in r.text
    assert web_org.positions[0] in r.text  # the lookup, as an id
    assert "Position 000" not in r.text  # never the parent's name


def test_list_view_and_kanban_show_unreadable_parents_as_ids(screener: TestClient) -> None:
    listing = screener.get("/o/Job_Application__c")
    assert listing.status_code == 200, listing.text[:500]
    assert "Application 00" in listing.text and "Position 0" not in listing.text
    board = screener.get("/o/Job_Application__c/kanban")
    assert board.status_code == 200, board.text[:500]
    assert "Position 0" not in board.text
