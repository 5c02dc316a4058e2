"""Sample data for Vendor Management: ``n`` vendors with contracts, certificates, scorecards, orders and invoices.

The data is built to show every rule and report at work, at any size:

- most vendors are active and insured; a few are onboarding, suspended or have no certificate at all;
- certificates include ones expiring inside the 90/60/30/7-day alert windows and ones already expired;
- contracts carry option periods (some exercised), and include drafts, ones ending within 90 days, an expired
  one and a terminated one;
- purchase orders go through the rules: approved by someone other than the requester (two approvers above
  $100,000), confirmed (then locked), received, and invoiced;
- invoices match within tolerance, slightly off (inside the 2% tolerance), or off (an Exception, and one
  approved anyway with a recorded reason); approved and paid dates give the cycle time;
- scorecards: four quarterly periods per vendor, the latest final one setting the vendor's standing (through
  the app's flow); a few vendors end in the Very Poor band, which blocks new purchase orders.

Orders are raised before the blocking scorecards are finalised, exactly as it happens in life. Deterministic
for a seed. Install-time only: every write goes through ``save_many`` and the app's rules.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from keel.apps.samplekit import batched_save, ensure_staff
from keel.context import Context
from keel.records import save_many
from keel.services.query import query

STAFF = {"officer": ("procurement@keel.local", "Vendor_Procurement_Officer"),
         "cpo": ("cpo@sample.keel.local", "Vendor_Procurement_Officer"),
         "requester": ("requester@keel.local", "Vendor_Requester"),
         "requester2": ("requester2@sample.keel.local", "Vendor_Requester"),
         "ap": ("payables@sample.keel.local", "Vendor_Accounts_Payable")}
INVOICE_APPROVAL_ABOVE = 25_000  # the Invoice Approval process's threshold (Invoice__c.Needs_Approval__c)
CATEGORIES = ("Equipment", "Professional Services", "IT", "Facilities", "Vehicles", "Training")
WORDS = ("Apex", "Summit", "Harbor", "Granite", "Beacon", "Cedar", "Pioneer", "Liberty", "Sierra", "Keystone",
         "Atlas", "Frontier", "Redwood", "Meridian", "Northstar", "Ironwood", "Bluewater", "Crescent")
KINDS = ("Supply", "Systems", "Services", "Logistics", "Fleet", "Solutions", "Facilities", "Training Group")
ITEMS = {"Equipment": ("Body armour", 850), "Professional Services": ("Consulting hour", 185),
         "IT": ("Laptop", 1400), "Facilities": ("Janitorial month", 4200), "Vehicles": ("Patrol vehicle", 48000),
         "Training": ("Course seat", 650)}


def generate(ctx: Context, n: int = 200, *, seed: int = 11, today: date | None = None) -> dict[str, int]:
    """Make ``n`` vendors and their paperwork; returns counts per object."""
    rng = random.Random(seed)
    today = today or date.today()
    staff = ensure_staff(ctx, STAFF)
    _approver_roles(ctx, staff)
    n = max(n, 8)
    status = ["Active"] * n
    for i in range(1, n, 17):
        status[i] = "Onboarding"
    for i in range(3, n, 29):
        status[i] = "Suspended"
    uninsured = set(range(5, n, 23))
    blocked = {i for i in range(7, n, 31) if status[i] == "Active" and i not in uninsured} or {2}
    vendor_type = query(ctx, "SELECT Id FROM RecordType WHERE SobjectType = 'Account' AND DeveloperName = 'Vendor'")
    vendors = batched_save(ctx, "Account", [{
        "RecordTypeId": vendor_type["records"][0]["Id"],
        "Name": f"{WORDS[i % len(WORDS)]} {KINDS[(i // len(WORDS)) % len(KINDS)]}" + (
            f" {i // (len(WORDS) * len(KINDS)) + 1}" if i >= len(WORDS) * len(KINDS) else ""),
        "Vendor_Status__c": status[i], "Industry": "Other",
        "Unique_Entity_Id__c": f"KV{seed:02d}{i:08d}"[:12],
        "Tax_Id__c": f"{rng.randint(10, 99)}-{rng.randint(1000000, 9999999)}",
        "Small_Business_Flags__c": ";".join(rng.sample(["Small Business", "Woman-Owned", "HUBZone", "8(a)",
                                                        "Service-Disabled Veteran-Owned"], rng.randint(0, 2))) or None,
        "Risk_Rating__c": rng.choice(["Low", "Low", "Medium", "High"]),
        "BillingCity": rng.choice(["Austin", "Denver", "Tampa", "Columbus", "Sacramento", "Richmond"]),
    } for i in range(n)])
    counts = {"Account": len(vendors)}
    contracts = _contracts(ctx, rng, staff, vendors, status, today, counts)
    _certificates(ctx, rng, vendors, contracts, uninsured, today, counts)
    orderable = [i for i in range(n) if status[i] == "Active" and i not in uninsured]
    _orders(ctx, rng, staff, vendors, contracts, orderable, today, counts)
    _scorecards(ctx, rng, vendors, blocked, today, counts)
    return counts


def _approver_roles(ctx: Context, staff: dict[str, str]) -> None:
    """The sample's procurement officer and chief procurement officer hold the roles the approval processes route
    to (sample invoices still awaiting approval need an approver); users who already have a role keep it."""
    roles = {str(r["Name"]): str(r["Id"]) for r in query(ctx, "SELECT Id, Name FROM UserRole WHERE Name IN "
                                                              "('Procurement Manager', 'Chief Procurement Officer')")[
        "records"]}
    want = {"officer": "Procurement Manager", "cpo": "Chief Procurement Officer"}
    have = {str(r["Id"]): r["UserRoleId"] for r in query(
        ctx, f"SELECT Id, UserRoleId FROM User WHERE Id IN ('{staff['officer']}', '{staff['cpo']}')")["records"]}
    drafts = [{"Id": staff[k], "UserRoleId": roles[name]} for k, name in want.items()
              if not have.get(staff[k]) and name in roles]
    if drafts:
        save_many(ctx, "User", drafts)


def _contracts(ctx: Context, rng: random.Random, staff: dict[str, str], vendors: list[str], status: list[str],
               today: date, counts: dict[str, int]) -> dict[int, str]:
    """One contract per vendor: activated through Draft → In Approval → Activated, a few left as drafts, a
    few ending within 90 days, one expired and one terminated. Returns vendor index → activated contract."""
    rows: list[dict[str, Any]] = []
    who: list[int] = []
    for i, vid in enumerate(vendors):
        cat = CATEGORIES[i % len(CATEGORIES)]
        if i % 9 == 4:
            end = today + timedelta(days=(7, 30, 60, 90)[(i // 9) % 4] - 1)  # inside an alert window
        else:
            end = today + timedelta(days=rng.randint(120, 900))
        start = end - timedelta(days=365 * rng.randint(1, 3))
        value = float(rng.choice([40_000, 95_000, 180_000, 320_000, 750_000, 1_200_000]))
        options = rng.randint(0, 4)
        rows.append({"Vendor__c": vid, "Title__c": f"{cat} services - {i + 1:04d}", "Category__c": cat,
                     "Value__c": value, "Start_Date__c": start, "End_Date__c": end, "Option_Periods__c": options,
                     "Option_Period_Months__c": 12, "Options_Exercised__c": min(options, rng.randint(0, 1)),
                     "Contracting_Officer__c": staff["officer"], "Requested_By__c": staff["requester"],
                     "Min_General_Liability__c": 1_000_000, "Min_Auto_Liability__c": 500_000 if cat == "Vehicles"
                     else None, "Requires_Additional_Insured__c": i % 3 == 0})
        who.append(i)
    ids = batched_save(ctx, "Contract__c", rows)
    drafts = {k for k in range(len(ids)) if k % 13 == 6 or status[who[k]] == "Onboarding"}
    live = [k for k in range(len(ids)) if k not in drafts]
    batched_save(ctx, "Contract__c", [{"Id": ids[k], "Status__c": "In Approval"} for k in live])
    batched_save(ctx, "Contract__c", [{
        "Id": ids[k], "Status__c": "Activated", "Approved__c": True,
        "Approved_By__c": staff["cpo"] if rows[k]["Value__c"] > 250_000 else staff["officer"]} for k in live])
    ended = [k for k in live if k % 9 != 4][:2]
    if len(ended) == 2:
        batched_save(ctx, "Contract__c", [
            {"Id": ids[ended[0]], "Status__c": "Expired"},
            {"Id": ids[ended[1]], "Status__c": "Terminated", "Termination_Reason__c": "Repeated late deliveries"}])
    counts["Contract__c"] = len(ids)
    return {who[k]: ids[k] for k in live if k not in ended}


def _certificates(ctx: Context, rng: random.Random, vendors: list[str], contracts: dict[int, str],
                  uninsured: set[int], today: date, counts: dict[str, int]) -> None:
    """A general liability certificate per insured vendor (some expiring, some expired), auto for a few."""
    rows: list[dict[str, Any]] = []
    for i, vid in enumerate(vendors):
        if i in uninsured:
            continue
        if i % 11 == 8:
            expiry, state = today - timedelta(days=rng.randint(5, 120)), "Expired"
        elif i % 7 == 2:
            expiry, state = today + timedelta(days=(6, 25, 55, 85)[(i // 7) % 4]), "Verified"
        else:
            expiry, state = today + timedelta(days=rng.randint(100, 365)), "Verified"
        base = {"Vendor__c": vid, "Contract__c": contracts.get(i), "Insurer__c": rng.choice(
            ["Travelers", "Chubb", "Liberty Mutual", "Hartford", "Zurich"]), "Effective_Date__c": expiry - timedelta(
            days=365), "Expiration_Date__c": expiry, "Additional_Insured__c": True, "Waiver_Of_Subrogation__c": True,
            "Endorsement_On_File__c": True, "Primary_Non_Contributory__c": i % 2 == 0}
        rows.append({**base, "Coverage_Type__c": "General Liability", "Status__c": state,
                     "Policy_Number__c": f"GL-{100000 + i}", "Each_Occurrence_Limit__c": 2_000_000,
                     "Aggregate_Limit__c": 4_000_000})
        if i % 6 == 4:
            rows.append({**base, "Coverage_Type__c": "Auto Liability", "Status__c": "Pending Review",
                         "Policy_Number__c": f"AU-{100000 + i}", "Each_Occurrence_Limit__c": 250_000})
    counts["Insurance_Certificate__c"] = len(batched_save(ctx, "Insurance_Certificate__c", rows))
    # a vendor whose only general liability certificate has expired cannot get a new order
    uninsured.update(i for i in range(len(vendors)) if i % 11 == 8)


def _orders(ctx: Context, rng: random.Random, staff: dict[str, str], vendors: list[str], contracts: dict[int, str],
            orderable: list[int], today: date, counts: dict[str, int]) -> None:
    """Two or three orders per orderable vendor: drafts, confirmed, received; invoices for received ones."""
    heads: list[dict[str, Any]] = []
    for i in orderable:
        for _ in range(rng.randint(2, 3)):
            cat = CATEGORIES[i % len(CATEGORIES)]
            heads.append({"Vendor__c": vendors[i], "Contract__c": contracts.get(i), "Category__c": cat,
                          "Description__c": f"{ITEMS[cat][0]} order", "Requested_By__c": rng.choice(
                              [staff["requester"], staff["requester2"]]),
                          "Order_Date__c": today - timedelta(days=rng.randint(5, 330))})
    pos = batched_save(ctx, "Purchase_Order__c", heads)
    lines: list[dict[str, Any]] = []
    for po, h in zip(pos, heads, strict=True):
        item, price = ITEMS[str(h["Category__c"])]
        for k in range(rng.randint(1, 3)):
            lines.append({"Purchase_Order__c": po, "Description__c": f"{item} ({k + 1})",
                          "Quantity__c": rng.randint(1, 6 if price > 10_000 else 40), "Unit_Price__c": price})
    line_ids = batched_save(ctx, "PO_Line__c", lines)
    totals: dict[str, float] = {}
    for ln in lines:
        totals[ln["Purchase_Order__c"]] = totals.get(ln["Purchase_Order__c"], 0.0) + ln["Quantity__c"] * ln[
            "Unit_Price__c"]
    confirmed = [k for k in range(len(pos)) if k % 5 != 0]  # one in five stays a draft
    # the outcome of the Purchase Order Approval process, loaded as history (the process records it the same way)
    batched_save(ctx, "Purchase_Order__c", [{
        "Id": pos[k], "Status__c": "Confirmed", "Approval_Granted__c": True, "Approved_By__c": staff["officer"],
        "Second_Approver__c": staff["cpo"] if totals[pos[k]] > 100_000 else None} for k in confirmed])
    received = {pos[k] for k in confirmed if k % 4 != 1}
    batched_save(ctx, "PO_Line__c", [{"Id": lid, "Quantity_Received__c": ln["Quantity__c"]}
                                     for lid, ln in zip(line_ids, lines, strict=True)
                                     if ln["Purchase_Order__c"] in received])
    batched_save(ctx, "Purchase_Order__c", [{"Id": p, "Status__c": "Received"} for p in sorted(received)])
    counts.update({"Purchase_Order__c": len(pos), "PO_Line__c": len(line_ids)})
    _invoices(ctx, rng, staff, [(p, heads[pos.index(p)]) for p in pos if p in received], totals, today, counts)


def _invoices(ctx: Context, rng: random.Random, staff: dict[str, str], received: list[tuple[str, dict[str, Any]]],
              totals: dict[str, float], today: date, counts: dict[str, int]) -> None:
    """Invoices: exact (approved and mostly paid), +1% (inside tolerance), +15% (an exception, one approved
    anyway with a reason)."""
    rows, kinds = [], []
    for k, (po, head) in enumerate(received):
        kind = ("exact", "exact", "exact", "near", "over")[k % 5]
        factor = {"exact": 1.0, "near": 1.01, "over": 1.15}[kind]
        got = head["Order_Date__c"] + timedelta(days=rng.randint(10, 40))
        amount = round(totals[po] * factor, 2)
        approve = kind != "over" or k % 10 == 4
        # Invoices that were approved went through the Invoice Approval process when above its threshold (the
        # history is loaded as it ended); unapproved exceptions above it arrive now and wait in the queue.
        rows.append({"Name": f"INV-{70000 + k}", "Purchase_Order__c": po, "Amount__c": amount,
                     "Invoice_Date__c": got - timedelta(days=2), "Received_Date__c": min(got, today),
                     "Status__c": "Received" if approve else "Exception",
                     "Approval_Granted__c": approve and amount > INVOICE_APPROVAL_ABOVE})
        kinds.append(kind)
    ids = batched_save(ctx, "Invoice__c", rows)
    ok, paid = [], []
    for k, (iid, kind) in enumerate(zip(ids, kinds, strict=True)):
        approved = min(rows[k]["Received_Date__c"] + timedelta(days=rng.randint(3, 25)), today)
        if kind == "over":
            if k % 10 == 4:
                ok.append({"Id": iid, "Status__c": "Approved", "Approved_By__c": staff["officer"],
                           "Approved_Date__c": approved,
                           "Exception_Reason__c": "Price increase agreed in contract modification 2"})
            continue
        ok.append({"Id": iid, "Status__c": "Approved", "Approved_By__c": staff["officer"],
                   "Approved_Date__c": approved})
        if k % 3 != 2:
            paid.append({"Id": iid, "Status__c": "Paid",
                         "Paid_Date__c": min(approved + timedelta(days=rng.randint(5, 30)), today)})
    batched_save(ctx, "Invoice__c", ok)
    batched_save(ctx, "Invoice__c", paid)
    counts["Invoice__c"] = len(ids)


def _scorecards(ctx: Context, rng: random.Random, vendors: list[str], blocked: set[int], today: date,
                counts: dict[str, int]) -> None:
    """Four quarters per vendor, final except the current one; blocked vendors decline into Very Poor."""
    rows: list[dict[str, Any]] = []
    for i, vid in enumerate(vendors):
        base = rng.uniform(55, 92)
        drift = -14.0 if i in blocked else rng.uniform(-4, 4)
        for q in range(4):
            start = today - timedelta(days=91 * (4 - q))
            score = max(5.0, min(100.0, base + drift * q))
            rows.append({"Vendor__c": vid, "Period_Start__c": start, "Period_End__c": start + timedelta(days=90),
                         "Status__c": "Final" if q < 3 or i % 4 or i in blocked else "Draft",
                         "Quality_Score__c": round(score + rng.uniform(-5, 5), 1) if i not in blocked else round(
                             score, 1), "Delivery_Score__c": round(score, 1),
                         "Cost_Score__c": round(min(100.0, score + 3), 1),
                         "Responsiveness_Score__c": round(max(0.0, score - 3), 1),
                         "Trend__c": "Declining" if drift < -2 else ("Improving" if drift > 2 else "Stable"),
                         "Recommendation__c": "Replace" if i in blocked and q == 3 else (
                             "Probation" if i in blocked else "Maintain")})
            rows[-1]["Quality_Score__c"] = max(0.0, min(100.0, rows[-1]["Quality_Score__c"]))
            if i in blocked and q == 3:
                rows[-1].update(Quality_Score__c=15.0, Delivery_Score__c=20.0, Cost_Score__c=30.0,
                                Responsiveness_Score__c=25.0)
    # one quarter per batch, oldest first, so the latest final scorecard sets the vendor's standing
    counts["Scorecard__c"] = sum(len(batched_save(ctx, "Scorecard__c", rows[q::4])) for q in range(4))
