"""Philanthropy on day one, in a real browser: the grants manager records a donor and a pledge that re-offers
declined shares to an alternate charity, splits it across three charities (the Peace Action Fund's gift
acceptance policy screens the donor out and puts that share under review; committing before the split balances is
refused), and then each charity's finance lead, seeing only their own allocation, decides: one accepts, one
declines (the share is re-offered to the alternate charity by a flow), and one, whose policy refuses a plain
acceptance, accepts on a condition, which gives the grants manager a follow-up task. Each step checks what the
user sees and what was stored; screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest

from keel.apps.philanthropy.charities import onboard_charity
from keel.records import save_many
from tests.apps.live import Live, Persona, chromium, live_apps, logged_in, pick, record_id, shot

GRANTS = Persona("grace@walkthrough.test", "Grants", ("Philanthropy_Grants_Manager",))
LEADS = {code: Persona(f"finance.{code.lower()}@walkthrough.test", f"Finance {code}",
                       ("Philanthropy_Charity_Finance",)) for code in ("RLP", "HFB", "PAF")}
CHARITIES = {"RLP": "Riverside Literacy Project", "HFB": "Harbor Food Bank", "PAF": "Peace Action Fund",
             "ODS": "Open Door Shelter"}
TODAY = date.today()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The charities are onboarded by the administrator before day one (groups and sharing rules); the Peace
    Action Fund screens gifts with its board's policy."""
    with live_apps(tmp_path_factory.mktemp("walk-philanthropy"), ["philanthropy"],
                   [GRANTS, *LEADS.values()]) as server:
        policy = save_many(server.ctx, "Gift_Policy__c", [{
            "Name": "Peace Action Fund gift acceptance policy", "Adopted__c": "Board resolution 2024-07",
            "Declined_Agencies__c": "DOD", "Agency_Rule_Outcome__c": "Decline", "Minimum_Gift__c": 5000}])[0].id
        ids = [r.id for r in save_many(server.ctx, "Account", [
            {"Name": name, "Type": "Charity", **({"Gift_Policy__c": policy} if code == "PAF" else {})}
            for code, name in CHARITIES.items()])]
        for (code, _name), cid in zip(CHARITIES.items(), ids, strict=True):
            assert cid is not None
            lead = LEADS.get(code)
            onboard_charity(server.ctx, cid, code, [server.users[lead.username]] if lead else [])
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def allocation_of(live: Live, code: str) -> dict[str, Any]:
    return live.rows("SELECT Id, Name, Status__c, Policy_Proposal__c, Decided_By__c, Reallocation_Decision__c, "
                     "Moved_To__c, Amount__c FROM Allocation__c WHERE Recipient_Code__c = "
                     f"'{code}' ORDER BY Name")[0]


def decide(pg: Any, alloc: dict[str, Any], status: str, reason: str | None = None) -> None:
    pg.goto(f"/r/{alloc['Id']}/edit")
    pg.get_by_label("Status", exact=True).select_option(status)
    if reason is not None:
        pg.get_by_label("Decision Reason").fill(reason)
    pg.get_by_role("button", name="Save").click()


def test_philanthropy_walkthrough(browser: Any, live: Live) -> None:
    with logged_in(browser, live.url, GRANTS.username) as pg:
        # 1. the donor, and a pledge whose declined shares are re-offered to the Open Door Shelter
        pg.goto("/o/Account/new")
        pg.get_by_label("Account Name").fill("Northwind Industries")
        pg.get_by_label("Type", exact=True).select_option("Donor")
        pg.get_by_label("Agencies Holding Contracts").fill("DHS;DOD")
        pg.get_by_role("button", name="Save").click()
        donor = record_id(pg)
        pg.goto("/o/Pledge__c/new")
        pick(pg, "Donor", "Northwind Industries")
        pg.get_by_label("Pledge Total").fill("900000")
        pg.get_by_label("Purpose", exact=True).fill("Community resilience programme")
        pg.get_by_label("First Instalment Due").fill(str(TODAY + timedelta(days=30)))
        pg.get_by_label("Number of Instalments").fill("3")
        pg.get_by_label("Re-allocation Preference").select_option("Re-offer to Alternate Recipient")
        pick(pg, "Alternate Recipient", CHARITIES["ODS"])
        pg.get_by_role("button", name="Save").click()
        pledge = record_id(pg)
        pledge_name = live.rows(f"SELECT Name FROM Pledge__c WHERE Id = '{pledge}'")[0]["Name"]

        # 2. the split: a third each; committing before it balances is refused
        for code in ("RLP", "HFB", "PAF"):
            pg.goto("/o/Allocation__c/new")
            pick(pg, "Pledge", pledge_name)
            pick(pg, "Recipient", CHARITIES[code])
            pg.get_by_label("Amount", exact=True).fill("300000")
            pg.get_by_role("button", name="Save").click()
            record_id(pg)
            if code == "HFB":
                pg.goto(f"/r/{pledge}/edit")
                pg.get_by_label("Status", exact=True).select_option("Committed")
                pg.get_by_role("button", name="Save").click()
                assert pg.get_by_text("add up exactly to the pledge total").is_visible()
        # the policy screened the Peace Action Fund's share as it was offered
        assert pg.get_by_text("Under Review", exact=True).is_visible()
        assert pg.get_by_text(re.compile(r"Propose decline .* DOD")).first.is_visible()
        shot(pg, "philanthropy-01-policy-screening")
        pg.goto(f"/r/{pledge}/edit")
        pg.get_by_label("Status", exact=True).select_option("Committed")
        pg.get_by_role("button", name="Save").click()
        record_id(pg)
    p = live.rows(f"SELECT Status__c, Allocated__c, Allocation_Status__c FROM Pledge__c WHERE Id = '{pledge}'")[0]
    assert (p["Status__c"], p["Allocated__c"], p["Allocation_Status__c"]) == ("Committed", 900000, "Balanced")
    assert [allocation_of(live, c)["Status__c"] for c in ("RLP", "HFB", "PAF")] == ["Proposed", "Proposed",
                                                                                     "Under Review"]

    # 3. the Riverside Literacy Project accepts; its lead sees its own allocation only
    with logged_in(browser, live.url, LEADS["RLP"].username) as pg:
        pg.goto("/o/Allocation__c")
        rows = pg.locator("table.list tbody tr")
        assert rows.count() == 1 and allocation_of(live, "RLP")["Name"] in rows.first.inner_text()
        decide(pg, allocation_of(live, "RLP"), "Accepted")
        record_id(pg)
    rlp = allocation_of(live, "RLP")
    assert (rlp["Status__c"], rlp["Decided_By__c"]) == ("Accepted", live.users[LEADS["RLP"].username])

    # 4. the Harbor Food Bank declines (a reason is required); the pledge re-offers the share to the alternate
    with logged_in(browser, live.url, LEADS["HFB"].username) as pg:
        decide(pg, allocation_of(live, "HFB"), "Declined")
        assert pg.get_by_text("A decline states its reason.").is_visible()
        decide(pg, allocation_of(live, "HFB"), "Declined", "Outside our food-security mission this year.")
        record_id(pg)
        assert pg.get_by_text("Move to Another Recipient", exact=True).is_visible()
        shot(pg, "philanthropy-02-declined-and-reoffered")
    hfb = allocation_of(live, "HFB")
    assert (hfb["Status__c"], hfb["Reallocation_Decision__c"]) == ("Declined", "Move to Another Recipient")
    ods = allocation_of(live, "ODS")
    assert (ods["Id"], ods["Status__c"], ods["Amount__c"]) == (hfb["Moved_To__c"], "Proposed", 300000)

    # 5. the Peace Action Fund's policy refuses a plain acceptance; it accepts on a condition instead
    with logged_in(browser, live.url, LEADS["PAF"].username) as pg:
        paf = allocation_of(live, "PAF")
        decide(pg, paf, "Accepted")
        assert pg.get_by_text("does not accept this gift as it stands").is_visible()
        pg.goto("/o/Condition__c/new")
        pg.locator("#f-Name").fill("Northwind cancels its listed Department of Defense contract")
        pick(pg, "Allocation", paf["Name"])
        pick(pg, "Condition Owner", "Finance PAF")
        pg.get_by_label("Due Date").fill(str(TODAY + timedelta(days=90)))
        pg.get_by_role("button", name="Save").click()
        record_id(pg)
        decide(pg, paf, "Accepted with Conditions", "Accepted once Northwind cancels its DOD contract.")
        record_id(pg)
        assert pg.get_by_text("Northwind cancels its listed Department of Defense contract").is_visible()
        shot(pg, "philanthropy-03-accepted-with-condition")
    paf = allocation_of(live, "PAF")
    assert (paf["Status__c"], paf["Decided_By__c"]) == ("Accepted with Conditions", live.users[LEADS["PAF"].username])

    # 6. the grants manager sees the outcome: a follow-up task on the donor, and a pledge still balanced
    with logged_in(browser, live.url, GRANTS.username) as pg:
        pg.goto("/o/Task")
        assert pg.get_by_text("Follow up: Northwind cancels its listed Department of Defense contract").is_visible()
        shot(pg, "philanthropy-04-follow-up-task")
        pg.goto(f"/r/{pledge}")
        assert pg.get_by_text("Balanced", exact=True).first.is_visible()
        shot(pg, "philanthropy-05-pledge")
    task = live.rows("SELECT Name, OwnerId, WhatId, ActivityDate FROM Task")
    assert [(t["OwnerId"], t["WhatId"], t["ActivityDate"]) for t in task] == [
        (live.users[GRANTS.username], donor, str(TODAY + timedelta(days=90)))]
    p = live.rows(f"SELECT Allocated__c, Accepted__c, Open_Declines__c FROM Pledge__c WHERE Id = '{pledge}'")[0]
    assert (p["Allocated__c"], p["Accepted__c"], p["Open_Declines__c"]) == (900000, 600000, 0)
