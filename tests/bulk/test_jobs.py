"""Jobs around the API: a job is a ``BulkJob`` record users query in SOQL with ordinary sharing, and the retention
sweep expires results and idle jobs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from helpers import parse_csv, run_ingest, to_csv, wait_job
from simple_salesforce.login import SalesforceLogin

from conftest import Live, V
from keel.security.package import PermissionSetSpec
from keel.services import bulk as B
from keel.services import bulk_tables as T
from keel.services.security import assign_permission_set, deploy_permission_set, system_context
from keel.services.users import create_user
from keel.storage import ids

PW = "a bulk user passphrase 42"
ROWS = [{"Name": "job row 1", "Category__c": "x"}, {"Name": "job row 2", "Category__c": ""},
        {"Name": "job row 3", "Category__c": "y"}]  # the second misses a required field
JOB_FIELDS = ("State", "SObjectType", "Operation", "NumberRecordsProcessed", "NumberRecordsFailed")


@pytest.fixture(scope="module")
def people(live: Live) -> dict[str, str]:
    """ann and bob may use the API on Item__c and read BulkJob records; carol may also view all of them."""
    sysctx = system_context(live.ctx, "bulk jobs test setup")
    fields = {f"BulkJob.{f}": (True, False) for f in JOB_FIELDS}
    items = {f"Item__c.{f}": (True, True) for f in ("Category__c",)}
    with live.ctx.db.transaction() as conn:
        for name, job_actions in (("Bulk_Users", ("read",)), ("Bulk_Auditors", ("read", "view_all"))):
            deploy_permission_set(sysctx, conn, PermissionSetSpec(
                name, name.replace("_", " "), False, ("ApiEnabled",),
                {"Item__c": ("read", "create"), "BulkJob": job_actions}, {**fields, **items}))
    out: dict[str, str] = {}
    for who, pset in (("ann", "Bulk_Users"), ("bob", "Bulk_Users"), ("carol", "Bulk_Auditors")):
        username = f"{who}@bulk.test"
        uid = create_user(sysctx, username=username, password=PW, last_name=who.title(), email=username,
                          profile="Standard User")
        with live.ctx.db.transaction() as conn:
            assign_permission_set(sysctx, conn, uid, pset)
        out[who] = username
    return out


def _client(live: Live, username: str) -> httpx.Client:
    sid, _ = SalesforceLogin(username=username, password=PW, security_token="", scratch_url=live.https,
                             session=live.session(), sf_version=V)
    return httpx.Client(base_url=f"{live.http}/services/data/v{V}", timeout=60,
                        headers={"Authorization": f"Bearer {sid}"})


@pytest.fixture(scope="module")
def clients(live: Live, people: dict[str, str]) -> Iterator[dict[str, httpx.Client]]:
    cs = {who: _client(live, username) for who, username in people.items()}
    yield cs
    for c in cs.values():
        c.close()


def test_job_record_is_queryable_by_its_owner(live: Live, clients: dict[str, httpx.Client]) -> None:
    info = run_ingest(clients["ann"], "Item__c", "insert", to_csv(ROWS))
    assert (info["state"], info["numberRecordsProcessed"], info["numberRecordsFailed"]) == ("JobComplete", 3, 1)
    soql = f"SELECT Id, {', '.join(JOB_FIELDS)} FROM BulkJob WHERE Id = '{info['id']}'"

    def rest_query(who: str) -> list[dict[str, object]]:
        r = clients[who].get("/query", params={"q": soql})
        assert r.status_code == 200, r.text
        return list(r.json()["records"])

    mine = rest_query("ann")
    assert len(mine) == 1
    assert {k: mine[0][k] for k in ("Id", *JOB_FIELDS)} == {
        "Id": info["id"], "State": "JobComplete", "SObjectType": "Item__c", "Operation": "insert",
        "NumberRecordsProcessed": 3, "NumberRecordsFailed": 1}
    # another user with the same permissions sees neither the record nor the job
    assert rest_query("bob") == []
    assert clients["bob"].get(f"/jobs/ingest/{info['id']}").status_code == 404
    assert all(j["id"] != info["id"] for j in clients["bob"].get("/jobs/ingest").json()["records"])
    # … unless allowed to view all jobs
    assert [r["Id"] for r in rest_query("carol")] == [info["id"]]
    # the owner filters their own jobs like any records
    r = clients["ann"].get("/query", params={"q": "SELECT Id FROM BulkJob WHERE State = 'JobComplete' AND "
                                                  "SObjectType = 'Item__c' AND NumberRecordsFailed > 0"})
    assert [x["Id"] for x in r.json()["records"]] == [info["id"]]


def test_retention_sweep_expires_results_and_idle_jobs(live: Live, http: httpx.Client) -> None:
    ctx = live.ctx
    ingest = run_ingest(http, "Item__c", "insert", to_csv(ROWS))
    q = http.post("/jobs/query", json={"operation": "query", "query": "SELECT Id FROM Item__c"}).json()
    assert wait_job(http, q["id"], "query")["state"] == "JobComplete"
    rows = int(http.get(f"/jobs/query/{q['id']}/results").headers["Sforce-NumberOfRecords"])
    idle = http.post("/jobs/ingest", json={"object": "Item__c", "operation": "insert"}).json()
    assert len(parse_csv(http.get(f"/jobs/ingest/{ingest['id']}/failedResults").text)) == 1
    mine = (ingest["id"], q["id"], idle["id"])
    days = B.limits(ctx).retention_days

    assert B.sweep(replace(ctx, clock=lambda: ctx.clock() + timedelta(days=days - 1))) == 0  # not yet
    assert http.get(f"/jobs/query/{q['id']}/results").status_code == 200
    assert B.sweep(replace(ctx, clock=lambda: ctx.clock() + timedelta(days=days, hours=1))) >= 3

    # results answer the documented error, on both kinds of job
    for path in (f"/jobs/ingest/{ingest['id']}/successfulResults", f"/jobs/ingest/{ingest['id']}/failedResults",
                 f"/jobs/ingest/{ingest['id']}/unprocessedrecords", f"/jobs/query/{q['id']}/results"):
        r = http.get(path)
        assert r.status_code == 400, (path, r.text)
        assert r.json()[0]["errorCode"] == "INVALIDJOB"
        assert r.json()[0]["message"] == f"The job's results have expired: they are kept for {days} days."
    # the job records stay, with their counters and the reason
    info = http.get(f"/jobs/ingest/{ingest['id']}").json()
    assert (info["state"], info["numberRecordsProcessed"], info["numberRecordsFailed"]) == ("JobComplete", 3, 1)
    assert info["errorMessage"] == B.EXPIRED_NOTE
    assert http.get(f"/jobs/query/{q['id']}").json()["numberRecordsProcessed"] == rows
    info = http.get(f"/jobs/ingest/{idle['id']}").json()
    assert info["state"] == "Aborted" and f"{days}-day retention period" in info["errorMessage"]
    # … and everything else of them is gone: upload and outcome rows, and the files
    pks = [ids.decode(j, B.JOB_PREFIX) for j in mine]
    with ctx.db.read() as conn:
        ups = conn.execute(sa.select(sa.func.count()).select_from(T.uploads).where(
            T.uploads.c.job_id.in_(pks))).scalar_one()
        chunks = conn.execute(sa.select(sa.func.count()).select_from(T.chunks).join(
            T.uploads, T.uploads.c.id == T.chunks.c.upload_id, isouter=True).where(
            T.uploads.c.id.is_(None))).scalar_one()
    assert (ups, chunks) == (0, 0)
    assert not any(B.job_dir(ctx, j).exists() for j in mine)
    # a second sweep leaves the note as it is
    B.sweep(replace(ctx, clock=lambda: ctx.clock() + timedelta(days=2 * days + 1)))
    assert http.get(f"/jobs/ingest/{ingest['id']}").json()["errorMessage"] == B.EXPIRED_NOTE


def test_query_job_runs_with_its_owners_sharing(live: Live, clients: dict[str, httpx.Client]) -> None:
    """A query job reads as its owner: over BulkJob (private) each user's file holds exactly the jobs the same
    SOQL shows them through REST."""
    run_ingest(clients["bob"], "Item__c", "insert", to_csv(ROWS))  # every user owns at least one job
    run_ingest(clients["ann"], "Item__c", "insert", to_csv(ROWS))
    soql = "SELECT Id, State, Operation FROM BulkJob"
    seen: dict[str, set[str]] = {}
    for who in ("ann", "bob", "carol"):
        c = clients[who]
        job = c.post("/jobs/query", json={"operation": "query", "query": soql}).json()
        assert wait_job(c, job["id"], "query")["state"] == "JobComplete"
        rows = parse_csv(c.get(f"/jobs/query/{job['id']}/results").text)
        rest = c.get("/query", params={"q": soql}).json()["records"]
        seen[who] = {r["Id"] for r in rows}
        assert seen[who] == {r["Id"] for r in rest} and job["id"] in seen[who]  # it runs as a job of its own
    assert seen["ann"] and seen["bob"] and not seen["ann"] & seen["bob"]
    assert seen["ann"] | seen["bob"] < seen["carol"]  # view all: every job, the admin's included
