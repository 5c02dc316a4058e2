"""Flows run on the web app's write paths: the record form (create and edit) and the kanban move, through the
routes the browser posts to, on the app ``keel up`` serves (``build_app``: security and automation wired).

The flow fires when an application enters the Interview stage: a before-save update scores it and an after-save
email alert is queued in the outbox in the same transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
import yaml
from starlette.testclient import TestClient

from keel.records import save_many
from keel.services.automation import deploy_automation
from keel.services.query import query
from keel.services.security import system_context
from keel.storage import system as S

from .conftest import Org, csrf_of

FLOW: dict[str, Any] = {
    "flow": "Interview_Panel", "object": "Job_Application__c", "event": "created_or_updated",
    "condition": "ISPICKVAL(Stage__c, 'Interview')", "only_when_changed": True,
    "before_save": {"set": {"Score__c": "77"}},
    "actions": [{"email": {"to": "panel@example.com", "subject": "Interview: {{ record.Name }}",
                           "body": "Stage {{ record.Stage__c }}"}}],
}


@pytest.fixture(scope="module", autouse=True)
def interview_flow(web_org: Org, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    root = tmp_path_factory.mktemp("web-flows")
    (root / "flows").mkdir()
    (root / "flows" / "Interview_Panel.yaml").write_text(yaml.safe_dump(FLOW))
    assert deploy_automation(web_org.ctx, root) == 1
    yield


def _emails(org: Org) -> list[str]:
    with org.ctx.db.read() as conn:
        rows = conn.execute(sa.select(S.outbox.c.payload).where(S.outbox.c.topic == "email")).scalars()
        return sorted(orjson.loads(p)["subject"] for p in rows)


def _new_application(org: Org, name: str) -> str:
    res = save_many(system_context(org.ctx, "test data"), "Job_Application__c", [
        {"Name": name, "Position__c": org.positions[0], "Candidate__c": org.candidates[0], "Stage__c": "Applied"}])
    return str(res[0].id)


def _stage_and_score(org: Org, rid: str) -> tuple[str, Any]:
    rec = query(org.ctx, f"SELECT Stage__c, Score__c FROM Job_Application__c WHERE Id = '{rid}'")["records"][0]
    return rec["Stage__c"], rec["Score__c"]


def test_record_form_create_runs_flows(admin: TestClient, web_org: Org) -> None:
    token = csrf_of(admin.get("/o/Job_Application__c/new").text)
    r = admin.post("/o/Job_Application__c/new", data={
        "Name": "Form Create", "Position__c": web_org.positions[1], "Candidate__c": web_org.candidates[1],
        "Stage__c": "Interview", "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    rid = r.headers["location"].rsplit("/", 1)[1]
    assert _stage_and_score(web_org, rid) == ("Interview", 77)
    assert "Interview: Form Create" in _emails(web_org)


def test_record_form_edit_runs_flows(admin: TestClient, web_org: Org) -> None:
    rid = _new_application(web_org, "Form Edit")
    page = admin.get(f"/r/{rid}/edit").text
    version = re.search(r'name="__version__" value="(\d+)"', page)
    assert version, "the edit form carries the record version"
    r = admin.post(f"/r/{rid}/edit", data={
        "Name": "Form Edit", "Position__c": web_org.positions[0], "Candidate__c": web_org.candidates[0],
        "Stage__c": "Interview", "__version__": version.group(1), "csrf_token": csrf_of(page)},
        follow_redirects=False)
    assert r.status_code == 303, r.text
    assert _stage_and_score(web_org, rid) == ("Interview", 77)
    assert "Interview: Form Edit" in _emails(web_org)


def test_kanban_move_runs_flows(admin: TestClient, web_org: Org) -> None:
    rid = _new_application(web_org, "Kanban Move")
    assert _stage_and_score(web_org, rid) == ("Applied", None)
    assert "Interview: Kanban Move" not in _emails(web_org)
    token = csrf_of(admin.get("/o/Job_Application__c/kanban").text)
    r = admin.post("/o/Job_Application__c/kanban/move", data={"id": rid, "field": "Stage__c", "value": "Interview",
                                                               "csrf_token": token})
    assert r.status_code == 200, r.text
    assert _stage_and_score(web_org, rid) == ("Interview", 77)
    assert _emails(web_org).count("Interview: Kanban Move") == 1
    # only when changed to meet the condition: moving within the lane again sends nothing more
    admin.post("/o/Job_Application__c/kanban/move", data={"id": rid, "field": "Stage__c", "value": "Interview",
                                                           "csrf_token": token})
    assert _emails(web_org).count("Interview: Kanban Move") == 1

