"""Sample data for Philanthropy: the $1,000,000 pledge split among four charities, played out in the data.

Northwind Industries pledges $1,000,000 for community resilience, paid in four quarterly instalments and split
$250,000 (25%) to each of four charities. Three accept. The Peace Action Fund's gift acceptance policy declines
donors holding contracts with the Department of Defense, and Northwind lists one, so the allocation's screening
proposes a decline; the charity instead accepts with a condition, recorded as a Gift Condition owned by its
finance lead: Northwind cancels the listed contract within 90 days. Payments are allocated only to accepted
allocations; a mistaken extra transfer to the Harbor Food Bank is refunded as a negative payment allocation.
Three instalments are due and two paid, so the pledge shows as overdue (derived from the schedule, never
stored).

Each charity screens gifts with its own Gift Acceptance Policy (several rules each). With ``n`` above 1, ``n - 1``
more pledges from other donors are split among the same charities, with some allocations still awaiting a decision,
some declined (for a reason of their own, or because the policy declines the donor) and returned to the donor by the
pledge's re-allocation preference (an audited decision).

Each charity is onboarded with a users group and a sharing rule (``charities.onboard_charity``), and the demo
charity finance lead (``charityfinance@keel.local``) works for the Peace Action Fund, so logging in as them shows
exactly one charity's allocations. Install-time only; every write goes through ``save_many`` and the app's rules.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from keel.apps.philanthropy.charities import onboard_charity
from keel.apps.samplekit import batched_save, ensure_staff
from keel.context import Context
from keel.records import save_many
from keel.services.query import query

# code, name, declined agency, review threshold, finance lead (username)
CHARITIES = (
    ("RLP", "Riverside Literacy Project", None, None, "finance.rlp@sample.keel.local"),
    ("HFB", "Harbor Food Bank", None, 500_000, "finance.hfb@sample.keel.local"),
    ("ODS", "Open Door Shelter", None, 200_000, "finance.ods@sample.keel.local"),
    ("PAF", "Peace Action Fund", "DOD", None, "charityfinance@keel.local"),
)
# the rest of each charity's gift acceptance policy: minimum gift, excluded donor categories, restricted gifts
POLICY_EXTRAS: dict[str, dict[str, Any]] = {
    "RLP": {"Minimum_Gift__c": 1_000, "Restricted_Gifts__c": "Review"},
    "HFB": {"Excluded_Donor_Categories__c": "Tobacco;Gambling"},
    "ODS": {"Review_Donor_Conditions__c": True, "Excluded_Donor_Categories__c": "Firearms"},
    "PAF": {"Excluded_Donor_Categories__c": "Firearms;Defense Contractor", "Minimum_Gift__c": 5_000},
}
STAFF = {"grants": ("grants@keel.local", "Philanthropy_Grants_Manager"),
         **{code: (user, "Philanthropy_Charity_Finance") for code, _n, _a, _t, user in CHARITIES}}
OTHER_DONORS = (("Contoso Foundation", "HHS"), ("Fabrikam Group", "DOD;DOE"), ("Tailspin Logistics", None))


def _at(d: date) -> str:
    return f"{d.isoformat()}T15:00:00Z"


def one(ctx: Context, obj: str, draft: dict[str, Any]) -> str:
    rid = save_many(ctx, obj, [draft])[0].id
    assert rid is not None
    return rid


def generate(ctx: Context, n: int = 1, *, seed: int = 5, today: date | None = None) -> dict[str, int]:
    """The scenario pledge plus ``n - 1`` others; returns counts per object."""
    today = today or date.today()
    staff = ensure_staff(ctx, STAFF)
    donor = one(ctx, "Account", {"Name": "Northwind Industries", "Type": "Donor", "Industry": "Manufacturing",
                                 "Contract_Agencies__c": "DHS;DOD", "EIN__c": "41-7731200"})
    policies = batched_save(ctx, "Gift_Policy__c", [{
        "Name": f"{name} gift acceptance policy", "Adopted__c": f"Board resolution {2021 + k}-0{k + 3}",
        "Declined_Agencies__c": agency, "Review_Above__c": threshold, **POLICY_EXTRAS[code]}
        for k, (code, name, agency, threshold, _u) in enumerate(CHARITIES)])
    charity_ids = batched_save(ctx, "Account", [{
        "Name": name, "Type": "Charity", "Industry": "Nonprofit", "Gift_Policy__c": policy,
        "EIN__c": f"52-{1000000 + k * 7919}"}
        for k, ((_c, name, _a, _t, _u), policy) in enumerate(zip(CHARITIES, policies, strict=True))])
    charity = {code: cid for (code, *_rest), cid in zip(CHARITIES, charity_ids, strict=True)}
    for code, *_rest in CHARITIES:
        onboard_charity(ctx, charity[code], code, [staff[code]])
    counts = {"Account": 1 + len(charity_ids), "Gift_Policy__c": len(policies), "Pledge__c": 0,
              "Allocation__c": 0, "Condition__c": 0, "Payment__c": 0, "Payment_Allocation__c": 0}
    _scenario(ctx, staff, donor, charity, today, counts)
    if n > 1:
        _more(ctx, random.Random(seed), staff, charity, n - 1, today, counts)
    return counts


def _scenario(ctx: Context, staff: dict[str, str], donor: str, charity: dict[str, str], today: date,
              counts: dict[str, int]) -> None:
    start = today - timedelta(days=200)
    pledge = one(ctx, "Pledge__c", {
        "Donor__c": donor, "Total__c": 1_000_000, "Purpose__c": "Community resilience programme",
        "Pledge_Date__c": start - timedelta(days=30), "First_Instalment_Date__c": start, "Instalments__c": 4,
        "Frequency__c": "Quarterly", "OwnerId": staff["grants"]})
    codes = [c for c, *_r in CHARITIES]
    alloc = dict(zip(codes, batched_save(ctx, "Allocation__c", [{
        "Pledge__c": pledge, "Recipient__c": charity[c], "Amount__c": 250_000, "Percent__c": 25,
        "OwnerId": staff["grants"]} for c in codes]), strict=True))
    save_many(ctx, "Pledge__c", [{"Id": pledge, "Status__c": "Committed"}])
    # three charities accept; the Open Door Shelter reviews first (the amount is above its review threshold)
    save_many(ctx, "Allocation__c", [{"Id": alloc["ODS"], "Status__c": "Under Review"},
                                     {"Id": alloc["PAF"], "Status__c": "Under Review"}])
    save_many(ctx, "Allocation__c", [{
        "Id": alloc[c], "Status__c": "Accepted", "Decided_By__c": staff[c], "Decided_At__c": _at(start - timedelta(
            days=d)), "Decision_Reason__c": reason} for c, d, reason in (
        ("RLP", 20, "Fits our adult literacy programme."), ("HFB", 18, "Unrestricted operating support."),
        ("ODS", 9, "Reviewed by the gift acceptance committee: accepted."))])
    p1 = one(ctx, "Payment__c", {"Pledge__c": pledge, "Amount__c": 187_500, "Payment_Date__c": start + timedelta(
        days=5), "Method__c": "Wire", "Reference__c": "NW-2024-001"})
    # the Peace Action Fund declines unless Northwind cancels its DOD contract: accepted with a condition
    one(ctx, "Condition__c", {
        "Allocation__c": alloc["PAF"], "Name": "Northwind cancels its listed Department of Defense contract",
        "Condition_Owner__c": staff["PAF"], "Due_Date__c": today + timedelta(days=90), "Status__c": "Open"})
    save_many(ctx, "Allocation__c", [{
        "Id": alloc["PAF"], "Status__c": "Accepted with Conditions", "Decided_By__c": staff["PAF"],
        "Decided_At__c": _at(start + timedelta(days=40)),
        "Decision_Reason__c": "Our gift acceptance policy declines donors holding contracts with the Department of "
                              "Defense. We accept on condition that Northwind cancels the listed DOD contract "
                              "within 90 days; funds are held until then."}])
    p2 = one(ctx, "Payment__c", {"Pledge__c": pledge, "Amount__c": 262_500, "Payment_Date__c": start + timedelta(
        days=95), "Method__c": "Wire", "Reference__c": "NW-2024-002"})
    refund = one(ctx, "Payment__c", {"Pledge__c": pledge, "Amount__c": -12_500, "Payment_Date__c": start + timedelta(
        days=110), "Method__c": "Wire", "Reference__c": "NW-2024-002-R"})
    rows = [{"Payment__c": p1, "Allocation__c": alloc[c], "Amount__c": 62_500} for c in ("RLP", "HFB", "ODS")]
    rows += [{"Payment__c": p2, "Allocation__c": alloc[c], "Amount__c": 62_500} for c in codes]
    rows += [{"Payment__c": p2, "Allocation__c": alloc["HFB"], "Amount__c": 12_500},  # sent twice by mistake
             {"Payment__c": refund, "Allocation__c": alloc["HFB"], "Amount__c": -12_500}]
    counts["Payment_Allocation__c"] += len(batched_save(ctx, "Payment_Allocation__c", rows))
    counts["Pledge__c"] += 1
    counts["Allocation__c"] += 4
    counts["Condition__c"] += 1
    counts["Payment__c"] += 3


def _more(ctx: Context, rng: random.Random, staff: dict[str, str], charity: dict[str, str], m: int, today: date,
          counts: dict[str, int]) -> None:
    """``m`` further pledges: committed, split 2-4 ways, mostly accepted, some proposed, some declined."""
    donors = batched_save(ctx, "Account", [{"Name": name, "Type": "Donor", "Contract_Agencies__c": agencies}
                                           for name, agencies in OTHER_DONORS])
    counts["Account"] += len(donors)
    codes = [c for c, *_r in CHARITIES]
    pledges: list[dict[str, Any]] = []
    splits: list[list[tuple[str, float]]] = []
    for k in range(m):
        total = float(rng.choice([50_000, 120_000, 300_000, 450_000, 600_000]))
        first = today - timedelta(days=rng.randint(0, 500))
        pledges.append({"Donor__c": donors[k % len(donors)], "Total__c": total, "Purpose__c": rng.choice(
            ["Scholarships", "Disaster relief", "Food security", "After-school programmes"]),
            "First_Instalment_Date__c": first, "Pledge_Date__c": first - timedelta(days=20),
            "Instalments__c": rng.choice([1, 2, 4]), "Frequency__c": rng.choice(["Quarterly", "Annually"]),
            "Reallocation_Preference__c": "Return to Donor", "OwnerId": staff["grants"]})
        who = rng.sample(codes, rng.randint(2, 4))
        share = round(total / len(who), 2)
        splits.append([(c, share if j < len(who) - 1 else round(total - share * (len(who) - 1), 2))
                       for j, c in enumerate(who)])
    pids = batched_save(ctx, "Pledge__c", pledges)
    drafts: list[dict[str, Any]] = [
        {"Pledge__c": p, "Recipient__c": charity[c], "Amount__c": amt, "OwnerId": staff["grants"]}
        for p, split in zip(pids, splits, strict=True) for c, amt in split]
    aids = batched_save(ctx, "Allocation__c", drafts)
    batched_save(ctx, "Pledge__c", [{"Id": p, "Status__c": "Committed"} for p in pids])
    # the charities' policies screened every allocation as it was offered; a declining rule is followed
    proposal: dict[str, str] = {}
    for i in range(0, len(aids), 500):
        chunk = "','".join(aids[i:i + 500])
        proposal.update({str(r["Id"]): str(r["Policy_Proposal__c"]) for r in query(
            ctx, f"SELECT Id, Policy_Proposal__c FROM Allocation__c WHERE Id IN ('{chunk}')")["records"]})
    decided = []
    for k, (aid, d) in enumerate(zip(aids, drafts, strict=True)):
        code = next(c for c in codes if charity[c] == d["Recipient__c"])
        when = _at(today - timedelta(days=rng.randint(1, 60)))
        if proposal[aid] == "Decline":
            decided.append({"Id": aid, "Status__c": "Declined", "Decided_By__c": staff[code], "Decided_At__c": when,
                            "Decision_Reason__c": "Our gift acceptance policy declines this donor."})
        elif k % 7 == 3:
            decided.append({"Id": aid, "Status__c": "Declined", "Decided_By__c": staff[code], "Decided_At__c": when,
                            "Decision_Reason__c": "Outside our mission this year."})
        elif k % 5 != 1:
            decided.append({"Id": aid, "Status__c": "Accepted", "Decided_By__c": staff[code], "Decided_At__c": when})
    # declined shares go back to the donor by the pledges' re-allocation preference (a flow decides it)
    batched_save(ctx, "Allocation__c", decided)
    accepted = {d["Id"]: d for d in decided if d["Status__c"] == "Accepted"}
    pays, parts = [], []
    for p, pledge in zip(pids, pledges, strict=True):
        mine = [(aid, d) for aid, d in zip(aids, drafts, strict=True) if d["Pledge__c"] == p and aid in accepted]
        if not mine or pledge["First_Instalment_Date__c"] > today:
            continue
        portion = [(aid, round(float(d["Amount__c"]) / float(pledge["Instalments__c"]), 2)) for aid, d in mine]
        pays.append({"Pledge__c": p, "Amount__c": round(sum(a for _i, a in portion), 2),
                     "Payment_Date__c": pledge["First_Instalment_Date__c"], "Method__c": "ACH"})
        parts.append(portion)
    pay_ids = batched_save(ctx, "Payment__c", pays)
    pal = batched_save(ctx, "Payment_Allocation__c", [{"Payment__c": pid, "Allocation__c": aid, "Amount__c": amt}
                                                      for pid, portion in zip(pay_ids, parts, strict=True)
                                                      for aid, amt in portion])
    counts["Pledge__c"] += len(pids)
    counts["Allocation__c"] += len(aids)
    counts["Payment__c"] += len(pay_ids)
    counts["Payment_Allocation__c"] += len(pal)
