"""The Vendor and Philanthropy sample data, and charity-only visibility of allocations."""

from __future__ import annotations

from collections import Counter

import pytest

from keel.apps.philanthropy import sample as philanthropy
from keel.apps.philanthropy.charities import onboard_charity
from keel.apps.vendors import sample as vendors
from keel.context import Context
from keel.errors import NotFoundError
from keel.records import save_many
from keel.services.apps import app_reports, run_app_report
from keel.services.query import query
from keel.services.security import read_record, user_context
from tests.apps.conftest import refused


def rows(ctx: Context, soql: str) -> list[dict]:
    return list(query(ctx, soql)["records"])


def by(ctx: Context, soql: str) -> dict:
    return {r["k"]: r["n"] for r in rows(ctx, soql)}


def test_vendor_sample_shows_every_rule(apps: Context) -> None:
    counts = vendors.generate(apps, 30)
    assert counts["Account"] == 30 and counts["Scorecard__c"] == 120
    blocked = rows(apps, "SELECT Id, Standing_Band__c FROM Account WHERE Blocks_Purchase_Orders__c = TRUE")
    assert blocked and all(b["Standing_Band__c"] == "Very Poor" for b in blocked)
    refused(apps, "Purchase_Order__c", [{"Vendor__c": blocked[0]["Id"]}], "Very Poor")
    # (listed, not grouped: GROUP BY a TODAY()-formula fails on PostgreSQL, a SOQL compiler gap)
    alerts = Counter(r["Expiry_Alert__c"] for r in rows(apps, "SELECT Expiry_Alert__c FROM Insurance_Certificate__c"))
    assert alerts.get("Expired") and any(alerts.get(w) for w in ("7 days", "30 days", "60 days", "90 days"))
    assert by(apps, "SELECT Status__c k, COUNT(Id) n FROM Contract__c GROUP BY Status__c").keys() >= {
        "Draft", "Activated", "Expired", "Terminated"}
    assert rows(apps, "SELECT Id FROM Contract__c WHERE Options_Exercised__c > 0 AND Option_Periods__c > 0")
    assert rows(apps, "SELECT Id FROM Contract__c WHERE Status__c = 'Activated' AND Days_To_Expiry__c <= 90")
    inv = by(apps, "SELECT Status__c k, COUNT(Id) n FROM Invoice__c GROUP BY Status__c")
    assert inv.get("Exception") and inv.get("Paid") and inv.get("Approved")
    assert rows(apps, "SELECT Id FROM Invoice__c WHERE Three_Way_Match__c = FALSE AND Status__c = 'Exception'")
    assert rows(apps, "SELECT Id FROM Invoice__c WHERE Status__c = 'Paid' AND Cycle_Time_Days__c > 0")
    # large exceptions wait in the Invoice Approval queue; large approved ones carry the process's mark
    waiting = rows(apps, "SELECT TargetObjectId FROM ProcessInstance WHERE ProcessDefinitionName = 'Invoice_Approval' "
                         "AND Status = 'Pending'")
    assert waiting and all(rows(apps, f"SELECT Status__c FROM Invoice__c WHERE Id = '{w['TargetObjectId']}'")[0][
        "Status__c"] == "Exception" for w in waiting)
    assert not rows(apps, "SELECT Id FROM Invoice__c WHERE Status__c = 'Approved' AND Needs_Approval__c = TRUE "
                          "AND Approval_Granted__c = FALSE")
    locked = rows(apps, "SELECT Id FROM Purchase_Order__c WHERE Status__c = 'Received' LIMIT 1")[0]["Id"]
    refused(apps, "Purchase_Order__c", [{"Id": locked, "Description__c": "changed"}], "locked")
    reports = {r.name: run_app_report(apps, "vendors", r.name)[1] for r in app_reports("vendors")}
    assert all(reports.values()), [k for k, v in reports.items() if not v]
    assert sum(r["n"] for r in reports["compliance_status"]) == 30


def test_pledge_scenario_and_charity_only_visibility(apps: Context) -> None:
    counts = philanthropy.generate(apps, 4)
    assert counts["Pledge__c"] == 4 and counts["Condition__c"] == 1
    p = rows(apps, "SELECT Id, Total__c, Allocated__c, Accepted__c, Paid__c, Overdue__c, Allocation_Count__c "
                   "FROM Pledge__c WHERE Donor__r.Name = 'Northwind Industries'")[0]
    assert (p["Total__c"], p["Allocated__c"], p["Accepted__c"], p["Allocation_Count__c"]) == (
        1_000_000, 1_000_000, 1_000_000, 4)
    assert p["Paid__c"] == 437_500 and p["Overdue__c"] is True  # three instalments due, two paid
    allocs = {r["Recipient_Code__c"]: r for r in rows(
        apps, "SELECT Id, Recipient_Code__c, Status__c, Paid__c, Conditions_Open__c, Screening__c "
              f"FROM Allocation__c WHERE Pledge__c = '{p['Id']}'")}
    paf = allocs["PAF"]
    assert paf["Status__c"] == "Accepted with Conditions" and paf["Conditions_Open__c"] == 1
    assert paf["Screening__c"].startswith("Propose decline") and "DOD" in paf["Screening__c"]
    assert "Peace Action Fund gift acceptance policy" in paf["Screening__c"]
    # the other pledges return declined shares to the donor by their preference, decided by a flow
    declined = rows(apps, "SELECT Reallocation_Decision__c FROM Allocation__c WHERE Status__c = 'Declined'")
    assert declined and {r["Reallocation_Decision__c"] for r in declined} == {"Return to Donor"}
    assert rows(apps, "SELECT COUNT(Id) n FROM Pledge__c WHERE Open_Declines__c > 0")[0]["n"] == 0
    assert [allocs[c]["Status__c"] for c in ("RLP", "HFB", "ODS")] == ["Accepted"] * 3
    assert allocs["HFB"]["Paid__c"] == 125_000  # 62,500 twice, plus 12,500 sent by mistake and refunded
    refund = rows(apps, "SELECT Amount__c FROM Payment_Allocation__c WHERE Is_Refund__c = TRUE")
    assert [r["Amount__c"] for r in refund] == [-12500]

    lead_id = rows(apps, "SELECT Id FROM User WHERE Username = 'charityfinance@keel.local'")[0]["Id"]
    lead = user_context(apps, lead_id)
    mine = rows(apps, "SELECT Id FROM Allocation__c WHERE Recipient_Code__c = 'PAF'")
    seen = rows(lead, "SELECT Id, Recipient__r.Name FROM Allocation__c")
    assert sorted(r["Id"] for r in seen) == sorted(r["Id"] for r in mine) and paf["Id"] in {r["Id"] for r in seen}
    assert rows(lead, "SELECT COUNT(Id) n FROM Allocation__c")[0]["n"] == len(mine)
    assert by(lead, "SELECT Recipient_Code__c k, COUNT(Id) n FROM Allocation__c GROUP BY Recipient_Code__c") == {
        "PAF": len(mine)}
    assert read_record(lead, "Allocation__c", paf["Id"])["Status__c"] == "Accepted with Conditions"
    with pytest.raises(NotFoundError):
        read_record(lead, "Allocation__c", allocs["RLP"]["Id"])
    assert len(rows(lead, "SELECT Id FROM Condition__c")) == 1
    paid_to = {r["Allocation__c"] for r in rows(lead, "SELECT Allocation__c FROM Payment_Allocation__c")}
    assert paf["Id"] in paid_to and paid_to <= {r["Id"] for r in mine}
    # reports run as the viewer: the lead's "pledged vs paid" has their charity only
    everyone = run_app_report(apps, "philanthropy", "pledged_vs_paid")[1]
    assert len(everyone) == 4 and all(run_app_report(apps, "philanthropy", r.name)[1]
                                      for r in app_reports("philanthropy"))
    assert [r["recipient"] for r in run_app_report(lead, "philanthropy", "pledged_vs_paid")[1]] == [
        "Peace Action Fund"]
    # the lead can record that the condition was met, on their own charity's records only
    cond = rows(lead, "SELECT Id FROM Condition__c")[0]["Id"]
    save_many(lead, "Condition__c", [{"Id": cond, "Status__c": "Met", "Met_Date__c": "2026-01-05",
                                      "Evidence__c": "Contract termination notice W91-22-C-0042"}])
    # a new allocation to the charity is shared the moment it is saved; another charity's is not
    pledge = save_many(apps, "Pledge__c", [{"Donor__c": rows(apps, "SELECT Donor__c FROM Pledge__c LIMIT 1")[0][
        "Donor__c"], "Total__c": 10, "First_Instalment_Date__c": "2026-01-01", "Instalments__c": 1}])[0].id
    charity = {c: rows(apps, f"SELECT Id FROM Account WHERE Charity_Code__c = '{c}'")[0]["Id"] for c in ("PAF", "RLP")}
    new = [r.id for r in save_many(apps, "Allocation__c", [{"Pledge__c": pledge, "Recipient__c": charity[c],
                                                             "Amount__c": 5} for c in ("PAF", "RLP")])]
    visible = {r["Id"] for r in rows(lead, "SELECT Id FROM Allocation__c")}
    assert new[0] in visible and new[1] not in visible
    # onboarding is idempotent: running it again adds no second group, rule or membership
    group = onboard_charity(apps, charity["PAF"], "PAF", [lead_id])
    assert len(rows(apps, f"SELECT Id FROM GroupMember WHERE GroupId = '{group}'")) == 1
    assert len(rows(apps, "SELECT Id FROM SharingRule WHERE CriteriaValue = 'PAF'")) == 2
