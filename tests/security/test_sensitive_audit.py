"""Reads of fields marked ``sensitive`` are audited on every read surface, one entry per object and page.

Recruiting fixture: ``Candidate__c.SSN__c`` is sensitive and only the recruiter may read it. A test-local
``Dossier__c`` (a child of Candidate, with an external id and a tracked sensitive ``Medical__c``) covers child
subqueries, get-by-external-id and field history. Every expectation is written out here; the entries are read back
from ``keel_audit`` on a real database (SQLite, and PostgreSQL when KEEL_TEST_PG is set)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from keel.api.app import create_app
from keel.errors import KeelError
from keel.records import save_many
from keel.security import sessions
from keel.security.audit import audit_rows
from keel.security.package import parse_permission_set
from keel.services.bulk_worker import run_pending
from keel.services.export import export_csv
from keel.services.query import query, query_more
from keel.services.security import assign_permission_set, deploy_permission_set, read_history, system_context
from keel.storage import ids
from keel.storage import system as S
from tests.security.conftest import PASSWORD, Recruiting, deploy_objects

V = "59.0"
DOSSIER = {"object": "Dossier__c", "sharing": "public_read_write", "track_history": True,
           "name_field": {"type": "text"}, "fields": [
               {"name": "Candidate__c", "type": "lookup", "to": "Candidate__c", "relationship_name": "Candidate__r",
                "child_relationship_name": "Dossiers__r"},
               {"name": "Ref__c", "type": "text", "length": 20, "external_id": True, "unique": True},
               {"name": "Medical__c", "type": "text", "length": 80, "sensitive": True, "track_history": True},
               {"name": "Note__c", "type": "text", "length": 80, "track_history": True}]}


@pytest.fixture
def rec(recruiting: Recruiting, tmp_path: Path) -> Iterator[Recruiting]:
    """The recruiting world plus two dossiers of candidate 1 that the recruiter may read in full."""
    org = recruiting.org
    deploy_objects(org, [DOSSIER], tmp_path / "dossier")
    with org.db.transaction() as conn:
        deploy_permission_set(org, conn, parse_permission_set({
            "name": "Dossiers", "objects": {"Dossier__c": ["read", "create", "edit"]},
            "fields": {f"Dossier__c.{f}": ["edit"] for f in ("Candidate__c", "Ref__c", "Medical__c", "Note__c")}}))
        assign_permission_set(org, conn, recruiting.users["recruiter"], "Dossiers")
    made = save_many(recruiting.ctx("recruiter"), "Dossier__c", [
        {"Name": "D1", "Candidate__c": recruiting.records["cand1"], "Ref__c": "D-1", "Medical__c": "fit"},
        {"Name": "D2", "Candidate__c": recruiting.records["cand1"], "Ref__c": "D-2", "Medical__c": "unfit"}])
    recruiting.records["dos1"], recruiting.records["dos2"] = str(made[0].id), str(made[1].id)
    yield recruiting


def mark(rec: Recruiting) -> int:
    with rec.org.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(S.audit.c.id), 0))).scalar_one())


def entries(rec: Recruiting, since: int) -> list[dict[str, Any]]:
    """The ``sensitive_read`` entries written after ``since``, detail unpacked."""
    with rec.org.db.read() as conn:
        rows = [r for r in audit_rows(conn, action="sensitive_read") if int(str(r["id"])) > since]
    return [{"actor": r["actor_id"], "object": r["object"], "record_id": r["record_id"],
             **orjson.loads(str(r["detail"]))} for r in rows]


def pk(record_id: str) -> int:
    return ids.split(record_id)[1]


def one(rec: Recruiting, who: str, obj: str, fields: list[str], record_ids: list[str], surface: str = "soql",
        **extra: Any) -> dict[str, Any]:
    """The entry expected for one read of ``record_ids`` (all of them, so at most 100 here)."""
    out = {"actor": rec.pk(who), "object": obj, "record_id": pk(record_ids[0]) if len(record_ids) == 1 else None,
           "fields": fields, "count": len(record_ids), "ids": record_ids, "surface": surface}
    out.update(extra)
    return out


def test_query_selecting_a_sensitive_field_writes_one_entry(rec: Recruiting) -> None:
    m = mark(rec)
    page = query(rec.ctx("recruiter"), "SELECT Name, SSN__c FROM Candidate__c")
    assert [r["SSN__c"] for r in page["records"]] == ["123-45-6789"]
    assert entries(rec, m) == [one(rec, "recruiter", "Candidate__c", ["SSN__c"], [rec.records["cand1"]])]


@pytest.mark.parametrize("soql", [
    "SELECT Name, Email__c FROM Candidate__c",
    "SELECT Name FROM Candidate__c WHERE SSN__c != null",  # a filter returns no value
    "SELECT Name FROM Candidate__c ORDER BY SSN__c",
    "SELECT COUNT() FROM Candidate__c",
    "SELECT Name, Candidate__r.Name FROM Job_Application__c",
    "SELECT Name, (SELECT Name, Candidate__r.Email__c FROM Job_Applications__r) FROM Position__c",
    "SELECT Name, (SELECT Name, Note__c FROM Dossiers__r) FROM Candidate__c",
    "SELECT Email__c, COUNT(Id) FROM Candidate__c GROUP BY Email__c",
])
def test_queries_without_sensitive_fields_write_nothing(rec: Recruiting, soql: str) -> None:
    m = mark(rec)
    assert query(rec.ctx("recruiter"), soql)["totalSize"] >= 1
    assert entries(rec, m) == []


def test_users_who_cannot_read_the_field_write_nothing(rec: Recruiting) -> None:
    m = mark(rec)
    hm = rec.ctx("hm1")
    assert query(hm, "SELECT Name FROM Candidate__c")["totalSize"] == 1
    with pytest.raises(KeelError):
        query(hm, "SELECT Name, SSN__c FROM Candidate__c")  # the field does not exist for them
    assert query(hm, "SELECT Id FROM Job_Application__c WHERE Candidate__r.Name != null")["totalSize"] >= 1
    assert entries(rec, m) == []


def test_parent_paths_and_child_subqueries_name_the_owning_object(rec: Recruiting) -> None:
    r, rc = rec.records, rec.ctx("recruiter")
    m = mark(rec)
    # Two applications point at one candidate: one record's SSN was read, through the Candidate__r path.
    page = query(rc, "SELECT Name, Candidate__r.SSN__c FROM Job_Application__c")
    assert page["totalSize"] == 2
    assert entries(rec, m) == [one(rec, "recruiter", "Candidate__c", ["SSN__c"], [r["cand1"]],
                                   via=["Candidate__r"])]
    m = mark(rec)
    query(rc, "SELECT Name, (SELECT Name, Candidate__r.SSN__c FROM Job_Applications__r) FROM Position__c")
    assert entries(rec, m) == [one(rec, "recruiter", "Candidate__c", ["SSN__c"], [r["cand1"]],
                                   via=["Job_Applications__r.Candidate__r"])]
    m = mark(rec)
    query(rc, "SELECT Name, SSN__c, (SELECT Name, Medical__c FROM Dossiers__r ORDER BY Name) FROM Candidate__c")
    assert entries(rec, m) == [
        one(rec, "recruiter", "Candidate__c", ["SSN__c"], [r["cand1"]]),
        one(rec, "recruiter", "Dossier__c", ["Medical__c"], [r["dos1"], r["dos2"]], via=["Dossiers__r"])]
    m = mark(rec)
    query(rc, "SELECT Name, Candidate__r.SSN__c, Medical__c FROM Dossier__c ORDER BY Name")
    assert entries(rec, m) == [
        one(rec, "recruiter", "Candidate__c", ["SSN__c"], [r["cand1"]], via=["Candidate__r"]),
        one(rec, "recruiter", "Dossier__c", ["Medical__c"], [r["dos1"], r["dos2"]])]


def test_aggregates_of_a_sensitive_field_are_aggregate_reads(rec: Recruiting) -> None:
    rc = rec.ctx("recruiter")
    save_many(rc, "Candidate__c", [{"Name": "Sam Roe", "SSN__c": "987-65-4321"}])
    m = mark(rec)
    query(rc, "SELECT COUNT(SSN__c) n FROM Candidate__c")
    query(rc, "SELECT SSN__c, COUNT(Id) FROM Candidate__c GROUP BY SSN__c")
    query(rc, "SELECT MAX(Medical__c) FROM Dossier__c")
    base = {"actor": rec.pk("recruiter"), "record_id": None, "ids": [], "surface": "soql", "aggregate": True}
    assert entries(rec, m) == [
        {**base, "object": "Candidate__c", "fields": ["SSN__c"], "count": 1},
        {**base, "object": "Candidate__c", "fields": ["SSN__c"], "count": 2},  # two groups
        {**base, "object": "Dossier__c", "fields": ["Medical__c"], "count": 1}]


def test_one_entry_per_page_with_bounded_ids(rec: Recruiting) -> None:
    rc = rec.ctx("recruiter")
    made = save_many(rc, "Candidate__c", [{"Name": f"Bulk {i:03d}", "SSN__c": f"000-00-{i:04d}"} for i in range(250)])
    mine = [str(x.id) for x in made]
    m = mark(rec)
    page = query(rc, "SELECT Id, SSN__c FROM Candidate__c WHERE Name LIKE 'Bulk%' ORDER BY Name", batch_size=200)
    assert len(page["records"]) == 200 and not page["done"]
    got = entries(rec, m)
    assert got == [one(rec, "recruiter", "Candidate__c", ["SSN__c"], mine[:100]) | {"count": 200}]
    m = mark(rec)
    page = query_more(rc, page["nextRecordsUrl"].rsplit("/", 1)[-1])
    assert len(page["records"]) == 50
    assert entries(rec, m) == [one(rec, "recruiter", "Candidate__c", ["SSN__c"], mine[200:])]


def test_read_only_transactions_stay_read_only(rec: Recruiting, backend: str) -> None:
    """The entry is written after the read, in its own transaction: a read-only one never writes."""
    m = mark(rec)
    rc = rec.ctx("recruiter")
    with rec.org.db.read() as conn:
        conn.exec_driver_sql("SET TRANSACTION READ ONLY" if backend == "postgresql" else "PRAGMA query_only = ON")
        try:
            assert query(rc, "SELECT SSN__c FROM Candidate__c", conn=conn)["totalSize"] == 1
        finally:
            if backend == "sqlite":
                conn.exec_driver_sql("PRAGMA query_only = OFF")
    assert entries(rec, m) == [one(rec, "recruiter", "Candidate__c", ["SSN__c"], [rec.records["cand1"]])]
    m = mark(rec)
    with rec.org.db.transaction() as conn:  # inside a write transaction it is part of it
        query(rc, "SELECT SSN__c FROM Candidate__c", conn=conn)
        assert len(audit_rows(conn, action="sensitive_read")) > 0 and entries(rec, m) == []
    assert len(entries(rec, m)) == 1


def test_system_context_reads_are_audited_once_as_system_context(rec: Recruiting) -> None:
    m = mark(rec)
    query(system_context(rec.ctx("recruiter"), "nightly sync"), "SELECT SSN__c FROM Candidate__c")
    assert entries(rec, m) == []
    with rec.org.db.read() as conn:
        assert [r for r in audit_rows(conn, action="system_context") if int(str(r["id"])) > m]


def test_export_and_history(rec: Recruiting, tmp_path: Path) -> None:
    r, rc = rec.records, rec.ctx("recruiter")
    m = mark(rec)
    assert export_csv(rc, "Dossier__c", tmp_path / "d.csv") == 2
    assert export_csv(rc, "Dossier__c", tmp_path / "n.csv", fields=["Id", "Name", "Note__c"]) == 2
    assert entries(rec, m) == [one(rec, "recruiter", "Dossier__c", ["Medical__c"], [r["dos1"], r["dos2"]], "export")]
    save_many(rc, "Dossier__c", [{"Id": r["dos1"], "Medical__c": "fit again"}, {"Id": r["dos2"], "Note__c": "x"}])
    m = mark(rec)
    assert {h["Field"] for h in read_history(rc, "Dossier__c", r["dos1"])} == {"Medical__c"}
    assert {h["Field"] for h in read_history(rc, "Dossier__c", r["dos2"])} == {"Note__c"}
    assert entries(rec, m) == [one(rec, "recruiter", "Dossier__c", ["Medical__c"], [r["dos1"]], "history")]


def test_audit_entries_cannot_be_read_edited_or_deleted_by_users(rec: Recruiting) -> None:
    query(rec.ctx("recruiter"), "SELECT SSN__c FROM Candidate__c")
    with pytest.raises(KeelError):
        query(rec.ctx("recruiter"), "SELECT Id FROM keel_audit")
    for stmt in (sa.update(S.audit).values(detail="{}"), sa.delete(S.audit)):
        with pytest.raises(sa.exc.DatabaseError), rec.org.db.transaction() as conn:
            conn.execute(stmt)
    assert entries(rec, 0)


# -- the API surfaces ----------------------------------------------------------------------------------------

@pytest.fixture
def api(rec: Recruiting) -> Iterator[TestClient]:
    token = sessions.authenticate(rec.org, "rita@example.com", PASSWORD, ip="127.0.0.1", kind="api").token
    with TestClient(create_app(rec.org), base_url="https://testserver") as c:
        c.headers["Authorization"] = f"Bearer {token}"
        yield c


def test_rest_reads(rec: Recruiting, api: TestClient) -> None:
    r = rec.records
    base = f"/services/data/v{V}"
    cand = one(rec, "recruiter", "Candidate__c", ["SSN__c"], [r["cand1"]])
    calls: list[tuple[str, Any]] = [
        ("GET", (f"{base}/query", {"q": "SELECT Name, SSN__c FROM Candidate__c"})),
        ("GET", (f"{base}/queryAll", {"q": "SELECT Name, SSN__c FROM Candidate__c"})),
        ("GET", (f"{base}/sobjects/Candidate__c/{r['cand1']}", None)),
        ("GET", (f"{base}/sobjects/Candidate__c/{r['cand1']}", {"fields": "Name,SSN__c"})),
        ("POST", (f"{base}/composite/sobjects/Candidate__c", {"ids": [r["cand1"]], "fields": ["Name", "SSN__c"]})),
        ("GET", (f"{base}/search", {"q": "FIND {Alex} IN NAME FIELDS RETURNING Candidate__c(Id, SSN__c)"})),
    ]
    for method, (url, arg) in calls:
        m = mark(rec)
        resp = api.get(url, params=arg) if method == "GET" else api.post(url, json=arg)
        assert resp.status_code == 200, (url, resp.text)
        assert "123-45-6789" in resp.text, url
        expected = one(rec, "recruiter", "Candidate__c", ["SSN__c"], [r["cand1"]], "search") \
            if url.endswith("/search") else cand
        assert entries(rec, m) == [expected], url
    m = mark(rec)
    resp = api.get(f"{base}/sobjects/Dossier__c/Ref__c/D-2")
    assert resp.status_code == 200 and resp.json()["Medical__c"] == "unfit"
    assert entries(rec, m) == [one(rec, "recruiter", "Dossier__c", ["Medical__c"], [r["dos2"]])]
    # Reads that return no sensitive value write nothing.
    m = mark(rec)
    now = dt.datetime.now(dt.UTC)
    for url, params in [(f"{base}/query", {"q": "SELECT Name, Email__c FROM Candidate__c"}),
                        (f"{base}/sobjects/Candidate__c/{r['cand1']}", {"fields": "Name"}),
                        (f"{base}/search", {"q": "FIND {Alex} IN NAME FIELDS RETURNING Candidate__c(Id, Name)"}),
                        (f"{base}/sobjects/Candidate__c/updated", {
                            "start": (now - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "end": (now + dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")})]:
        resp = api.get(url, params=params)
        assert resp.status_code == 200, (url, resp.text)
    assert entries(rec, m) == []


def test_rest_query_more(rec: Recruiting, api: TestClient) -> None:
    made = save_many(rec.ctx("recruiter"), "Candidate__c", [{"Name": f"Page {i:03d}", "SSN__c": f"1-{i}"}
                                                            for i in range(230)])
    mine = [str(x.id) for x in made]
    base = f"/services/data/v{V}"
    m = mark(rec)
    page = api.get(f"{base}/query", params={"q": "SELECT SSN__c FROM Candidate__c WHERE Name LIKE 'Page%' "
                                                 "ORDER BY Name"}, headers={"Sforce-Query-Options": "batchSize=200"})
    assert page.status_code == 200 and len(page.json()["records"]) == 200
    nxt = api.get(page.json()["nextRecordsUrl"])
    assert nxt.status_code == 200 and len(nxt.json()["records"]) == 30
    got = entries(rec, m)
    assert [(e["count"], len(e["ids"])) for e in got] == [(200, 100), (30, 30)]
    assert got[1]["ids"] == mine[200:]


def _wait(api: TestClient, rec: Recruiting, url: str, key: str, done: str) -> Any:
    for _ in range(100):
        run_pending(rec.org)
        body = api.get(url).json()
        if body[key] in (done, "Failed", "JobComplete", "Completed"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"{url} did not finish")


def test_bulk_query_jobs(rec: Recruiting, api: TestClient) -> None:
    r = rec.records
    m = mark(rec)
    job = api.post(f"/services/data/v{V}/jobs/query", json={"operation": "query",
                                                            "query": "SELECT Name, SSN__c FROM Candidate__c"})
    assert job.status_code == 200, job.text
    info = _wait(api, rec, f"/services/data/v{V}/jobs/query/{job.json()['id']}", "state", "JobComplete")
    assert info["state"] == "JobComplete", info
    assert "123-45-6789" in api.get(f"/services/data/v{V}/jobs/query/{job.json()['id']}/results").text
    assert entries(rec, m) == [one(rec, "recruiter", "Candidate__c", ["SSN__c"], [r["cand1"]], "bulk_query")]
    # Bulk 1.0: a JSON query job and one batch.
    token = api.headers["Authorization"].split()[1]
    h = {"X-SFDC-Session": token}
    m = mark(rec)
    j1 = api.post(f"/services/async/{V}/job", json={"operation": "query", "object": "Dossier__c",
                                                    "contentType": "JSON"}, headers=h)
    assert j1.status_code in (200, 201), j1.text
    jid = j1.json()["id"]
    b = api.post(f"/services/async/{V}/job/{jid}/batch", content=b"SELECT Name, Medical__c FROM Dossier__c",
                 headers={**h, "Content-Type": "application/json"})
    assert b.status_code in (200, 201), b.text
    bid = b.json()["id"]
    info: Any = None
    for _ in range(100):
        run_pending(rec.org)
        info = api.get(f"/services/async/{V}/job/{jid}/batch/{bid}", headers=h).json()
        if info["state"] in ("Completed", "Failed"):
            break
        time.sleep(0.05)
    assert info is not None and info["state"] == "Completed", info
    got = entries(rec, m)
    assert got == [one(rec, "recruiter", "Dossier__c", ["Medical__c"], [r["dos1"], r["dos2"]], "bulk_query")]
