"""Every Vendor Management rule that refuses a write, hit through the REST API as the persona who would hit it.

Setup runs in process; the refused write goes over HTTP and must come back 400 with the rule's error code and
message (``tests/apps/rest.py``). The rules an approval's own field updates break are in ``test_api_approvals``.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from keel.context import Context
from keel.records import save_many
from keel.services.query import query
from tests.apps.rest import Persona, Rest, assert_code, assert_rule
from tests.apps.test_vendors_philanthropy import approve_po, vendor

TODAY = date.today()
FLS = "INVALID_FIELD_FOR_INSERT_UPDATE"


def new(ctx: Context, obj: str, draft: dict[str, Any]) -> str:
    rid = save_many(ctx, obj, [draft])[0].id
    assert rid is not None
    return rid


def confirmed_po(apps: Context, req: Persona, officer: Persona, vid: str, qty: int, price: float) -> tuple[str, str]:
    """An order the requester raised, approved by the officer and confirmed: its id and its line's."""
    po = new(req.ctx, "Purchase_Order__c", {"Vendor__c": vid, "Requested_By__c": req.id})
    line = new(req.ctx, "PO_Line__c", {"Purchase_Order__c": po, "Quantity__c": qty, "Unit_Price__c": price})
    approve_po(req.ctx, po, [officer.ctx])
    save_many(officer.ctx, "Purchase_Order__c", [{"Id": po, "Status__c": "Confirmed"}])
    return po, line


def test_vendor_accounts_and_scorecards(apps: Context, rest: Rest) -> None:
    officer = rest.login("po", "Vendor_Procurement_Officer")
    assert_rule(officer.post("Account", {"Name": "Not a vendor", "Vendor_Status__c": "Active"}),
                "Account.Vendor_Fields_Only_On_Vendors")
    assert_rule(officer.post("Account", {"Name": "V", "Type": "Vendor", "Unique_Entity_Id__c": "abc-123"}),
                "Account.Unique_Entity_Id_Format")
    vid = vendor(apps, "Scored Co", owner=officer.ctx)  # scorecards follow their vendor
    card: dict[str, Any] = {"Vendor__c": vid, "Period_Start__c": str(TODAY - timedelta(days=90)),
                            "Period_End__c": str(TODAY), "Quality_Score__c": 80, "Delivery_Score__c": 80,
                            "Cost_Score__c": 80, "Responsiveness_Score__c": 80}
    assert_rule(officer.post("Scorecard__c", {**card, "Quality_Weight__c": 50}), "Scorecard__c.Weights_Sum_To_100")
    assert_rule(officer.post("Scorecard__c", {**card, "Quality_Score__c": 120}), "Scorecard__c.Scores_In_Range")
    assert_rule(officer.post("Scorecard__c", {**card, "Period_End__c": str(TODAY - timedelta(days=91))}),
                "Scorecard__c.Period_In_Order")
    final = officer.created("Scorecard__c", {**card, "Status__c": "Final"})
    assert_rule(officer.patch("Scorecard__c", final, {"Quality_Score__c": 90}), "Scorecard__c.Final_Is_Locked")


def test_contracts(apps: Context, rest: Rest) -> None:
    officer = rest.login("po", "Vendor_Procurement_Officer")
    vid = vendor(apps, "Contracted Co")
    other = new(apps, "Account", {"Name": "Just a customer"})
    c: dict[str, Any] = {"Vendor__c": vid, "Title__c": "Fleet service", "Value__c": 50000,
                         "Start_Date__c": str(TODAY), "End_Date__c": str(TODAY + timedelta(days=365))}
    assert_rule(officer.post("Contract__c", {**c, "Status__c": "Activated"}), "Contract__c.New_Contracts_Are_Drafts")
    assert_rule(officer.post("Contract__c", {**c, "End_Date__c": str(TODAY - timedelta(days=1))}),
                "Contract__c.End_After_Start")
    assert_rule(officer.post("Contract__c", {**c, "Option_Periods__c": 1, "Options_Exercised__c": 2}),
                "Contract__c.Options_Within_Limit")
    assert_rule(officer.post("Contract__c", {**c, "Vendor__c": other}), "Contract__c.Vendor_Must_Be_Vendor")
    draft = officer.created("Contract__c", c)
    assert_rule(officer.patch("Contract__c", draft, {"Status__c": "Expired"}), "Contract__c.Legal_Status_Transition")
    assert_rule(officer.patch("Contract__c", draft, {"Status__c": "Activated"}),
                "Contract__c.Activation_Needs_Approval")
    # the approval records who approved; nobody writes it, so a requester cannot approve their own contract here
    assert_code(officer.patch("Contract__c", draft, {"Approved_By__c": officer.id}), 400, FLS, "Approved_By__c")
    active = new(apps, "Contract__c", c)
    save_many(apps, "Contract__c", [{"Id": active, "Status__c": "In Approval"}])
    save_many(apps, "Contract__c", [{"Id": active, "Status__c": "Activated", "Approved__c": True}])
    assert_rule(officer.patch("Contract__c", active, {"Status__c": "Terminated"}),
                "Contract__c.Termination_Needs_Reason")


def test_insurance_certificates(apps: Context, rest: Rest) -> None:
    officer = rest.login("po", "Vendor_Procurement_Officer")
    vid = vendor(apps, "Insured Co", insured=False, owner=officer.ctx)
    contract = new(apps, "Contract__c", {"Vendor__c": vid, "Title__c": "Guards", "Min_General_Liability__c": 2000000,
                                         "Requires_Additional_Insured__c": True})
    cert: dict[str, Any] = {"Vendor__c": vid, "Coverage_Type__c": "General Liability",
                            "Each_Occurrence_Limit__c": 1000000, "Expiration_Date__c": str(TODAY + timedelta(days=200))}
    late = str(TODAY + timedelta(days=300))
    assert_rule(officer.post("Insurance_Certificate__c", {**cert, "Effective_Date__c": late}),
                "Insurance_Certificate__c.Dates_In_Order")
    endorsed = {"Additional_Insured__c": True, "Endorsement_On_File__c": True}
    assert_rule(officer.post("Insurance_Certificate__c", {**cert, **endorsed, "Contract__c": contract,
                                                          "Status__c": "Verified"}),
                "Insurance_Certificate__c.Verified_Meets_Minimum")
    assert_rule(officer.post("Insurance_Certificate__c", {**cert, "Contract__c": contract, "Status__c": "Verified",
                                                          "Each_Occurrence_Limit__c": 2000000}),
                "Insurance_Certificate__c.Verified_Needs_Endorsements")
    yesterday = str(TODAY - timedelta(days=1))
    lapsed = officer.created("Insurance_Certificate__c", {**cert, "Expiration_Date__c": yesterday})
    assert_rule(officer.patch("Insurance_Certificate__c", lapsed, {"Status__c": "Verified"}),
                "Insurance_Certificate__c.Verified_Must_Be_Current")


def test_purchase_orders_and_lines(apps: Context, rest: Rest) -> None:
    req = rest.login("req", "Vendor_Requester")
    officer = rest.login("po", "Vendor_Procurement_Officer", role="Procurement Manager")
    good, blocked = vendor(apps, "Good Co"), vendor(apps, "Blocked Co", 20)
    bare = vendor(apps, "Bare Co", insured=False)
    suspended = vendor(apps, "Suspended Co")
    save_many(apps, "Account", [{"Id": suspended, "Vendor_Status__c": "Suspended"}])
    draft_contract = new(apps, "Contract__c", {"Vendor__c": good, "Title__c": "Not yet"})
    assert_rule(req.post("Purchase_Order__c", {"Vendor__c": blocked}), "Purchase_Order__c.Vendor_Blocked_By_Scorecard")
    assert_rule(req.post("Purchase_Order__c", {"Vendor__c": bare}), "Purchase_Order__c.Vendor_Needs_Valid_Insurance")
    assert_rule(req.post("Purchase_Order__c", {"Vendor__c": suspended}), "Purchase_Order__c.Vendor_Must_Be_Active")
    assert_rule(req.post("Purchase_Order__c", {"Vendor__c": good, "Contract__c": draft_contract}),
                "Purchase_Order__c.Contract_Must_Be_Active")
    po = req.created("Purchase_Order__c", {"Vendor__c": good, "Requested_By__c": req.id})
    assert_rule(req.post("PO_Line__c", {"Purchase_Order__c": po, "Quantity__c": 0, "Unit_Price__c": 10}),
                "PO_Line__c.Positive_Quantity")
    # the amounts are the PO_Line_Amounts flow's to set: a wrong one sent is corrected before the rules look at it
    line = req.created("PO_Line__c", {"Purchase_Order__c": po, "Quantity__c": 2, "Unit_Price__c": 10, "Amount__c": 5,
                                      "Quantity_Received__c": 1, "Received_Amount__c": 99})
    got = query(apps, f"SELECT Amount__c, Received_Amount__c FROM PO_Line__c WHERE Id = '{line}'")["records"][0]
    assert (got["Amount__c"], got["Received_Amount__c"]) == (20, 10)
    assert_rule(officer.patch("Purchase_Order__c", po, {"Status__c": "Confirmed"}),
                "Purchase_Order__c.Approval_Before_Confirmation")
    # approvers are recorded by the approval process only: a requester cannot name themself or a second approver
    assert_code(req.patch("Purchase_Order__c", po, {"Approved_By__c": req.id}), 400, FLS, "Approved_By__c")
    assert_code(officer.patch("Purchase_Order__c", po, {"Second_Approver__c": officer.id}), 400, FLS,
                "Second_Approver__c")
    confirmed, confirmed_line = confirmed_po(apps, req, officer, good, 10, 99.5)
    assert_rule(officer.patch("Purchase_Order__c", confirmed, {"Description__c": "more"}),
                "Purchase_Order__c.Confirmed_PO_Is_Locked")
    assert_rule(req.patch("PO_Line__c", confirmed_line, {"Quantity__c": 11}),
                "PO_Line__c.Lines_Locked_After_Confirmation")


def test_invoices(apps: Context, rest: Rest) -> None:
    req = rest.login("req", "Vendor_Requester", "Vendor_Accounts_Payable")  # raises orders and keys invoices
    ap = rest.login("ap", "Vendor_Accounts_Payable")
    officer = rest.login("po", "Vendor_Procurement_Officer", role="Procurement Manager")
    po, line = confirmed_po(apps, req, officer, vendor(apps, "Billing Co"), 10, 3000)
    save_many(officer.ctx, "PO_Line__c", [{"Id": line, "Quantity_Received__c": 10}])
    assert_rule(ap.post("Invoice__c", {"Name": "INV-T", "Purchase_Order__c": po, "Amount__c": 20000,
                                       "Tolerance_Percent__c": 15}), "Invoice__c.Tolerance_Range")
    inv = ap.created("Invoice__c", {"Name": "INV-1", "Purchase_Order__c": po, "Amount__c": 20000})  # part-billed
    approved = {"Status__c": "Approved", "Approved_By__c": ap.id, "Approved_Date__c": str(TODAY)}
    assert_rule(ap.patch("Invoice__c", inv, {"Status__c": "Paid"}), "Invoice__c.Paid_Only_After_Approval")
    assert_rule(ap.patch("Invoice__c", inv, {"Status__c": "Approved"}), "Invoice__c.Approved_Needs_Approver")
    assert_rule(ap.patch("Invoice__c", inv, approved), "Invoice__c.Approval_Needs_Match")
    own = req.created("Invoice__c", {"Name": "INV-2", "Purchase_Order__c": po, "Amount__c": 20000})
    assert_rule(req.patch("Invoice__c", own, {**approved, "Approved_By__c": req.id}),
                "Invoice__c.Requester_Never_Approves")
    # above $25,000 the Invoice Approval process decides, not an edit of the record
    assert_rule(ap.patch("Invoice__c", inv, {**approved, "Amount__c": 30000}),
                "Invoice__c.Large_Invoice_Needs_Process")
