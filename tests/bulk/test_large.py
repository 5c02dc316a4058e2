"""The one 100,000-row run, on each database: simple-salesforce ``sf.bulk2`` insert and query with 1% bad rows."""

from __future__ import annotations

import pytest
from helpers import item_rows, parse_csv
from simple_salesforce import Salesforce

from conftest import Live

N = 100_000


@pytest.mark.slow
def test_hundred_thousand_rows(live: Live, sf: Salesforce) -> None:
    rows, expected = item_rows(N, prefix="L")
    for r in rows:
        # no vendors in this module: only the rows meant to fail on the relationship keep a vendor code
        r["Vendor__r.Vendor_Code__c"] = "NOPE" if expected.get(r["Code__c"]) == "INVALID_FIELD" else ""
    res = sf.bulk2.Item__c.insert(records=rows, wait=0.5)[0]
    assert (res["numberRecordsProcessed"], res["numberRecordsFailed"]) == (N, len(expected))
    failed = parse_csv(sf.bulk2.Item__c.get_failed_records(res["job_id"]))
    assert {r["Code__c"]: r["sf__Error"].split(":", 1)[0] for r in failed} == expected
    got = sum(len(parse_csv(p)) for p in sf.bulk2.Item__c.query("SELECT Id FROM Item__c WHERE Code__c LIKE 'L%'",
                                                                  max_records=50_000, wait=0.5))
    assert got == N - len(expected)
