"""Row generators and job helpers shared by the bulk tests."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import httpx

BAD_KINDS = ("FIELD_CUSTOM_VALIDATION_EXCEPTION", "REQUIRED_FIELD_MISSING", "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
             "INVALID_FIELD")
COLUMNS = ["Name", "Code__c", "Vendor__r.Vendor_Code__c", "Qty__c", "Price__c", "Active__c", "Due__c", "Color__c",
           "Note__c", "Email__c", "Category__c"]


def item_rows(n: int, *, prefix: str = "C", bad_every: int = 100,
              shift: int = 0) -> tuple[list[dict[str, str]], dict[str, str]]:
    """``n`` Item__c rows; every ``bad_every``-th is bad in one of four ways (``shift`` moves which rows, so a
    second load of the same codes can fail on others). Returns rows and code -> expected."""
    rows: list[dict[str, str]] = []
    expected: dict[str, str] = {}
    for i in range(n):
        r = {"Name": f"Item {i}", "Code__c": f"{prefix}{i:07d}", "Vendor__r.Vendor_Code__c": f"V{i % 5}",
             "Qty__c": str(i % 50), "Price__c": f"{i % 1000}.25", "Active__c": "true" if i % 2 else "false",
             "Due__c": "2024-05-06", "Color__c": ("Red", "Green", "Blue")[i % 3], "Note__c": f"note, \"{i}\"",
             "Email__c": f"u{i}@example.com", "Category__c": "Hardware"}
        if (i + shift) % bad_every == bad_every - 1:
            kind = BAD_KINDS[((i + shift) // bad_every) % len(BAD_KINDS)]
            if kind == "FIELD_CUSTOM_VALIDATION_EXCEPTION":
                r["Qty__c"] = "-5"
            elif kind == "REQUIRED_FIELD_MISSING":
                r["Category__c"] = ""
            elif kind == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST":
                r["Color__c"] = "Purple"
            else:
                r["Vendor__r.Vendor_Code__c"] = "NOPE"
            expected[r["Code__c"]] = kind
        rows.append(r)
    return rows, expected


def json_records(rows: list[dict[str, str]]) -> list[dict[str, object]]:
    """``item_rows`` as simple-salesforce ``sf.bulk`` (Bulk 1.0 JSON) sends them: typed values, the relationship
    column as a nested object, blank values left out."""
    out: list[dict[str, object]] = []
    for r in rows:
        rec: dict[str, object] = {k: v for k, v in r.items() if "." not in k and v != ""}
        rec["Vendor__r"] = {"Vendor_Code__c": r["Vendor__r.Vendor_Code__c"]}
        rec["Active__c"] = r["Active__c"] == "true"
        rec["Qty__c"] = int(r["Qty__c"])
        out.append(rec)
    return out


def to_csv(rows: list[dict[str, str]], sep: str = ",", eol: str = "\n", columns: list[str] | None = None) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns or list(rows[0]), delimiter=sep, lineterminator=eol)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def parse_csv(text: str, sep: str = ",") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text), delimiter=sep))


def wait_job(http: httpx.Client, job_id: str, kind: str = "ingest", timeout: float = 180) -> dict[str, Any]:
    deadline = time.time() + timeout
    while True:
        info: dict[str, Any] = http.get(f"/jobs/{kind}/{job_id}").json()
        if info["state"] in ("JobComplete", "Failed", "Aborted"):
            return info
        assert time.time() < deadline, f"job {job_id} stuck in {info['state']}"
        time.sleep(0.1)


def run_ingest(http: httpx.Client, obj: str, operation: str, body: bytes, **extra: Any) -> dict[str, Any]:
    spec = {"object": obj, "operation": operation, "contentType": "CSV", **extra}
    r = http.post("/jobs/ingest", json=spec)
    assert r.status_code == 200, r.text
    job_id = r.json()["id"]
    r = http.put(f"/jobs/ingest/{job_id}/batches", content=body, headers={"Content-Type": "text/csv"})
    assert r.status_code == 201, r.text
    r = http.patch(f"/jobs/ingest/{job_id}", json={"state": "UploadComplete"})
    assert r.status_code == 200, r.text
    return wait_job(http, job_id)
