"""The web app's read surfaces audit sensitive fields they show: list views, CSV export, reports, the record page
and its field history. ``Candidate__c.SSN__c`` is sensitive; the administrator reads it, the recruiter cannot."""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from starlette.testclient import TestClient

from keel.records import save_many
from keel.security import sessions
from keel.security.audit import audit_rows
from keel.services.security import system_context
from keel.storage import system as S
from tests.web.conftest import ADMIN, SECRET, Org


def _mark(org: Org) -> int:
    with org.ctx.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(S.audit.c.id), 0))).scalar_one())


def _entries(org: Org, since: int) -> list[dict[str, Any]]:
    with org.ctx.db.read() as conn:
        rows = [r for r in audit_rows(conn, action="sensitive_read") if int(str(r["id"])) > since]
    return [{"actor": r["actor_id"], "object": r["object"], **orjson.loads(str(r["detail"]))} for r in rows]


def _admin_pk(org: Org) -> int:
    with org.ctx.db.read() as conn:
        found = sessions._find_user(conn, org.ctx, ADMIN)
    assert found is not None
    return int(found[0])


def _read(org: Org, surface: str, record_ids: list[str], actor: int) -> dict[str, Any]:
    return {"actor": actor, "object": "Candidate__c", "fields": ["SSN__c"], "count": len(record_ids),
            "ids": record_ids, "surface": surface}


def test_list_view_export_and_report(web_org: Org, admin: TestClient, recruiter: TestClient) -> None:
    me, cands = _admin_pk(web_org), web_org.candidates
    m = _mark(web_org)
    page = admin.get("/o/Candidate__c", params={"view": "all"})
    assert page.status_code == 200 and f"{SECRET}-0" in page.text
    assert _entries(web_org, m) == [_read(web_org, "list_view", cands, me)]
    m = _mark(web_org)
    csv = admin.get("/o/Candidate__c/export.csv", params={"view": "all"})
    assert csv.status_code == 200 and f"{SECRET}-5" in csv.text
    assert _entries(web_org, m) == [_read(web_org, "export", cands, me)]
    m = _mark(web_org)
    rep = admin.get("/reports", params={"obj": "Candidate__c", "run": "1", "type": "tabular", "cols": "Name,SSN__c"})
    assert rep.status_code == 200 and f"{SECRET}-3" in rep.text
    assert _entries(web_org, m) == [_read(web_org, "report", cands, me)]
    # Without a sensitive column, and for a user who cannot read the field, nothing is written.
    m = _mark(web_org)
    rep = admin.get("/reports", params={"obj": "Candidate__c", "run": "1", "type": "tabular", "cols": "Name,Email__c"})
    assert rep.status_code == 200 and SECRET not in rep.text
    for path in ("/o/Candidate__c", "/o/Candidate__c/export.csv"):
        r = recruiter.get(path, params={"view": "all"})
        assert r.status_code == 200 and SECRET not in r.text
    assert _entries(web_org, m) == []


def test_record_page_and_history(web_org: Org, admin: TestClient, recruiter: TestClient) -> None:
    me, cand = _admin_pk(web_org), web_org.candidates[2]
    save_many(system_context(web_org.ctx, "test"), "Candidate__c", [{"Id": cand, "SSN__c": f"{SECRET}-new"}])
    m = _mark(web_org)
    page = admin.get(f"/r/{cand}")
    assert page.status_code == 200 and f"{SECRET}-new" in page.text and f"{SECRET}-2" in page.text  # history
    got = _entries(web_org, m)
    assert sorted(got, key=lambda e: str(e["surface"])) == [_read(web_org, "history", [cand], me),
                                                            _read(web_org, "record_page", [cand], me)]
    m = _mark(web_org)
    r = recruiter.get(f"/r/{cand}")
    assert r.status_code == 200 and SECRET not in r.text
    assert _entries(web_org, m) == []


def test_only_administrators_see_the_audit_log(web_org: Org, admin: TestClient, recruiter: TestClient) -> None:
    admin.get("/o/Candidate__c", params={"view": "all"})
    assert recruiter.get("/setup/audit").status_code == 403
    page = admin.get("/setup/audit", params={"action": "sensitive_read"})
    assert page.status_code == 200 and "SSN__c" in page.text
