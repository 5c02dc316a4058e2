"""Bulk API 1.0: simple-salesforce ``sf.bulk`` (JSON) and the XML/CSV flavour of jsforce and salesforce-bulk."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET

import httpx
import pytest
from helpers import item_rows, json_records, parse_csv, run_ingest, to_csv
from simple_salesforce import Salesforce

from conftest import Live

NS = "{http://www.force.com/2009/06/asyncapi/dataload}"
N = 3_000


@pytest.fixture(scope="module")
def vendors(live: Live, http: httpx.Client) -> None:
    body = to_csv([{"Name": f"Vendor {i}", "Vendor_Code__c": f"V{i}"} for i in range(5)])
    assert run_ingest(http, "Vendor__c", "insert", body)["state"] == "JobComplete"


def _records(n: int, prefix: str) -> tuple[list[dict[str, object]], dict[str, str]]:
    rows, expected = item_rows(n, prefix=prefix)
    return json_records(rows), expected


def test_simple_salesforce_bulk_json(live: Live, sf: Salesforce, vendors: None) -> None:
    recs, expected = _records(N, "J")
    res = sf.bulk.Item__c.insert(recs, batch_size=1000)
    assert len(res) == N
    bad = {recs[i]["Code__c"]: r["errors"][0]["statusCode"] for i, r in enumerate(res) if not r["success"]}
    assert bad == expected
    assert all(r["created"] and r["id"] for r in res if r["success"])
    assert live.count("Item__c", "WHERE Code__c LIKE 'J%'") == N - len(expected)
    ids = [r["id"] for r in res if r["success"]]
    upd = sf.bulk.Item__c.update([{"Id": i, "Note__c": None, "Qty__c": 7} for i in ids[:500]])
    assert all(r["success"] for r in upd)
    assert live.count("Item__c", "WHERE Code__c LIKE 'J%' AND Qty__c = 7 AND Note__c = null") == 500
    ups = sf.bulk.Item__c.upsert([{"Code__c": "J0000000", "Qty__c": 8888}, {"Code__c": "JNEW", "Category__c": "x",
                                                                          "Name": "new"}], "Code__c")
    assert [(r["success"], r["created"]) for r in ups] == [(True, False), (True, True)]
    rows = sf.bulk.Item__c.query("SELECT Id, Code__c, Qty__c FROM Item__c WHERE Code__c LIKE 'J%'")
    assert len(rows) == N - len(expected) + 1
    assert {r["Code__c"] for r in rows if r["Qty__c"] == 8888} == {"J0000000"}
    dele = sf.bulk.Item__c.delete([{"Id": i} for i in ids[:100]])
    assert all(r["success"] for r in dele)
    assert live.count("Item__c", "WHERE Code__c LIKE 'J%'") == N - len(expected) + 1 - 100


def _xml_job(op: str, obj: str, ext: str = "") -> bytes:
    extra = f"<externalIdFieldName>{ext}</externalIdFieldName>" if ext else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?><jobInfo xmlns="http://www.force.com/2009/06/asyncapi/dataload">'
            f"<operation>{op}</operation><object>{obj}</object>{extra}<contentType>CSV</contentType></jobInfo>"
            ).encode()


def _field(xml: str, name: str) -> str:
    el = ET.fromstring(xml).find(f"{NS}{name}")
    assert el is not None, xml
    return el.text or ""


def test_xml_csv_flavour(live: Live, vendors: None) -> None:
    token = live.token()
    base = f"{live.http}/services/async/59.0"
    h = {"X-SFDC-Session": token, "Content-Type": "application/xml; charset=utf-8"}
    with httpx.Client(timeout=60) as c:
        r = c.post(f"{base}/job", content=_xml_job("insert", "Item__c"), headers=h)
        assert r.status_code == 201 and r.headers["content-type"] == "application/xml", r.text
        job = _field(r.text, "id")
        assert _field(r.text, "state") == "Open"
        rows, expected = item_rows(1000, prefix="X")
        r = c.post(f"{base}/job/{job}/batch", content=to_csv(rows), headers={**h, "Content-Type": "text/csv"})
        assert r.status_code == 201, r.text
        batch = _field(r.text, "id")
        assert _field(r.text, "state") in ("Queued", "InProgress", "Completed")
        r = c.post(f"{base}/job/{job}", content=b'<?xml version="1.0"?><jobInfo xmlns="http://www.force.com/2009/'
                   b'06/asyncapi/dataload"><state>Closed</state></jobInfo>', headers=h)
        assert _field(r.text, "state") == "Closed"
        for _ in range(300):
            r = c.get(f"{base}/job/{job}/batch/{batch}", headers=h)
            if _field(r.text, "state") in ("Completed", "Failed"):
                break
            time.sleep(0.1)
        assert _field(r.text, "state") == "Completed"
        assert int(_field(r.text, "numberRecordsFailed")) == len(expected)
        r = c.get(f"{base}/job/{job}/batch/{batch}/result", headers=h)
        assert r.headers["content-type"] == "text/csv"
        res = parse_csv(r.text)
        assert list(res[0]) == ["Id", "Success", "Created", "Error"]
        assert sum(1 for x in res if x["Success"] == "false") == len(expected)
        r = c.get(f"{base}/job/{job}", headers=h)
        assert int(_field(r.text, "numberBatchesCompleted")) == 1
        assert int(_field(r.text, "numberRecordsProcessed")) == 1000
        # query batch
        r = c.post(f"{base}/job", content=_xml_job("query", "Item__c"), headers=h)
        qjob = _field(r.text, "id")
        r = c.post(f"{base}/job/{qjob}/batch", content=b"SELECT Id, Code__c FROM Item__c WHERE Code__c LIKE 'X%'",
                   headers={**h, "Content-Type": "text/csv"})
        qb = _field(r.text, "id")
        for _ in range(300):
            r = c.get(f"{base}/job/{qjob}/batch/{qb}", headers=h)
            if _field(r.text, "state") in ("Completed", "Failed"):
                break
            time.sleep(0.1)
        r = c.get(f"{base}/job/{qjob}/batch/{qb}/result", headers=h)
        rid = re.search(r"<result>(.*?)</result>", r.text)
        assert rid, r.text
        r = c.get(f"{base}/job/{qjob}/batch/{qb}/result/{rid.group(1)}", headers=h)
        assert len(parse_csv(r.text)) == 1000 - len(expected)


def test_invalid_session(live: Live) -> None:
    r = httpx.post(f"{live.http}/services/async/59.0/job", content=_xml_job("insert", "Item__c"),
                   headers={"X-SFDC-Session": "nope", "Content-Type": "application/xml"})
    assert r.status_code == 400 and "<exceptionCode>InvalidSessionId</exceptionCode>" in r.text
    r = httpx.post(f"{live.http}/services/async/59.0/job", json={"operation": "insert", "object": "Item__c"},
                   headers={"X-SFDC-Session": "nope"})
    assert r.status_code == 400 and r.json()["exceptionCode"] == "InvalidSessionId"
    assert r.headers["content-type"] == "application/json"
