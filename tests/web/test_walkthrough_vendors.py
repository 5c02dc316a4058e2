"""Vendor management on day one, in a real browser: a procurement officer onboards a vendor (a malformed Unique
Entity ID is refused) with its insurance certificate and a contract that the procurement manager approves; a
requester raises a purchase order and its line; the manager confirms it and records the receipt; accounts payable
enters an invoice above the approval threshold, which goes to the manager's approval queue by itself and is
approved there. Each step checks what the user sees and what was stored; screenshots go to tests/artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest

from tests.apps.live import Live, Persona, chromium, live_apps, logged_in, pick, record_id, shot

OFFICER = Persona("olga@walkthrough.test", "Officer", ("Vendor_Procurement_Officer",))
MANAGER = Persona("paul@walkthrough.test", "Manager", ("Vendor_Procurement_Officer",), role="Procurement Manager")
REQUESTER = Persona("quinn@walkthrough.test", "Requester", ("Vendor_Requester",))
PAYABLES = Persona("pat@walkthrough.test", "Payables", ("Vendor_Accounts_Payable",))
TODAY = date.today()
VENDOR = "Granite Ridge Supply"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_apps(tmp_path_factory.mktemp("walk-vendors"), ["vendors"],
                   [OFFICER, MANAGER, REQUESTER, PAYABLES]) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def test_vendors_walkthrough(browser: Any, live: Live) -> None:
    with logged_in(browser, live.url, OFFICER.username) as pg:
        # 1. the vendor, its general liability certificate, and a contract sent for approval
        pg.goto("/o/Account/new")
        pg.get_by_label("Account Name").fill(VENDOR)
        pg.get_by_label("Type", exact=True).select_option("Vendor")
        pg.get_by_label("Vendor Status").select_option("Active")
        pg.get_by_label("Unique Entity ID").fill("granite-1")
        pg.get_by_role("button", name="Save").click()
        assert pg.get_by_text("A Unique Entity ID is 12 letters and digits.").is_visible()
        pg.get_by_label("Unique Entity ID").fill("GRS0000KEEL1")
        pg.get_by_role("button", name="Save").click()
        vendor = record_id(pg)
        pg.goto("/o/Insurance_Certificate__c/new")
        pick(pg, "Vendor", VENDOR)
        pg.get_by_label("Coverage Type").select_option("General Liability")
        pg.get_by_label("Status", exact=True).select_option("Verified")
        pg.get_by_label("Each Occurrence Limit").fill("2000000")
        pg.get_by_label("Expiration Date").fill(str(TODAY + timedelta(days=300)))
        pg.get_by_role("button", name="Save").click()
        record_id(pg)
        pg.goto("/o/Contract__c/new")
        pick(pg, "Vendor", VENDOR)
        pg.get_by_label("Title").fill("Aggregate and road salt, FY27")
        pg.get_by_label("Contract Value").fill("180000")
        pg.get_by_label("Start Date").fill(str(TODAY))
        pg.get_by_label("End Date (Base Period)").fill(str(TODAY + timedelta(days=365)))
        pg.get_by_role("button", name="Save").click()
        contract = record_id(pg)
        pg.get_by_role("button", name="Submit for approval").click()
        assert pg.locator("#locked").is_visible()
        shot(pg, "vendors-01-contract-submitted")
    assert live.rows(f"SELECT Insurance_Compliant__c FROM Account WHERE Id = '{vendor}'")[0]["Insurance_Compliant__c"]
    assert live.rows(f"SELECT Status__c FROM Contract__c WHERE Id = '{contract}'")[0]["Status__c"] == "In Approval"

    with logged_in(browser, live.url, MANAGER.username) as pg:
        pg.goto("/approvals")
        pg.locator("tr", has_text="Contract").get_by_role("button", name="Approve").click()
        assert pg.get_by_text("Nothing is waiting for you.").is_visible()
    c = live.rows(f"SELECT Name, Status__c, Approved__c, Approved_By__c FROM Contract__c WHERE Id = '{contract}'")[0]
    assert (c["Status__c"], c["Approved__c"], c["Approved_By__c"]) == (
        "Activated", True, live.users[MANAGER.username])

    with logged_in(browser, live.url, REQUESTER.username) as pg:
        # 2. the requester's purchase order against the activated contract, with one line
        pg.goto("/o/Purchase_Order__c/new")
        pick(pg, "Vendor", VENDOR)
        pick(pg, "Contract", str(c["Name"]))
        pick(pg, "Requested By", "Requester")
        pg.get_by_label("Description").fill("Road salt for the winter season")
        pg.get_by_role("button", name="Save").click()
        po = record_id(pg)
        po_name = live.rows(f"SELECT Name FROM Purchase_Order__c WHERE Id = '{po}'")[0]["Name"]
        pg.goto("/o/PO_Line__c/new")
        pick(pg, "Purchase Order", po_name)
        pg.get_by_label("Description").fill("Rock salt, tonnes")
        pg.locator("#f-Quantity__c").fill("400")  # "Quantity *": the label carries the required mark
        pg.get_by_label("Unit Price").fill("95")
        pg.get_by_role("button", name="Save").click()
        line = record_id(pg)
        pg.goto(f"/r/{po}")
        pg.get_by_role("button", name="Submit for approval").click()
        assert pg.locator("#locked").is_visible()
    assert live.rows(f"SELECT Total__c FROM Purchase_Order__c WHERE Id = '{po}'")[0]["Total__c"] == 38000

    with logged_in(browser, live.url, MANAGER.username) as pg:
        # 3. the manager approves the order, which records them as its approver, then confirms it (which locks
        # it) and records the delivery
        pg.goto("/approvals")
        pg.locator("tr", has_text="Purchase Order").get_by_role("button", name="Approve").click()
        assert pg.get_by_text("Nothing is waiting for you.").is_visible()
        pg.goto(f"/r/{po}/edit")
        pg.get_by_label("Status", exact=True).select_option("Confirmed")
        pg.get_by_role("button", name="Save").click()
        record_id(pg)
        pg.goto(f"/r/{line}/edit")
        pg.get_by_label("Quantity Received").fill("400")
        pg.get_by_role("button", name="Save").click()
        record_id(pg)
        pg.goto(f"/r/{po}/edit")
        pg.get_by_label("Description").fill("changed after confirmation")
        pg.get_by_role("button", name="Save").click()
        assert pg.get_by_text("A confirmed purchase order is locked").is_visible()
    order = live.rows(f"SELECT Status__c, Received_Total__c, Description__c, Approved_By__c FROM Purchase_Order__c "
                      f"WHERE Id = '{po}'")[0]
    assert (order["Status__c"], order["Received_Total__c"], order["Description__c"], order["Approved_By__c"]) == (
        "Confirmed", 38000, "Road salt for the winter season", live.users[MANAGER.username])

    with logged_in(browser, live.url, PAYABLES.username) as pg:
        # 4. accounts payable enters the invoice: above $25,000 it goes to approval by itself and is locked
        pg.goto("/o/Invoice__c/new")
        pg.get_by_label("Invoice Number").fill("GRS-88412")
        pick(pg, "Purchase Order", po_name)
        pg.get_by_label("Invoice Amount").fill("38200")
        pg.get_by_label("Invoice Date").fill(str(TODAY))
        pg.get_by_role("button", name="Save").click()
        invoice = record_id(pg)
        assert pg.locator("#locked").is_visible()
        assert pg.locator("#approval").get_by_text("Invoice_Approval").first.is_visible()
        shot(pg, "vendors-02-invoice-awaiting-approval")
        pg.get_by_role("link", name=po_name).click()  # the order it bills, with its contract
        pg.wait_for_url(f"**/r/{po}")
        assert pg.get_by_role("link", name=str(c["Name"])).is_visible()
    pending = live.rows(f"SELECT Status, SubmittedById FROM ProcessInstance WHERE TargetObjectId = '{invoice}'")
    assert [(p["Status"], p["SubmittedById"]) for p in pending] == [("Pending", live.users[PAYABLES.username])]
    inv = live.rows(f"SELECT Needs_Approval__c, Three_Way_Match__c FROM Invoice__c WHERE Id = '{invoice}'")[0]
    assert inv["Needs_Approval__c"] is True and inv["Three_Way_Match__c"] is True  # 38,200 is within 2% of 38,000

    with logged_in(browser, live.url, MANAGER.username) as pg:
        pg.goto("/approvals")
        row = pg.locator("tr", has_text="GRS-88412")
        assert row.get_by_text("Invoice_Approval").is_visible()
        shot(pg, "vendors-03-approval-queue")
        row.get_by_label("Comments").fill("Matches the order and the delivery")
        row.get_by_role("button", name="Approve").click()
        assert pg.get_by_text("Nothing is waiting for you.").is_visible()
        pg.goto(f"/r/{invoice}")
        assert pg.locator("#locked").count() == 0
        assert pg.locator("#approval").get_by_text("Matches the order and the delivery").is_visible()
        shot(pg, "vendors-04-invoice-approved")
    inv = live.rows(f"SELECT Status__c, Approval_Granted__c, Approved_By__c, Approved_Date__c FROM Invoice__c "
                    f"WHERE Id = '{invoice}'")[0]
    assert (inv["Status__c"], inv["Approval_Granted__c"], inv["Approved_By__c"], inv["Approved_Date__c"]) == (
        "Approved", True, live.users[MANAGER.username], str(TODAY))
