"""Recruiting on day one, in a real browser: a recruiter opens a position (the director approves the
requisition), adds a candidate and an application, moves it on the kanban (an illegal jump is refused and the card
snaps back), schedules a background gate, and the adjudicator records a failing result with a right to respond,
which closes the application. Each step checks what the user sees and what was stored; screenshots go to
tests/artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.apps.live import Live, Persona, chromium, live_apps, logged_in, pick, record_id, shot

RECRUITER = Persona("rita@walkthrough.test", "Recruiter", ("Recruiting_Recruiter",))
DIRECTOR = Persona("dora@walkthrough.test", "Director", ("Recruiting_Admin",), role="Recruiting Director")
ADJUDICATOR = Persona("adam@walkthrough.test", "Adjudicator", ("Recruiting_Background_Adjudicator",))
TODAY = date.today()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_apps(tmp_path_factory.mktemp("walk-recruiting"), ["recruiting"],
                   [RECRUITER, DIRECTOR, ADJUDICATOR]) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def test_recruiting_walkthrough(browser: Any, live: Live, tmp_path: Path) -> None:
    with logged_in(browser, live.url, RECRUITER.username) as pg:
        # 1. a requisition: the pay range is checked on the form, then it goes to the director for approval
        pg.goto("/o/Position__c/new")
        pg.get_by_label("Position Title").fill("CBP Officer - Port of Laredo")
        pg.get_by_label("Department").select_option(index=1)
        pg.get_by_label("Authorised Headcount").fill("3")
        pg.get_by_label("Minimum Pay").fill("72000")
        pg.get_by_label("Maximum Pay").fill("61000")
        pick(pg, "Recruiter", "Recruiter")
        pg.get_by_role("button", name="Save").click()
        assert pg.get_by_text("The maximum pay must be at least the minimum pay.").is_visible()
        pg.get_by_label("Maximum Pay").fill("91000")
        pg.get_by_role("button", name="Save").click()
        position = record_id(pg)
        pg.get_by_role("button", name="Submit for approval").click()
        assert pg.locator("#locked").is_visible()
        shot(pg, "recruiting-01-requisition-submitted")
    stored = live.rows(f"SELECT Status__c, Approved__c, Recruiter__c FROM Position__c WHERE Id = '{position}'")[0]
    assert (stored["Status__c"], stored["Approved__c"]) == ("Pending Approval", False)
    assert stored["Recruiter__c"] == live.users[RECRUITER.username]

    with logged_in(browser, live.url, DIRECTOR.username) as pg:
        pg.goto("/approvals")
        row = pg.locator("tr", has_text="CBP Officer - Port of Laredo")
        row.get_by_label("Comments").fill("Funded in the FY budget")
        row.get_by_role("button", name="Approve").click()
        assert pg.get_by_text("Nothing is waiting for you.").is_visible()
    stored = live.rows(f"SELECT Status__c, Approved__c, Open_Date__c FROM Position__c WHERE Id = '{position}'")[0]
    assert (stored["Status__c"], stored["Approved__c"], stored["Open_Date__c"]) == (
        "Open - Approved", True, str(TODAY))

    with logged_in(browser, live.url, RECRUITER.username) as pg:
        # 2. the candidate, then the application that links them to the open position
        pg.goto("/o/Candidate__c/new")
        pg.get_by_label("First Name").fill("Dana")
        pg.get_by_label("Last Name").fill("Whitfield")
        pg.get_by_label("Email").fill("dana.whitfield@example.com")
        pg.get_by_role("button", name="Save").click()
        candidate = record_id(pg)
        pg.goto("/o/Job_Application__c/new")
        pick(pg, "Position", "CBP Officer - Port of Laredo")
        pick(pg, "Candidate", "Whitfield")
        pg.get_by_role("button", name="Save").click()
        application = record_id(pg)
        assert pg.get_by_role("link", name="CBP Officer - Port of Laredo").is_visible()
        app = live.rows(f"SELECT Name, Stage__c, Status__c, Recruiter__c, Candidate__c FROM Job_Application__c "
                        f"WHERE Id = '{application}'")[0]
        assert (app["Stage__c"], app["Status__c"], app["Candidate__c"]) == ("Applied", "Active", candidate)
        assert app["Recruiter__c"] == live.users[RECRUITER.username]  # defaulted from the position
        name = app["Name"]

        # 3. the kanban: one stage forward by drag and drop is saved; Applied -> Hired is refused and snaps back
        pg.goto("/o/Job_Application__c/kanban")
        card = pg.locator(".kcard", has_text=name)
        exam = pg.locator('.lane[data-value="Entrance Exam"]')
        card.drag_to(exam.locator(".cards"))
        exam.locator(".kcard", has_text=name).wait_for()
        expect(pg.locator(".kcard.pending")).to_have_count(0)
        live.wait_for(f"SELECT Stage__c FROM Job_Application__c WHERE Id = '{application}'",
                      lambda r: r[0]["Stage__c"] == "Entrance Exam")
        exam.locator(".kcard", has_text=name).locator("select.kmove").select_option("Hired")
        msg = pg.locator("#kanban-msg")
        msg.wait_for(state="visible")
        assert "An application moves one stage forward at a time" in msg.inner_text()
        expect(pg.locator(".kcard.pending")).to_have_count(0)
        assert exam.locator(".kcard", has_text=name).count() == 1
        shot(pg, "recruiting-02-kanban-refused-jump")
        assert live.rows(f"SELECT Stage__c FROM Job_Application__c WHERE Id = '{application}'")[0][
            "Stage__c"] == "Entrance Exam"
        history = live.rows(f"SELECT Stage__c, Outcome__c FROM Stage_History__c WHERE Job_Application__c = "
                            f"'{application}'")
        assert [(h["Stage__c"], h["Outcome__c"]) for h in history] == [("Applied", "Advanced")]

        # 4. the recruiter schedules the background gate; they cannot adjudicate their own applicant
        pg.goto("/o/Assessment__c/new")
        pick(pg, "Job Application", name)
        pg.get_by_label("Gate Type").select_option("Background Investigation")
        pg.get_by_label("Cost", exact=True).fill("5200")
        pick(pg, "Adjudicator", "Recruiter")
        pg.get_by_role("button", name="Save").click()
        assert pg.get_by_text("The adjudicator cannot be the recruiter of the same application.").is_visible()
        pg.get_by_label("Search Adjudicator").fill("")
        pick(pg, "Adjudicator", "Adjudicator")
        pg.get_by_role("button", name="Save").click()
        gate = record_id(pg)

    with logged_in(browser, live.url, ADJUDICATOR.username) as pg:
        # 5. the adjudicator records a failing result; the right to respond is required, then the application closes
        pg.goto(f"/r/{gate}/edit")
        pg.get_by_label("Result", exact=True).select_option("Fail")
        pg.get_by_label("Result Date").fill(str(TODAY))
        pg.get_by_label("Background Findings").fill("Undisclosed prior employment termination")
        pg.get_by_role("button", name="Save").click()
        assert pg.get_by_text("A failing result needs a right-to-respond due date").is_visible()
        pg.get_by_label("Right to Respond Due").fill(str(TODAY + timedelta(days=14)))
        pg.get_by_role("button", name="Save").click()
        record_id(pg)
        assert pg.get_by_text("Undisclosed prior employment termination").is_visible()  # their own permission set
        shot(pg, "recruiting-03-gate-adjudicated")
        pg.goto(f"/r/{application}")
        shot(pg, "recruiting-04-application-closed")
        assert pg.get_by_text("Background disqualification", exact=True).is_visible()
        shot(pg, "recruiting-04-application-closed")
    app = live.rows(f"SELECT Status__c, Failure_Reason__c, Closed_Date__c, Total_Gate_Cost__c, Gates_Failed__c "
                    f"FROM Job_Application__c WHERE Id = '{application}'")[0]
    assert (app["Status__c"], app["Failure_Reason__c"], app["Closed_Date__c"]) == (
        "Failed", "Background disqualification", str(TODAY))
    assert (app["Total_Gate_Cost__c"], app["Gates_Failed__c"]) == (5200, 1)
    gate_row = live.rows(f"SELECT Result__c, Adjudicator__c, Right_To_Respond_Due__c FROM Assessment__c "
                         f"WHERE Id = '{gate}'")[0]
    assert gate_row == {**gate_row, "Result__c": "Fail", "Adjudicator__c": live.users[ADJUDICATOR.username],
                        "Right_To_Respond_Due__c": str(TODAY + timedelta(days=14))}
    # the recruiter never sees the findings; the templated notice to the candidate waits in the outbox
    with logged_in(browser, live.url, RECRUITER.username) as pg:
        pg.goto(f"/r/{gate}")
        assert pg.get_by_text("Fail", exact=True).first.is_visible()
        assert pg.get_by_text("Undisclosed prior employment termination").count() == 0
