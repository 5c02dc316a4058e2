"""Bulk API 2.0 end to end with the real simple-salesforce client (``sf.bulk2``) and raw HTTP.

~5,000 rows with 1% bad rows per operation: every good row lands, every bad row is reported with its code, and
the job counters match.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import COLUMNS, item_rows, parse_csv, run_ingest, to_csv, wait_job
from simple_salesforce import Salesforce

from conftest import ADMIN, Live

N = 5_000


@pytest.fixture(scope="module")
def vendors(live: Live, http: httpx.Client) -> dict[str, str]:
    body = to_csv([{"Name": f"Vendor {i}", "Vendor_Code__c": f"V{i}"} for i in range(5)])
    info = run_ingest(http, "Vendor__c", "insert", body)
    assert info["state"] == "JobComplete" and info["numberRecordsFailed"] == 0
    rows = parse_csv(http.get(f"/jobs/ingest/{info['id']}/successfulResults").text)
    return {r["Vendor_Code__c"]: r["sf__Id"] for r in rows}


@pytest.fixture(scope="module")
def inserted(live: Live, sf: Salesforce, vendors: dict[str, str]) -> dict[str, Any]:
    rows, expected = item_rows(N)
    res = sf.bulk2.Item__c.insert(records=rows, wait=0.2)
    assert len(res) == 1
    return {"rows": rows, "expected": expected, "result": res[0]}


def test_insert_counts_and_rows(live: Live, sf: Salesforce, inserted: dict[str, Any]) -> None:
    res, expected = inserted["result"], inserted["expected"]
    assert res["numberRecordsProcessed"] == N
    assert res["numberRecordsFailed"] == len(expected) == N // 100
    assert live.count("Item__c") == N - len(expected)


def test_failed_results_carry_codes(live: Live, sf: Salesforce, inserted: dict[str, Any]) -> None:
    job_id = inserted["result"]["job_id"]
    failed = parse_csv(sf.bulk2.Item__c.get_failed_records(job_id))
    assert {r["Code__c"]: r["sf__Error"].split(":", 1)[0] for r in failed} == inserted["expected"]
    assert all(r["sf__Error"].endswith("--") for r in failed)
    assert list(failed[0])[:2] == ["sf__Id", "sf__Error"] and set(COLUMNS) <= set(failed[0])
    ok = parse_csv(sf.bulk2.Item__c.get_successful_records(job_id))
    assert len(ok) == N - len(inserted["expected"])
    assert all(r["sf__Created"] == "true" and r["sf__Id"].startswith("a") for r in ok)
    assert ok[0]["Note__c"] == 'note, "0"'
    assert parse_csv(sf.bulk2.Item__c.get_unprocessed_records(job_id)) == []


def test_relationship_column_resolved(live: Live, vendors: dict[str, str], inserted: dict[str, Any]) -> None:
    from keel.services.query import query

    rec = query(live.ctx, "SELECT Vendor__c, Vendor__r.Vendor_Code__c FROM Item__c WHERE Code__c = 'C0000007'")
    assert rec["records"][0]["Vendor__c"] == vendors["V2"]


def test_upsert_update_and_null(live: Live, sf: Salesforce, http: httpx.Client, inserted: dict[str, Any]) -> None:
    # upsert: the first 1,000 codes update, 1,000 new codes insert; one bad row per 100
    rows, _ = item_rows(1000, prefix="C", bad_every=10**9)
    new, expected_new = item_rows(1000, prefix="U")
    for r in rows:
        r["Qty__c"] = "4242"
    res = sf.bulk2.Item__c.upsert(records=rows + new, external_id_field="Code__c", wait=0.2)[0]
    assert res["numberRecordsProcessed"] == 2000
    failed = res["numberRecordsFailed"]
    # rows of the first insert that failed then are now inserted by the upsert
    assert failed == len(expected_new)
    ok = parse_csv(sf.bulk2.Item__c.get_successful_records(res["job_id"]))
    created = {r["Code__c"]: r["sf__Created"] for r in ok}
    assert created["C0000001"] == "false" and created["U0000001"] == "true"
    assert live.count("Item__c", "WHERE Qty__c = 4242") == 1000
    # update by Id: #N/A sets null, empty leaves unchanged
    ids = [r["sf__Id"] for r in ok if r["Code__c"].startswith("C")][:100]
    body = to_csv([{"Id": i, "Note__c": "#N/A", "Email__c": ""} for i in ids] + [{"Id": "a02000000000zzzAAA",
                                                                                   "Note__c": "x", "Email__c": ""}])
    info = run_ingest(http, "Item__c", "update", body)
    assert (info["state"], info["numberRecordsProcessed"], info["numberRecordsFailed"]) == ("JobComplete", 101, 1)
    assert live.count("Item__c", "WHERE Note__c = null AND Email__c != null") == 100


def test_delete_and_hard_delete(live: Live, sf: Salesforce, http: httpx.Client, inserted: dict[str, Any]) -> None:
    from keel.services.query import query

    recs = query(live.ctx, "SELECT Id FROM Item__c WHERE Code__c LIKE 'U%' ORDER BY Code__c")["records"]
    ids = [r["Id"] for r in recs]
    before = live.count("Item__c")
    res = sf.bulk2.Item__c.delete(records=[{"Id": i} for i in ids[:500]] + [{"Id": "bogus"}], wait=0.2)[0]
    assert (res["numberRecordsProcessed"], res["numberRecordsFailed"]) == (501, 1)
    failed = parse_csv(sf.bulk2.Item__c.get_failed_records(res["job_id"]))
    assert failed[0]["sf__Error"].startswith("MALFORMED_ID:")
    assert live.count("Item__c") == before - 500
    res = sf.bulk2.Item__c.hard_delete(records=[{"Id": i} for i in ids[500:600]], wait=0.2)[0]
    assert res["numberRecordsFailed"] == 0
    assert live.count("Item__c") == before - 600
    deleted = query(live.ctx, "SELECT COUNT() FROM Item__c WHERE IsDeleted = true", query_all=True)["totalSize"]
    assert deleted == 500  # hard-deleted rows are not in the recycle bin


def test_query_job_pages(live: Live, sf: Salesforce, http: httpx.Client, inserted: dict[str, Any]) -> None:
    total = live.count("Item__c")
    pages = list(sf.bulk2.Item__c.query("SELECT Id, Code__c, Vendor__r.Vendor_Code__c FROM Item__c",
                                        max_records=1500, wait=0.2))
    rows = [r for p in pages for r in parse_csv(p)]
    assert len(rows) == total and len(pages) == -(-total // 1500)
    assert list(rows[0]) == ["Id", "Code__c", "Vendor__r.Vendor_Code__c"]
    assert len({r["Id"] for r in rows}) == total
    # raw protocol: headers and the literal "null" locator on the last page
    job = http.post("/jobs/query", json={"operation": "queryAll", "query": "SELECT Id FROM Item__c"}).json()
    assert job["state"] == "UploadComplete" and job["jobType"] == "V2Query"
    wait_job(http, job["id"], "query")
    r = http.get(f"/jobs/query/{job['id']}/results", params={"maxRecords": 100_000})
    assert r.headers["Sforce-Locator"] == "null" and r.headers["content-type"] == "text/csv"
    assert int(r.headers["Sforce-NumberOfRecords"]) == live.count("Item__c", "") + 500


def test_query_odd_page_boundaries(live: Live, http: httpx.Client, inserted: dict[str, Any]) -> None:
    job = http.post("/jobs/query", json={"operation": "query", "query": "SELECT Id, Note__c FROM Item__c",
                                         "columnDelimiter": "PIPE", "lineEnding": "CRLF"}).json()
    wait_job(http, job["id"], "query")
    seen: list[str] = []
    locator = ""
    while True:
        r = http.get(f"/jobs/query/{job['id']}/results", params={"maxRecords": 777, **(
            {"locator": locator} if locator else {})})
        page = list(csv.reader(io.StringIO(r.text, newline=""), delimiter="|"))
        assert page[0] == ["Id", "Note__c"] and "\r\n" in r.text
        assert len(page) - 1 == int(r.headers["Sforce-NumberOfRecords"])
        seen += [p[0] for p in page[1:]]
        locator = r.headers["Sforce-Locator"]
        if locator == "null":
            break
    assert len(seen) == len(set(seen)) == live.count("Item__c")


@pytest.mark.parametrize("delimiter,sep", [("BACKQUOTE", "`"), ("CARET", "^"), ("COMMA", ","), ("PIPE", "|"),
                                           ("SEMICOLON", ";"), ("TAB", "\t")])
@pytest.mark.parametrize("ending,eol", [("LF", "\n"), ("CRLF", "\r\n")])
def test_every_delimiter_and_line_ending(live: Live, http: httpx.Client, vendors: dict[str, str], delimiter: str,
                                         sep: str, ending: str, eol: str) -> None:
    rows = [{"Name": f"D{delimiter}{ending}{i}", "Category__c": "Soft", "Note__c": f"a{sep}b\nc"} for i in range(3)]
    info = run_ingest(http, "Item__c", "insert", to_csv(rows, sep, eol), columnDelimiter=delimiter,
                      lineEnding=ending)
    assert (info["state"], info["numberRecordsProcessed"], info["numberRecordsFailed"]) == ("JobComplete", 3, 0)
    text = http.get(f"/jobs/ingest/{info['id']}/successfulResults").text
    out = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=sep))
    assert [r["Note__c"] for r in out] == [f"a{sep}b\nc"] * 3
    assert text.endswith(eol)


def test_job_info_list_abort_delete(live: Live, http: httpx.Client) -> None:
    job = http.post("/jobs/ingest", json={"object": "Item__c", "operation": "insert"}).json()
    assert job["state"] == "Open" and job["columnDelimiter"] == "COMMA"
    assert any(j["id"] == job["id"] for j in http.get("/jobs/ingest").json()["records"])
    r = http.patch(f"/jobs/ingest/{job['id']}", json={"state": "Aborted"})
    assert r.json()["state"] == "Aborted"
    r = http.put(f"/jobs/ingest/{job['id']}/batches", content=b"Name\nx\n", headers={"Content-Type": "text/csv"})
    assert r.status_code == 400
    assert http.delete(f"/jobs/ingest/{job['id']}").status_code == 204
    assert http.get(f"/jobs/ingest/{job['id']}").status_code == 404
    from keel.services.query import query

    soql = f"SELECT Id, State, JobType FROM BulkJob WHERE Id = '{job['id']}'"
    assert query(live.ctx, soql)["totalSize"] == 0


def test_bad_job_specs(live: Live, http: httpx.Client) -> None:
    assert http.post("/jobs/ingest", json={"object": "Nope__c", "operation": "insert"}).status_code == 400
    assert http.post("/jobs/ingest", json={"object": "Item__c", "operation": "merge"}).status_code == 400
    r = http.post("/jobs/ingest", json={"object": "Item__c", "operation": "upsert", "externalIdFieldName": "Name"})
    assert r.status_code == 400
    r = http.post("/jobs/query", json={"operation": "query", "query": "SELEC Id FROM Item__c"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "MALFORMED_QUERY"
    assert http.get("/jobs/ingest/750000000000999AAA").status_code == 404
    r = httpx.get(f"{live.http}/services/data/v59.0/jobs/ingest")
    assert r.status_code == 401


@pytest.mark.parametrize("soql", [
    "SELECT Id, Name, Vendor__r.Name, Vendor__r.Id, Qty__c, Price__c, Active__c, Due__c, Seen__c, Note__c, Email__c "
    "FROM Item__c",
    "SELECT vendor__r.vendor_code__c, code__c, i.Active__c FROM Item__c i WHERE Qty__c > 10 "
    "ORDER BY Price__c DESC NULLS LAST, Name LIMIT 777 OFFSET 5",
])
def test_streamed_query_results_equal_the_page_path(live: Live, http: httpx.Client, inserted: dict[str, Any],
                                                     tmp_path: Path, soql: str) -> None:
    from keel.services import bulk_query as BQ
    from keel.services.security import user_context
    from keel.services.users import find_user_id
    from keel.storage import ids

    rows = [{"Name": "seen", "Category__c": "x", "Seen__c": "2024-05-06T07:08:09.123Z", "Active__c": "true",
             "Qty__c": "20", "Price__c": "3.5", "Due__c": "2024-02-29"}]
    assert run_ingest(http, "Item__c", "insert", to_csv(rows))["state"] == "JobComplete"
    ctx = user_context(live.ctx, ids.decode(find_user_id(live.ctx, ADMIN), "005"))
    w = BQ.CsvResultWriter(tmp_path / "probe.csv", "|", "\r\n")
    try:
        assert BQ._stream_csv(ctx, soql, False, BQ.soql_columns(soql), w, None)  # one cursor served it
    finally:
        w.close()
    n = BQ._write_csv(ctx, soql, False, tmp_path / "stream.csv", "|", "\r\n", None)
    m = BQ._write_csv(ctx, soql, False, tmp_path / "pages.csv", "|", "\r\n", None, stream=False)
    assert n == m > 700
    for suffix in ("", ".idx"):
        assert (tmp_path / f"stream.csv{suffix}").read_bytes() == (tmp_path / f"pages.csv{suffix}").read_bytes()
    text = (tmp_path / "stream.csv").read_text()
    assert '"true"' in text and ('"2024-05-06T07:08:09.123+0000"' in text or "Seen__c" not in soql)
