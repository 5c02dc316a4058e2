"""Philanthropy: multi-rule gift acceptance policies and automatic re-allocation of declined shares, as personas.

Both are metadata only (objects, formulas, validation rules and flows), so these tests drive them the way users
would, through ``save_many`` as the grants manager and as a charity's finance lead, and read the results back
with SOQL and field history.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from keel.apps.philanthropy.charities import onboard_charity
from keel.context import Context
from keel.records import save_many
from keel.services.query import query
from keel.services.security import read_history, user_context
from tests.apps.conftest import refused, uid

TODAY = str(date.today())


def one(ctx: Context, obj: str, draft: dict[str, Any]) -> str:
    rid = save_many(ctx, obj, [draft])[0].id
    assert rid is not None
    return rid


def row(ctx: Context, soql: str) -> dict[str, Any]:
    recs = query(ctx, soql)["records"]
    assert len(recs) == 1, recs
    return dict(recs[0])


def pledge(gm: Context, donor: str, total: float, **extra: Any) -> str:
    return one(gm, "Pledge__c", {"Donor__c": donor, "Total__c": total, "First_Instalment_Date__c": TODAY,
                                 "Instalments__c": 1, **extra})


def screen(ctx: Context, alloc: str) -> dict[str, Any]:
    return row(ctx, "SELECT Status__c, Policy_Proposal__c, Policy_Decline__c, Policy_Condition__c, Policy_Review__c, "
                    f"Screening__c, Screened__c FROM Allocation__c WHERE Id = '{alloc}'")


def test_policy_rules_each_cite_what_matched(apps: Context, persona: Callable[..., Context]) -> None:
    gm = persona("gm", "Philanthropy_Grants_Manager")
    policy = one(gm, "Gift_Policy__c", {
        "Name": "Harbor policy", "Minimum_Gift__c": 1000, "Review_Above__c": 100000,
        "Excluded_Donor_Categories__c": "Tobacco;Gambling", "Declined_Agencies__c": "DOD; ICE",
        "Agency_Rule_Outcome__c": "Accept on Condition", "Restricted_Gifts__c": "Review",
        "Review_Donor_Conditions__c": True})
    charity = one(gm, "Account", {"Name": "Harbor", "Type": "Charity", "Gift_Policy__c": policy})
    plain = one(gm, "Account", {"Name": "Plain Co", "Type": "Donor"})
    tobacco = one(gm, "Account", {"Name": "Smoke Inc", "Type": "Donor", "Donor_Category__c": "Tobacco"})
    # "ice" matches the listed agency whatever its case and spacing; "DODX" does not match "DOD"
    agency = one(gm, "Account", {"Name": "Border Co", "Type": "Donor", "Contract_Agencies__c": "DHS; ice"})
    near = one(gm, "Account", {"Name": "Near Co", "Type": "Donor", "Contract_Agencies__c": "DODX;HHS"})
    cases = {  # donor, amount, pledge extras -> proposal, cited rule
        "clean": (plain, 5000, {}, "Accept", None),
        "small": (plain, 500, {}, "Decline", "Minimum gift: the amount 500 is below the minimum of 1000"),
        "category": (tobacco, 5000, {}, "Decline", "Excluded donor category: Smoke Inc is in Tobacco"),
        "agency": (agency, 5000, {}, "Accept on Condition", "Border Co lists DHS; ice"),
        "near_miss": (near, 5000, {}, "Accept", None),
        "large": (plain, 150000, {}, "Review", "above the review threshold of 100000"),
        "restricted": (plain, 5000, {"Restricted__c": True, "Purpose__c": "Harbor dredging"}, "Review",
                       "restricted to a purpose (Harbor dredging)"),
        "conditions": (plain, 5000, {"Donor_Conditions__c": "Name the pier after us"}, "Review",
                       "carries conditions (Name the pier after us)"),
        # a declining rule outranks a review rule, and both are cited
        "both": (tobacco, 150000, {}, "Decline", "review threshold of 100000"),
    }
    got = {}
    for name, (donor, amount, extra, _p, _c) in cases.items():
        p = pledge(gm, donor, amount, **extra)
        got[name] = screen(gm, one(gm, "Allocation__c", {"Pledge__c": p, "Recipient__c": charity,
                                                           "Amount__c": amount}))
    for name, (_d, _a, _e, proposal, cited) in cases.items():
        s = got[name]
        assert s["Policy_Proposal__c"] == proposal, (name, s)
        if cited is None:
            assert s["Screening__c"] == "Propose accept: no gift policy rule matches" and s["Status__c"] == "Proposed"
        else:
            assert cited in s["Screening__c"] and "Harbor policy" in s["Screening__c"], (name, s)
            # a rule matched: the allocation waits for the charity's review, with the screening it was offered under
            assert s["Status__c"] == "Under Review" and s["Screened__c"] == s["Screening__c"], (name, s)
    assert got["both"]["Screening__c"].startswith("Propose decline") and "Tobacco" in got["both"]["Screening__c"]
    # the screening is live; the snapshot is not: deactivating the policy clears the one and keeps the other
    save_many(gm, "Gift_Policy__c", [{"Id": policy, "Active__c": False}])
    big = row(gm, "SELECT Id FROM Allocation__c WHERE Amount__c = 150000 AND Pledge__r.Donor__r.Name = 'Plain Co'")
    later = screen(gm, big["Id"])
    assert later["Policy_Proposal__c"] == "Accept" and "review threshold" in later["Screened__c"]
    # the rules are checked when the policy is saved
    refused(gm, "Gift_Policy__c", [{"Name": "Bad", "Declined_Agencies__c": "DOD|.*"}], "separated by semicolons")
    refused(gm, "Gift_Policy__c", [{"Name": "Bad", "Minimum_Gift__c": 10, "Review_Above__c": 5}], "minimum gift")


def test_policy_governs_decisions(apps: Context, persona: Callable[..., Context]) -> None:
    gm = persona("gm", "Philanthropy_Grants_Manager")
    lead = persona("lead", "Philanthropy_Charity_Finance")
    policy = one(gm, "Gift_Policy__c", {"Name": "PAF policy", "Declined_Agencies__c": "DOD",
                                        "Review_Above__c": 200000})
    charity = one(gm, "Account", {"Name": "Peace Fund", "Type": "Charity", "Gift_Policy__c": policy})
    onboard_charity(apps, charity, "PF", [uid(lead)])
    lead = user_context(apps, uid(lead))  # a context knows its groups from when it was made
    donor = one(gm, "Account", {"Name": "Arms Co", "Type": "Donor", "Contract_Agencies__c": "DOD"})
    clean = one(gm, "Account", {"Name": "Bakery", "Type": "Donor"})
    declined = one(gm, "Allocation__c", {"Pledge__c": pledge(gm, donor, 1000), "Recipient__c": charity,
                                         "Amount__c": 1000})
    # a rule that declines: plain acceptance is refused, acceptance on conditions is allowed
    refused(lead, "Allocation__c", [{"Id": declined, "Status__c": "Accepted"}], "does not accept this gift")
    one(lead, "Condition__c", {"Allocation__c": declined, "Name": "Arms Co ends its DOD contract",
                               "Condition_Owner__c": uid(lead), "Due_Date__c": TODAY})
    save_many(lead, "Allocation__c", [{"Id": declined, "Status__c": "Accepted with Conditions",
                                       "Decision_Reason__c": "Accepted once the DOD contract ends."}])
    # a gift created already accepted skips the review the policy asks for
    big = pledge(gm, clean, 300000)
    refused(gm, "Allocation__c", [{"Pledge__c": big, "Recipient__c": charity, "Amount__c": 300000,
                                   "Status__c": "Accepted", "Decided_By__c": uid(gm),
                                   "Decided_At__c": f"{TODAY}T12:00:00Z"}], "put it Under Review")
    reviewed = one(gm, "Allocation__c", {"Pledge__c": big, "Recipient__c": charity, "Amount__c": 300000})
    save_many(lead, "Allocation__c", [{"Id": reviewed, "Status__c": "Accepted"}])  # reviewed, then accepted
    assert screen(gm, reviewed)["Status__c"] == "Accepted"
    # no rule matches: accepted straight from proposed
    small = one(gm, "Allocation__c", {"Pledge__c": pledge(gm, clean, 5000), "Recipient__c": charity,
                                      "Amount__c": 5000})
    save_many(lead, "Allocation__c", [{"Id": small, "Status__c": "Accepted"}])
    # the lead reads the policy but cannot change it; pledges stay private to the grants manager
    assert not query(lead, "SELECT Id FROM Pledge__c")["records"] and not query(lead, "SELECT Id FROM Payment__c")[
        "records"]
    assert row(lead, f"SELECT Name FROM Gift_Policy__c WHERE Id = '{policy}'")["Name"] == "PAF policy"
    refused(lead, "Gift_Policy__c", [{"Id": policy, "Review_Above__c": 1}], "")


def test_conditions_give_the_pledge_owner_follow_up_tasks(apps: Context, persona: Callable[..., Context]) -> None:
    gm = persona("gm", "Philanthropy_Grants_Manager")
    donor = one(gm, "Account", {"Name": "Northwind", "Type": "Donor"})
    charity = one(gm, "Account", {"Name": "Riverside", "Type": "Charity"})
    alloc = one(gm, "Allocation__c", {"Pledge__c": pledge(gm, donor, 100), "Recipient__c": charity,
                                      "Amount__c": 100})
    save_many(gm, "Allocation__c", [{"Id": alloc, "Status__c": "Under Review"}])
    one(gm, "Condition__c", {"Allocation__c": alloc, "Name": "Quarterly outcome report", "Due_Date__c": "2031-03-31"})
    task = row(gm, "SELECT Name, ActivityDate, WhatId, OwnerId, Priority, Description FROM Task")
    assert task["Name"] == "Follow up: Quarterly outcome report" and task["ActivityDate"] == "2031-03-31"
    assert (task["WhatId"], task["OwnerId"], task["Priority"]) == (donor, uid(gm), "High")
    assert "Riverside" in task["Description"]


def test_declines_follow_the_pledges_reallocation_preference(apps: Context,
                                                             persona: Callable[..., Context]) -> None:
    gm = persona("gm", "Philanthropy_Grants_Manager")
    lead_a = persona("lead_a", "Philanthropy_Charity_Finance")
    lead_b = persona("lead_b", "Philanthropy_Charity_Finance")
    donor = one(gm, "Account", {"Name": "Contoso", "Type": "Donor"})
    a, b, c = (one(gm, "Account", {"Name": n, "Type": "Charity"}) for n in ("Alpha", "Beta", "Gamma"))
    onboard_charity(apps, a, "ALPHA", [uid(lead_a)])
    onboard_charity(apps, b, "BETA", [uid(lead_b)])
    lead_a, lead_b = user_context(apps, uid(lead_a)), user_context(apps, uid(lead_b))
    refused(gm, "Pledge__c", [{"Donor__c": donor, "Total__c": 10, "First_Instalment_Date__c": TODAY,
                               "Instalments__c": 1, "Reallocation_Preference__c": "Re-offer to Alternate Recipient"}],
            "names the alternate recipient")

    # re-offer: the declined share goes to the alternate recipient, both allocations point at each other
    p1 = pledge(gm, donor, 1000, Reallocation_Preference__c="Re-offer to Alternate Recipient",
                Alternate_Recipient__c=b)
    first = [r.id for r in save_many(gm, "Allocation__c", [
        {"Pledge__c": p1, "Recipient__c": a, "Amount__c": 600, "Percent__c": 60},
        {"Pledge__c": p1, "Recipient__c": c, "Amount__c": 400, "Percent__c": 40}])]
    save_many(gm, "Pledge__c", [{"Id": p1, "Status__c": "Committed"}])
    assert not query(lead_b, "SELECT Id FROM Allocation__c")["records"]
    save_many(lead_a, "Allocation__c", [{"Id": first[0], "Status__c": "Declined", "Decision_Reason__c": "Not now."}])
    old = row(gm, "SELECT Reallocation_Decision__c, Move_To_Recipient__c, Moved_To__c, Decided_By__c "
                  f"FROM Allocation__c WHERE Id = '{first[0]}'")
    assert old["Reallocation_Decision__c"] == "Move to Another Recipient" and old["Move_To_Recipient__c"] == b
    assert old["Decided_By__c"] == uid(lead_a)
    new = row(gm, "SELECT Id, Recipient__c, Amount__c, Percent__c, Status__c, Reoffer_Of__c, OwnerId "
                  f"FROM Allocation__c WHERE Reoffer_Of__c = '{first[0]}'")
    assert old["Moved_To__c"] == new["Id"]
    assert (new["Recipient__c"], new["Amount__c"], new["Percent__c"], new["Status__c"], new["OwnerId"]) == (
        b, 600, 60, "Proposed", uid(gm))
    # the alternate charity's finance lead sees the re-offer at once; the declining charity does not
    assert [r["Id"] for r in query(lead_b, "SELECT Id FROM Allocation__c")["records"]] == [new["Id"]]
    assert new["Id"] not in {r["Id"] for r in query(lead_a, "SELECT Id FROM Allocation__c")["records"]}
    p = row(gm, f"SELECT Allocated__c, Unallocated__c, Open_Declines__c, Allocation_Status__c FROM Pledge__c "
                f"WHERE Id = '{p1}'")
    assert (p["Allocated__c"], p["Unallocated__c"], p["Open_Declines__c"], p["Allocation_Status__c"]) == (
        1000, 0, 0, "Balanced")
    hist = read_history(apps, "Allocation__c", first[0])
    assert any("Reallocation_Decision__c" in str(h) and "Move to Another Recipient" in str(h) for h in hist)
    # when the alternate declines too, nothing is re-offered to it again: the grants manager decides
    save_many(lead_b, "Allocation__c", [{"Id": new["Id"], "Status__c": "Declined", "Decision_Reason__c": "No."}])
    assert row(gm, f"SELECT Open_Declines__c FROM Pledge__c WHERE Id = '{p1}'")["Open_Declines__c"] == 1
    assert len(query(gm, f"SELECT Id FROM Allocation__c WHERE Pledge__c = '{p1}'")["records"]) == 3
    # ... who moves it by naming a recipient; the flow makes the allocation
    refused(gm, "Allocation__c", [{"Id": new["Id"], "Reallocation_Decision__c": "Move to Another Recipient"}],
            "names the recipient")
    refused(gm, "Allocation__c", [{"Id": new["Id"], "Reallocation_Decision__c": "Move to Another Recipient",
                                   "Move_To_Recipient__c": b}], "different recipient")
    save_many(gm, "Allocation__c", [{"Id": new["Id"], "Reallocation_Decision__c": "Move to Another Recipient",
                                     "Move_To_Recipient__c": c}])
    moved = row(gm, f"SELECT Recipient__c, Amount__c FROM Allocation__c WHERE Reoffer_Of__c = '{new['Id']}'")
    assert (moved["Recipient__c"], moved["Amount__c"]) == (c, 600)
    assert row(gm, f"SELECT Allocated__c FROM Pledge__c WHERE Id = '{p1}'")["Allocated__c"] == 1000

    # return to donor: the decline settles the share, and the pledge balances on what is left
    p2 = pledge(gm, donor, 1000, Reallocation_Preference__c="Return to Donor")
    back = [r.id for r in save_many(gm, "Allocation__c", [
        {"Pledge__c": p2, "Recipient__c": a, "Amount__c": 250, "Percent__c": 25},
        {"Pledge__c": p2, "Recipient__c": c, "Amount__c": 750, "Percent__c": 75}])]
    save_many(lead_a, "Allocation__c", [{"Id": back[0], "Status__c": "Declined", "Decision_Reason__c": "Full."}])
    assert row(gm, f"SELECT Reallocation_Decision__c FROM Allocation__c WHERE Id = '{back[0]}'")[
        "Reallocation_Decision__c"] == "Return to Donor"
    p = row(gm, f"SELECT Returned__c, Unallocated__c, Open_Declines__c, Allocation_Status__c, Allocation_Balanced__c "
                f"FROM Pledge__c WHERE Id = '{p2}'")
    assert (p["Returned__c"], p["Unallocated__c"], p["Open_Declines__c"]) == (250, 0, 0)
    assert p["Allocation_Status__c"] == "Balanced after returning 250 to the donor" and p["Allocation_Balanced__c"]
    save_many(gm, "Pledge__c", [{"Id": p2, "Status__c": "Committed"}])  # 750 allocated + 250 returned = 1000

    # decide each decline (the default): nothing is decided for the grants manager
    p3 = pledge(gm, donor, 100)
    ask = one(gm, "Allocation__c", {"Pledge__c": p3, "Recipient__c": a, "Amount__c": 100})
    save_many(lead_a, "Allocation__c", [{"Id": ask, "Status__c": "Declined", "Decision_Reason__c": "No."}])
    assert row(gm, f"SELECT Reallocation_Decision__c FROM Allocation__c WHERE Id = '{ask}'")[
        "Reallocation_Decision__c"] is None
    assert row(gm, f"SELECT Open_Declines__c FROM Pledge__c WHERE Id = '{p3}'")["Open_Declines__c"] == 1
