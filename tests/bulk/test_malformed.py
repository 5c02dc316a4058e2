"""Malformed uploads end in a clear job failure or per-row errors: never a 5xx, never a stuck job."""

from __future__ import annotations

import httpx
import pytest
from helpers import parse_csv, wait_job

from conftest import Live


def _job(http: httpx.Client, body: bytes, **extra: str) -> tuple[int, dict[str, object]]:
    job = http.post("/jobs/ingest", json={"object": "Item__c", "operation": "insert", **extra}).json()
    r = http.put(f"/jobs/ingest/{job['id']}/batches", content=body, headers={"Content-Type": "text/csv"})
    assert r.status_code < 500, r.text
    if r.status_code == 201:
        assert http.patch(f"/jobs/ingest/{job['id']}", json={"state": "UploadComplete"}).status_code == 200
    return r.status_code, wait_job(http, str(job["id"]), timeout=60)


def test_ragged_rows_fail_alone(live: Live, http: httpx.Client) -> None:
    status, info = _job(http, b"Name,Category__c\nok1,a\ntoo,many,values\nshort\nok2,b\n")
    assert (status, info["state"], info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (
        201, "JobComplete", 4, 2)
    failed = parse_csv(http.get(f"/jobs/ingest/{info['id']}/failedResults").text)
    assert [f["sf__Error"].split(":")[0] for f in failed] == ["MALFORMED_ROW", "MALFORMED_ROW"]


@pytest.mark.parametrize("body", [b'Name,Category__c\nok,a\n"bad"x,y\nlast,b\n',
                                  b'Name,Category__c\nok,a\nopen,"quote\nlast,b\n'])
def test_bad_quoting_fails_the_job_with_its_line(live: Live, http: httpx.Client, body: bytes) -> None:
    status, info = _job(http, body)
    assert status == 201 and info["state"] == "Failed"
    assert "cannot be parsed near line" in str(info["errorMessage"])
    assert http.get(f"/jobs/ingest/{info['id']}/failedResults").status_code == 200


@pytest.mark.parametrize("body,needle", [
    (b"Name,Nope__c\nx,y\n", "Field name not found : Nope__c"),
    (b"Name;Category__c\nx;y\n", "Field name not found : Name;Category__c"),  # wrong delimiter
    (b"", "empty"),
    (b"Name,,Category__c\nx,,y\n", "no name"),
    (b"Name,Name\nx,y\n", "duplicate column"),
])
def test_bad_header_fails_the_job(live: Live, http: httpx.Client, body: bytes, needle: str) -> None:
    status, info = _job(http, body)
    assert status == 201 and info["state"] == "Failed"
    assert needle in str(info["errorMessage"])


def test_header_only_completes_empty(live: Live, http: httpx.Client) -> None:
    _, info = _job(http, b"Name,Category__c\n")
    assert (info["state"], info["numberRecordsProcessed"]) == ("JobComplete", 0)


def test_non_utf8_is_refused_and_fails_the_job(live: Live, http: httpx.Client) -> None:
    status, info = _job(http, b"Name,Category__c\ncaf\xe9,x\n")
    assert status == 400 and info["state"] == "Failed"
    assert "UTF-8" in str(info["errorMessage"])


def test_upload_limit(live: Live, http: httpx.Client) -> None:
    from keel.services.bulk import BulkLimits

    live.ctx.extras["bulk_limits"] = BulkLimits(max_upload_bytes=1000)
    try:
        job = http.post("/jobs/ingest", json={"object": "Item__c", "operation": "insert"}).json()
        r = http.put(f"/jobs/ingest/{job['id']}/batches", content=b"Name\n" + b"x\n" * 1000,
                     headers={"Content-Type": "text/csv"})
        assert r.status_code == 400 and r.json()[0]["errorCode"] == "LIMIT_EXCEEDED"
    finally:
        live.ctx.extras.pop("bulk_limits")


def test_active_job_limit(live: Live, http: httpx.Client) -> None:
    from keel.services.bulk import BulkLimits

    for j in http.get("/jobs/ingest").json()["records"]:
        if j["state"] == "Open":
            http.patch(f"/jobs/ingest/{j['id']}", json={"state": "Aborted"})
    live.ctx.extras["bulk_limits"] = BulkLimits(max_active_jobs_per_user=1)
    try:
        first = http.post("/jobs/ingest", json={"object": "Item__c", "operation": "insert"}).json()
        r = http.post("/jobs/ingest", json={"object": "Item__c", "operation": "insert"})
        assert r.status_code == 400 and r.json()[0]["errorCode"] == "LIMIT_EXCEEDED"
        http.patch(f"/jobs/ingest/{first['id']}", json={"state": "Aborted"})
    finally:
        live.ctx.extras.pop("bulk_limits")


def test_job_bytes_limit(live: Live, http: httpx.Client) -> None:
    from keel.services.bulk import BulkLimits

    body = b"Name,Category__c\n" + b"".join(b"limit %03d,x\n" % i for i in range(50))  # 617 bytes
    live.ctx.extras["bulk_limits"] = BulkLimits(max_upload_bytes=1000, max_job_bytes=1000)
    try:
        job = http.post("/jobs/ingest", json={"object": "Item__c", "operation": "insert"}).json()
        put = f"/jobs/ingest/{job['id']}/batches"
        assert http.put(put, content=body, headers={"Content-Type": "text/csv"}).status_code == 201
        r = http.put(put, content=body, headers={"Content-Type": "text/csv"})  # each fits a batch, not both
        assert r.status_code == 400, r.text
        assert r.json()[0]["errorCode"] == "LIMIT_EXCEEDED"
        assert "exceed the limit of 1000 bytes per job" in r.json()[0]["message"]
    finally:
        live.ctx.extras.pop("bulk_limits")
    # the refused upload left nothing behind: the job still takes the first one and completes with its rows
    assert http.patch(f"/jobs/ingest/{job['id']}", json={"state": "UploadComplete"}).status_code == 200
    info = wait_job(http, str(job["id"]), timeout=60)
    assert (info["state"], info["numberRecordsProcessed"], info["numberRecordsFailed"]) == ("JobComplete", 50, 0)
    assert live.count("Item__c", "WHERE Name LIKE 'limit %'") == 50
