"""Vendor Management and Philanthropy: the refusals and invariants, as persona users."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

from keel.context import Context
from keel.records import save_many
from keel.services.automation import approve, items_to_approve, reject, submit_for_approval
from keel.services.query import query
from tests.apps.conftest import refused, uid

TODAY = date.today()


def vendor(apps: Context, name: str, score: float | None = None, insured: bool = True,
           owner: Context | None = None) -> str:
    vid = save_many(apps, "Account", [{"Name": name, "Type": "Vendor", "Vendor_Status__c": "Active",
                                       "Performance_Score__c": score, **({"OwnerId": uid(owner)} if owner else {})}])[
        0].id
    assert vid
    if insured:
        save_many(apps, "Insurance_Certificate__c", [{
            "Vendor__c": vid, "Coverage_Type__c": "General Liability", "Status__c": "Verified",
            "Each_Occurrence_Limit__c": 1000000, "Expiration_Date__c": str(TODAY + timedelta(days=200))}])
    return vid


def approve_po(requester: Context, po: str | None, approvers: list[Context]) -> None:
    """The requester submits the order; each approver approves their step of Purchase_Order_Approval."""
    assert po
    submit_for_approval(requester, po, "Purchase_Order_Approval")
    for a in approvers:
        (item,) = items_to_approve(a)
        approve(a, str(item["Id"]))


def test_purchase_orders(apps: Context, persona: Callable[..., Context]) -> None:
    req = persona("req", "Vendor_Requester")
    officer = persona("po", "Vendor_Procurement_Officer", role="Procurement Manager")
    good, blocked, uninsured = vendor(apps, "Good"), vendor(apps, "Bad", 20), vendor(apps, "Bare", insured=False)
    refused(req, "Purchase_Order__c", [{"Vendor__c": blocked}], "Very Poor")
    refused(req, "Purchase_Order__c", [{"Vendor__c": uninsured}], "general liability")
    po = save_many(req, "Purchase_Order__c", [{"Vendor__c": good, "Requested_By__c": uid(req)}])[0].id
    line = save_many(req, "PO_Line__c", [{"Purchase_Order__c": po, "Quantity__c": 10, "Unit_Price__c": 99.5}])[0].id
    assert query(apps, f"SELECT Total__c FROM Purchase_Order__c WHERE Id = '{po}'")["records"][0]["Total__c"] == 995
    refused(req, "Purchase_Order__c", [{"Id": po, "Approved_By__c": uid(req)}], "Approved_By__c")  # read-only to them
    # the approval fields belong to the approval process: nobody types their way to a confirmed order
    for f in ("Approved_By__c", "Second_Approver__c", "Approval_Granted__c"):
        refused(officer, "Purchase_Order__c", [{"Id": po, f: True if f == "Approval_Granted__c" else uid(officer)}], f)
    refused(officer, "Purchase_Order__c", [{"Id": po, "Status__c": "Confirmed"}], "Purchase Order Approval process")
    approve_po(req, po, [officer])
    save_many(officer, "Purchase_Order__c", [{"Id": po, "Status__c": "Confirmed"}])
    refused(officer, "Purchase_Order__c", [{"Id": po, "Description__c": "changed"}], "locked")
    refused(req, "PO_Line__c", [{"Id": line, "Quantity__c": 11}], "locked")
    save_many(officer, "PO_Line__c", [{"Id": line, "Quantity_Received__c": 10}])
    inv = save_many(officer, "Invoice__c", [{"Name": "INV-1", "Purchase_Order__c": po, "Amount__c": 1010}])[0].id
    assert query(apps, f"SELECT Three_Way_Match__c FROM Invoice__c WHERE Id = '{inv}'")["records"][0][
        "Three_Way_Match__c"] is True
    refused(officer, "Invoice__c", [{"Id": inv, "Amount__c": 1200, "Status__c": "Approved",
                                     "Approved_By__c": uid(officer), "Approved_Date__c": str(TODAY)}], "tolerance")


def test_pledge_split_across_four_charities(apps: Context, persona: Callable[..., Context]) -> None:
    gm = persona("gm", "Philanthropy_Grants_Manager")
    donor = save_many(apps, "Account", [{"Name": "Acme", "Type": "Donor", "Contract_Agencies__c": "DHS;DOD"}])[0].id
    policy = save_many(apps, "Gift_Policy__c", [{"Name": "D policy", "Declined_Agencies__c": "DOD"}])[0].id
    charities = [r.id for r in save_many(apps, "Account", [
        {"Name": f"Charity {c}", "Type": "Charity", **({"Gift_Policy__c": policy} if c == "D" else {})}
        for c in "ABCD"])]
    pledge = save_many(gm, "Pledge__c", [{"Donor__c": donor, "Total__c": 1000000, "Purpose__c": "Literacy",
                                          "First_Instalment_Date__c": str(TODAY), "Instalments__c": 4}])[0].id
    allocs = [r.id for r in save_many(gm, "Allocation__c", [
        {"Pledge__c": pledge, "Recipient__c": c, "Amount__c": 250000} for c in charities[:3]])]
    p = query(gm, f"SELECT Unallocated__c, Allocation_Status__c FROM Pledge__c WHERE Id = '{pledge}'")["records"][0]
    assert p["Unallocated__c"] == 250000 and p["Allocation_Status__c"].startswith("Under-allocated")
    refused(gm, "Pledge__c", [{"Id": pledge, "Status__c": "Committed"}], "add up exactly")
    allocs.append(save_many(gm, "Allocation__c", [{"Pledge__c": pledge, "Recipient__c": charities[3],
                                                   "Amount__c": 250000}])[0].id)
    save_many(gm, "Pledge__c", [{"Id": pledge, "Status__c": "Committed"}])
    screening = query(gm, f"SELECT Screening__c FROM Allocation__c WHERE Id = '{allocs[3]}'")["records"][0]
    assert "DOD" in screening["Screening__c"]
    # payments only to accepted allocations; a refund is negative
    pay = save_many(gm, "Payment__c", [{"Pledge__c": pledge, "Amount__c": 250000,
                                        "Payment_Date__c": str(TODAY)}])[0].id
    refused(gm, "Payment_Allocation__c", [{"Allocation__c": allocs[0], "Payment__c": pay, "Amount__c": 62500}],
            "only to accepted")
    save_many(gm, "Allocation__c", [{"Id": allocs[0], "Status__c": "Accepted"}])
    save_many(gm, "Payment_Allocation__c", [{"Allocation__c": allocs[0], "Payment__c": pay, "Amount__c": 62500}])
    # a decline needs a reason, then a re-allocation decision
    refused(gm, "Allocation__c", [{"Id": allocs[1], "Status__c": "Declined"}], "states its reason")
    save_many(gm, "Allocation__c", [{"Id": allocs[1], "Status__c": "Declined", "Decision_Reason__c": "Out of scope"}])
    p = query(gm, f"SELECT Open_Declines__c, Unallocated__c FROM Pledge__c WHERE Id = '{pledge}'")["records"][0]
    assert p["Open_Declines__c"] == 1 and p["Unallocated__c"] == 250000
    save_many(gm, "Allocation__c", [{"Id": allocs[1], "Reallocation_Decision__c": "Return to Donor"}])
    from keel.services.security import read_history

    hist = read_history(apps, "Allocation__c", allocs[1])
    assert any("Reallocation_Decision__c" in str(h) for h in hist)


def test_invoice_over_threshold_goes_through_approval(apps: Context, persona: Callable[..., Context]) -> None:
    ap = persona("ap", "Vendor_Accounts_Payable")
    req = persona("req", "Vendor_Requester")
    mgr = persona("mgr", "Vendor_Procurement_Officer", role="Procurement Manager")
    cpo = persona("cpo", "Vendor_Procurement_Officer", role="Chief Procurement Officer")
    good = vendor(apps, "Good")
    po = save_many(req, "Purchase_Order__c", [{"Vendor__c": good, "Requested_By__c": uid(req)}])[0].id
    line = save_many(req, "PO_Line__c", [{"Purchase_Order__c": po, "Quantity__c": 3, "Unit_Price__c": 40000}])[0].id
    approve_po(req, po, [mgr, cpo])
    save_many(mgr, "Purchase_Order__c", [{"Id": po, "Status__c": "Confirmed"}])
    save_many(mgr, "PO_Line__c", [{"Id": line, "Quantity_Received__c": 3}])
    # a small invoice is approved on the record; a large one cannot be, and goes to the approval queue itself
    small = save_many(ap, "Invoice__c", [{"Name": "INV-S", "Purchase_Order__c": po, "Amount__c": 20000}])[0].id
    assert not items_to_approve(mgr)
    big = save_many(ap, "Invoice__c", [{"Name": "INV-B", "Purchase_Order__c": po, "Amount__c": 120000}])[0].id
    inv = query(apps, f"SELECT Needs_Approval__c, Three_Way_Match__c FROM Invoice__c WHERE Id = '{big}'")["records"][0]
    assert inv == {**inv, "Needs_Approval__c": True, "Three_Way_Match__c": True}
    pending = query(apps, f"SELECT Status, SubmittedById FROM ProcessInstance WHERE TargetObjectId = '{big}'")[
        "records"]
    assert [(p["Status"], p["SubmittedById"]) for p in pending] == [("Pending", uid(ap))]
    refused(ap, "Invoice__c", [{"Id": big, "Amount__c": 119000}], "locked")
    refused(mgr, "Invoice__c", [{"Id": small, "Approval_Granted__c": True}], "Approval_Granted__c")
    approved = {"Status__c": "Approved", "Approved_By__c": uid(mgr), "Approved_Date__c": str(TODAY)}
    save_many(mgr, "Invoice__c", [{"Id": small, **approved, "Exception_Reason__c": "Deposit agreed with the vendor"}])
    # the administrator is not held by the lock, but still cannot approve a large invoice outside the process
    refused(apps, "Invoice__c", [{"Id": big, **approved}], "through the Invoice Approval process")
    # two steps above $100,000: the procurement manager, then the chief procurement officer
    (item,) = items_to_approve(mgr)
    approve(mgr, str(item["Id"]), "Matches PO and receipt")
    assert query(apps, f"SELECT Status__c FROM Invoice__c WHERE Id = '{big}'")["records"][0]["Status__c"] == "Received"
    (item,) = items_to_approve(cpo)
    approve(cpo, str(item["Id"]))
    done = query(apps, f"SELECT Status__c, Approval_Granted__c, Approved_By__c, Approved_Date__c FROM Invoice__c "
                       f"WHERE Id = '{big}'")["records"][0]
    assert (done["Status__c"], done["Approval_Granted__c"], done["Approved_By__c"], done["Approved_Date__c"]) == (
        "Approved", True, uid(cpo), str(TODAY))
    save_many(ap, "Invoice__c", [{"Id": big, "Status__c": "Paid", "Paid_Date__c": str(TODAY)}])


def test_purchase_order_two_step_approval(apps: Context, persona: Callable[..., Context]) -> None:
    req = persona("req", "Vendor_Requester")
    mgr = persona("mgr", "Vendor_Procurement_Officer", role="Procurement Manager")
    cpo = persona("cpo", "Vendor_Procurement_Officer", role="Chief Procurement Officer")
    po = save_many(req, "Purchase_Order__c", [{"Vendor__c": vendor(apps, "Big"), "Requested_By__c": uid(req)}])[0].id
    assert po
    save_many(req, "PO_Line__c", [{"Purchase_Order__c": po, "Quantity__c": 3, "Unit_Price__c": 50000}])

    def state() -> tuple[object, ...]:
        r = query(apps, f"SELECT Status__c, Approved_By__c, Second_Approver__c, Approval_Granted__c "
                        f"FROM Purchase_Order__c WHERE Id = '{po}'")["records"][0]
        return r["Status__c"], r["Approved_By__c"], r["Second_Approver__c"], r["Approval_Granted__c"]

    # a rejection at the second step returns the order to Draft and forgets the first approval
    approve_po(req, po, [mgr])
    assert state() == ("Submitted", uid(mgr), None, False)
    refused(mgr, "Purchase_Order__c", [{"Id": po, "Status__c": "Confirmed"}], "locked")
    refused(apps, "Purchase_Order__c", [{"Id": po, "Status__c": "Confirmed"}], "Purchase Order Approval process")
    (item,) = items_to_approve(cpo)
    reject(cpo, str(item["Id"]), "Split it across two quarters")
    assert state() == ("Draft", None, None, False)
    # above $100,000 both steps approve, each recorded by the process, and only then can it be confirmed
    approve_po(req, po, [mgr, cpo])
    assert state() == ("Approved", uid(mgr), uid(cpo), True)
    save_many(mgr, "Purchase_Order__c", [{"Id": po, "Status__c": "Confirmed"}])

    # An approval covers the order as approved: its lines are locked from submission on, and an order sent back
    # to Draft loses the approval, so growing a small approved order past $100,000 needs both approvals again.
    small = save_many(req, "Purchase_Order__c", [{"Vendor__c": vendor(apps, "Small"), "Requested_By__c": uid(req)}])[
        0].id
    save_many(req, "PO_Line__c", [{"Purchase_Order__c": small, "Quantity__c": 1, "Unit_Price__c": 50000}])
    approve_po(req, small, [mgr])
    refused(req, "PO_Line__c", [{"Purchase_Order__c": small, "Quantity__c": 9, "Unit_Price__c": 50000}], "locked")
    save_many(mgr, "Purchase_Order__c", [{"Id": small, "Status__c": "Draft"}])
    r = query(apps, f"SELECT Approval_Granted__c, Approved_By__c FROM Purchase_Order__c WHERE Id = '{small}'")[
        "records"][0]
    assert (r["Approval_Granted__c"], r["Approved_By__c"]) == (False, None)
    save_many(req, "PO_Line__c", [{"Purchase_Order__c": small, "Quantity__c": 9, "Unit_Price__c": 50000}])
    refused(mgr, "Purchase_Order__c", [{"Id": small, "Status__c": "Approved"}], "Purchase Order Approval process")
    refused(mgr, "Purchase_Order__c", [{"Id": small, "Status__c": "Confirmed"}], "Purchase Order Approval process")


def test_contract_approval_by_tier_and_status_transitions(apps: Context, persona: Callable[..., Context]) -> None:
    officer = persona("off", "Vendor_Procurement_Officer")
    colleague = persona("col", "Vendor_Procurement_Officer")
    mgr = persona("mgr", "Vendor_Procurement_Officer", role="Procurement Manager")
    cpo = persona("cpo", "Vendor_Procurement_Officer", role="Chief Procurement Officer")
    v = vendor(apps, "Works")
    dates = {"Start_Date__c": str(TODAY), "End_Date__c": str(TODAY + timedelta(days=300))}
    small, big = (r.id for r in save_many(officer, "Contract__c", [
        {"Vendor__c": v, "Title__c": t, "Value__c": value, "Requested_By__c": uid(officer), **dates}
        for t, value in (("small", 249000), ("big", 900000))]))
    assert small and big
    refused(officer, "Contract__c", [{"Vendor__c": v, "Title__c": "x", "Status__c": "Activated"}], "starts as a Draft")
    # the approval outcome is not the officer's to write, even naming a colleague
    refused(officer, "Contract__c", [{"Id": big, "Status__c": "In Approval", "Approved__c": True}], "Approved__c")
    refused(officer, "Contract__c", [{"Id": big, "Approved_By__c": uid(colleague)}], "Approved_By__c")
    save_many(officer, "Contract__c", [{"Id": big, "Status__c": "In Approval"}])
    refused(officer, "Contract__c", [{"Id": big, "Status__c": "Activated"}], "activated only by its approval")
    save_many(officer, "Contract__c", [{"Id": big, "Status__c": "Draft"}])

    def state(c: str) -> tuple[object, ...]:
        r = query(apps, f"SELECT Status__c, Approved__c, Approved_By__c FROM Contract__c WHERE Id = '{c}'")[
            "records"][0]
        return r["Status__c"], r["Approved__c"], r["Approved_By__c"]

    # one step at or below $250,000; the chief procurement officer too above it
    for c in (small, big):
        submit_for_approval(officer, c, "Contract_Approval")
        (item,) = items_to_approve(mgr)
        approve(mgr, str(item["Id"]))
    assert state(small) == ("Activated", True, uid(mgr))
    assert state(big) == ("In Approval", False, None)
    (item,) = items_to_approve(cpo)
    approve(cpo, str(item["Id"]))
    assert state(big) == ("Activated", True, uid(cpo))
    # Activated → Expired or Terminated (with a reason); nothing leads back
    refused(officer, "Contract__c", [{"Id": small, "Status__c": "Draft"}], "Contracts move Draft")
    refused(officer, "Contract__c", [{"Id": small, "Status__c": "Terminated"}], "Record why")
    save_many(officer, "Contract__c", [{"Id": small, "Status__c": "Terminated", "Termination_Reason__c": "Default"}])
    refused(officer, "Contract__c", [{"Id": small, "Status__c": "Activated"}], "Contracts move Draft")
    save_many(officer, "Contract__c", [{"Id": big, "Status__c": "Expired"}])


def test_allocation_as_amount_or_percentage(apps: Context, persona: Callable[..., Context]) -> None:
    gm = persona("gm", "Philanthropy_Grants_Manager")
    donor = save_many(apps, "Account", [{"Name": "Acme", "Type": "Donor"}])[0].id
    a, b = (r.id for r in save_many(apps, "Account", [{"Name": f"Charity {c}", "Type": "Charity"} for c in "AB"]))
    pledge = save_many(gm, "Pledge__c", [{"Donor__c": donor, "Total__c": 1000000, "Purpose__c": "Literacy",
                                          "First_Instalment_Date__c": str(TODAY), "Instalments__c": 1}])[0].id
    new = {"Pledge__c": pledge, "Recipient__c": a}
    refused(gm, "Allocation__c", [new], "a percentage of the pledge")
    refused(gm, "Allocation__c", [{**new, "Percent__c": 0}], "above 0%")
    refused(gm, "Allocation__c", [{**new, "Percent__c": 25, "Amount__c": 260000}], "disagree")
    by_pct = save_many(gm, "Allocation__c", [{**new, "Percent__c": 12.5}])[0].id
    both = save_many(gm, "Allocation__c", [{**new, "Recipient__c": b, "Percent__c": 25, "Amount__c": 250000}])[0].id

    def amount(alloc: str | None) -> object:
        return query(gm, f"SELECT Amount__c FROM Allocation__c WHERE Id = '{alloc}'")["records"][0]["Amount__c"]

    assert (amount(by_pct), amount(both)) == (125000, 250000)
    save_many(gm, "Allocation__c", [{"Id": by_pct, "Percent__c": 75}])  # a new percentage moves the amount
    assert amount(by_pct) == 750000
    refused(gm, "Allocation__c", [{"Id": both, "Amount__c": 200000}], "disagree")
    p = query(gm, f"SELECT Allocated__c, Allocated_Percent__c FROM Pledge__c WHERE Id = '{pledge}'")["records"][0]
    assert (p["Allocated__c"], p["Allocated_Percent__c"]) == (1000000, 100)
    save_many(gm, "Pledge__c", [{"Id": pledge, "Status__c": "Committed"}])


def test_certificates_against_contract_minimums_and_endorsements(apps: Context,
                                                                 persona: Callable[..., Context]) -> None:
    officer = persona("off", "Vendor_Procurement_Officer")
    v = vendor(apps, "Paving", insured=False, owner=officer)  # certificates and scorecards follow the vendor
    c = save_many(officer, "Contract__c", [{
        "Vendor__c": v, "Title__c": "Paving", "Min_General_Liability__c": 2000000, "Min_Auto_Liability__c": 1000000,
        "Requires_Additional_Insured__c": True, "Requires_Waiver_Of_Subrogation__c": True}])[0].id
    exp = str(TODAY + timedelta(days=365))
    gl = {"Vendor__c": v, "Contract__c": c, "Coverage_Type__c": "General Liability", "Status__c": "Verified",
          "Expiration_Date__c": exp, "Each_Occurrence_Limit__c": 1000000}
    refused(officer, "Insurance_Certificate__c", [gl], "below the contract's minimum")
    gl["Each_Occurrence_Limit__c"] = 2000000
    refused(officer, "Insurance_Certificate__c", [gl], "evidenced by the endorsement itself")
    # ticking the boxes on the certificate is not enough: the endorsement itself must be on file
    refused(officer, "Insurance_Certificate__c", [{**gl, "Additional_Insured__c": True,
                                                   "Waiver_Of_Subrogation__c": True}], "endorsement itself")
    refused(officer, "Insurance_Certificate__c", [{**gl, "Additional_Insured__c": True,
                                                   "Endorsement_On_File__c": True}], "endorsement itself")
    ok = save_many(officer, "Insurance_Certificate__c", [{**gl, "Additional_Insured__c": True,
                                                          "Waiver_Of_Subrogation__c": True,
                                                          "Endorsement_On_File__c": True}])[0].id
    # a pending auto certificate below its minimum is recorded, but not compliant, and cannot be verified
    auto = save_many(officer, "Insurance_Certificate__c", [{
        "Vendor__c": v, "Contract__c": c, "Coverage_Type__c": "Auto Liability", "Expiration_Date__c": exp,
        "Each_Occurrence_Limit__c": 500000}])[0].id
    rows = {r["Id"]: r for r in query(officer, "SELECT Id, Contract_Minimum__c, Meets_Contract_Minimum__c, "
                                               "Compliant__c FROM Insurance_Certificate__c")["records"]}
    assert [(rows[i]["Contract_Minimum__c"], rows[i]["Meets_Contract_Minimum__c"], rows[i]["Compliant__c"])
            for i in (ok, auto)] == [(2000000, True, True), (1000000, False, False)]
    refused(officer, "Insurance_Certificate__c", [{"Id": auto, "Status__c": "Verified"}], "below the contract")
    refused(officer, "Insurance_Certificate__c", [{"Id": auto, "Status__c": "Verified", "Expiration_Date__c":
                                                   str(TODAY - timedelta(days=1))}], "expired certificate")


def test_scorecard_weights_and_standing(apps: Context, persona: Callable[..., Context]) -> None:
    officer = persona("off", "Vendor_Procurement_Officer")
    v = vendor(apps, "Haulage", owner=officer)
    card = {"Vendor__c": v, "Period_Start__c": "2026-01-01", "Period_End__c": "2026-03-31", "Quality_Score__c": 20,
            "Delivery_Score__c": 30, "Cost_Score__c": 40, "Responsiveness_Score__c": 10}
    refused(officer, "Scorecard__c", [{**card, "Quality_Weight__c": 50}], "add up to 100%")  # 50+30+20+10
    refused(officer, "Scorecard__c", [{**card, "Cost_Score__c": 101}], "from 0 to 100")
    refused(officer, "Scorecard__c", [{**card, "Period_End__c": "2025-12-31"}], "ends after it starts")
    sc = save_many(officer, "Scorecard__c", [card])[0].id  # default weights 40/30/20/10
    got = query(officer, f"SELECT Weighted_Score__c, Standing__c FROM Scorecard__c WHERE Id = '{sc}'")["records"][0]
    assert (got["Weighted_Score__c"], got["Standing__c"]) == (26, "Very Poor")  # 8 + 9 + 8 + 1
    save_many(officer, "Scorecard__c", [{"Id": sc, "Quality_Weight__c": 10, "Cost_Weight__c": 50}])
    got = query(officer, f"SELECT Weighted_Score__c, Standing__c FROM Scorecard__c WHERE Id = '{sc}'")["records"][0]
    assert (got["Weighted_Score__c"], got["Standing__c"]) == (32, "Poor")  # 2 + 9 + 20 + 1
    # a final scorecard sets the vendor's standing and is locked; a Very Poor one blocks new orders
    save_many(officer, "Scorecard__c", [{"Id": sc, "Status__c": "Final"}])
    refused(officer, "Scorecard__c", [{"Id": sc, "Quality_Score__c": 90}], "cannot be changed")
    assert query(apps, f"SELECT Performance_Score__c FROM Account WHERE Id = '{v}'")["records"][0][
        "Performance_Score__c"] == 32
    later = save_many(officer, "Scorecard__c", [{**card, "Period_Start__c": "2026-04-01", "Period_End__c":
                                                 "2026-06-30", "Status__c": "Final"}])[0].id
    assert later
    refused(persona("req", "Vendor_Requester"), "Purchase_Order__c", [{"Vendor__c": v}], "Very Poor")
