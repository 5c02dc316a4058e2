"""Bulk API 1.0 XML/CSV flavour driven by the real jsforce client (``jsforce/bulk.js``, jsforce pinned in
``jsforce/package.json``; 3.10.16 is the newest jsforce 3 that runs on Node 18/20, later ones need Node 22):
``conn.bulk.load`` insert with bad rows, then ``Query#update`` and ``Query#destroy`` over
more than jsforce's bulk threshold (200), which jsforce runs as Bulk API 1.0 jobs.

The fixture runs ``npm ci`` when ``jsforce/node_modules/jsforce`` is missing; without node or npm the test fails.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import item_rows, run_ingest, to_csv
from simple_salesforce import Salesforce

from conftest import Live

JSFORCE_DIR = Path(__file__).parent / "jsforce"
PREFIX = "JSF"
N = 250
QTY_BELOW = 45  # Qty__c is i % 50: the update/destroy filter takes 9 rows in 10, i.e. well over 200


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: the jsforce bulk test needs Node.js 18+ and npm", pytrace=False)
    return path


@pytest.fixture(scope="module")
def node() -> str:
    node = _tool("node")
    if not (JSFORCE_DIR / "node_modules" / "jsforce" / "package.json").exists():
        npm = _tool("npm")
        with open(Path(tempfile.gettempdir()) / "keel-jsforce-npm.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers may reach this together
            if not (JSFORCE_DIR / "node_modules" / "jsforce" / "package.json").exists():
                try:
                    r = subprocess.run([npm, "ci", "--prefix", str(JSFORCE_DIR), "--prefer-offline", "--no-audit",
                                        "--no-fund", "--loglevel=error"], capture_output=True, text=True,
                                       timeout=300)
                except subprocess.TimeoutExpired:
                    pytest.fail("npm ci for jsforce timed out after 300 s", pytrace=False)
                if r.returncode != 0:
                    pytest.fail(f"npm ci for jsforce failed ({r.returncode}):\n{r.stdout}\n{r.stderr}", pytrace=False)
    return node


@pytest.fixture(scope="module")
def vendors(live: Live, http: httpx.Client) -> None:
    body = to_csv([{"Name": f"Vendor {i}", "Vendor_Code__c": f"V{i}"} for i in range(5)])
    assert run_ingest(http, "Vendor__c", "insert", body)["state"] == "JobComplete"


def _jsforce(node: str, live: Live, step: str, records: list[dict[str, str]] | None = None) -> list[dict[str, Any]]:
    """Run one step of ``jsforce/bulk.js``; asserts it ran as exactly one Bulk API 1.0 job (not the REST
    collections API) and returns the results jsforce reports."""
    payload = {"step": step, "instanceUrl": live.http, "accessToken": live.token(), "records": records or [],
               "prefix": PREFIX, "qtyBelow": QTY_BELOW}
    r = subprocess.run([node, str(JSFORCE_DIR / "bulk.js")], input=json.dumps(payload), capture_output=True,
                       text=True, timeout=120, cwd=JSFORCE_DIR)
    assert r.returncode == 0, f"jsforce {step} failed:\n{r.stderr}"
    out = json.loads(r.stdout)
    assert out["bulkOps"] == [f"{'delete' if step == 'destroy' else step} Item__c"]
    results: list[dict[str, Any]] = out["results"]
    return results


def _items(sf: Salesforce, deleted: bool = False) -> dict[str, dict[str, Any]]:
    where = f"Code__c LIKE '{PREFIX}%'" + (" AND IsDeleted = true" if deleted else "")
    res = sf.query_all(f"SELECT Id, Code__c, Name, Qty__c, Note__c FROM Item__c WHERE {where}",
                       include_deleted=deleted)
    return {r["Code__c"]: r for r in res["records"]}


def test_jsforce_bulk_load_and_query_update_destroy(live: Live, sf: Salesforce, vendors: None, node: str) -> None:
    rows, expected = item_rows(N, prefix=PREFIX, bad_every=125)
    assert set(expected.values()) == {"FIELD_CUSTOM_VALIDATION_EXCEPTION", "REQUIRED_FIELD_MISSING"}
    by_code = {r["Code__c"]: r for r in rows}

    # (a) conn.bulk.load insert: per-row ids and errors, in input order
    inserted = _jsforce(node, live, "insert", rows)
    assert len(inserted) == N
    bad = {rows[i]["Code__c"]: r["errors"] for i, r in enumerate(inserted) if not r["success"]}
    assert set(bad) == set(expected)
    for code, errors in bad.items():
        assert len(errors) == 1 and errors[0].startswith(f"{expected[code]}:"), (code, errors)
    ids = {rows[i]["Code__c"]: r["id"] for i, r in enumerate(inserted) if r["success"]}
    assert len(set(ids.values())) == N - len(expected) and all(len(i) == 18 for i in ids.values())
    stored = _items(sf)
    assert {c: r["Id"] for c, r in stored.items()} == ids
    assert all(r["Qty__c"] == int(by_code[c]["Qty__c"]) and r["Note__c"] == by_code[c]["Note__c"]
               for c, r in stored.items())

    # (b) Query#update over the bulk threshold
    picked = {c for c in ids if int(by_code[c]["Qty__c"]) < QTY_BELOW}
    assert 200 < len(picked) < len(ids)
    updated = _jsforce(node, live, "update")
    assert all(r["success"] and not r["errors"] for r in updated)
    assert sorted(r["id"] for r in updated) == sorted(ids[c] for c in picked)
    stored = _items(sf)
    assert set(stored) == set(ids)
    for c, r in stored.items():
        if c in picked:
            assert (r["Qty__c"], r["Note__c"]) == (77, f"jsforce {by_code[c]['Name']}"), r
        else:
            assert (r["Qty__c"], r["Note__c"]) == (int(by_code[c]["Qty__c"]), by_code[c]["Note__c"]), r

    # (c) Query#destroy of exactly the updated rows
    destroyed = _jsforce(node, live, "destroy")
    assert all(r["success"] and not r["errors"] for r in destroyed)
    assert sorted(r["id"] for r in destroyed) == sorted(ids[c] for c in picked)
    assert set(_items(sf)) == set(ids) - picked
    assert {c: r["Id"] for c, r in _items(sf, deleted=True).items()} == {c: ids[c] for c in picked}

    jobs = sf.query_all("SELECT Operation, ContentType, NumberRecordsProcessed, NumberRecordsFailed FROM BulkJob "
                        "WHERE JobType = 'Classic' AND SObjectType = 'Item__c'")["records"]
    assert sorted((j["Operation"], j["ContentType"], j["NumberRecordsProcessed"], j["NumberRecordsFailed"])
                  for j in jobs) == sorted([("insert", "CSV", N, len(expected)), ("update", "CSV", len(picked), 0),
                                            ("delete", "CSV", len(picked), 0)])
