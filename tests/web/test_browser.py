"""Real-browser scenarios: Playwright for Python driving Debian's Chromium against a live server (SQLite).
Each scenario saves a screenshot in tests/artifacts/. Never ``playwright install``: the browser is the system's."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import playwright.sync_api as playwright_sync
import pytest

from keel.services.query import query

from .conftest import ADMIN, ADMIN_PW, ARTIFACTS, LiveServer

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    assert Path(CHROMIUM).exists(), "Debian's chromium is not installed (apt-get install chromium)"
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def page(browser: object, live_server: LiveServer) -> Iterator[object]:
    ctx = browser.new_context(viewport={"width": 1366, "height": 900}, base_url=live_server.url)  # type: ignore[attr-defined]
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "422" not in m.text else None)
    pg.goto("/login")
    pg.get_by_label("Username").fill(ADMIN)
    pg.get_by_label("Password").fill(ADMIN_PW)
    pg.get_by_role("button", name="Log in").click()
    pg.wait_for_url(re.compile(r"/$"))
    yield pg
    ctx.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors


def shot(pg: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"web-{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_log_in(page: object) -> None:
    pg: object = page
    assert pg.get_by_role("heading", name="App launcher").is_visible()  # type: ignore[attr-defined]
    assert pg.get_by_role("link", name="Positions").first.is_visible()  # type: ignore[attr-defined]
    shot(pg, "01-login-launcher")


def test_create_position_and_candidate(page: object, live_server: LiveServer) -> None:
    pg: object = page
    pg.goto("/o/Position__c/new")  # type: ignore[attr-defined]
    pg.get_by_label("Position Title").fill("Patrol Officer (Night)")  # type: ignore[attr-defined]
    pg.get_by_role("button", name="Save").click()  # type: ignore[attr-defined]
    assert pg.locator("#e-Department__c").is_visible()  # type: ignore[attr-defined]  # field-level error
    pg.get_by_label("Department").select_option("Patrol")  # type: ignore[attr-defined]
    pg.get_by_role("button", name="Save").click()  # type: ignore[attr-defined]
    pg.wait_for_url(re.compile(r"/r/[A-Za-z0-9]{18}$"))  # type: ignore[attr-defined]
    assert pg.get_by_role("heading", name="Patrol Officer (Night)").is_visible()  # type: ignore[attr-defined]
    pg.goto("/o/Candidate__c/new")  # type: ignore[attr-defined]
    pg.get_by_label("Candidate Name").fill("Dana Whitfield")  # type: ignore[attr-defined]
    pg.get_by_label("Email").fill("dana@example.com")  # type: ignore[attr-defined]
    pg.get_by_role("button", name="Save").click()  # type: ignore[attr-defined]
    pg.wait_for_url(re.compile(r"/r/[A-Za-z0-9]{18}$"))  # type: ignore[attr-defined]
    # an application with the lookup picker
    pg.goto("/o/Job_Application__c/new")  # type: ignore[attr-defined]
    pg.get_by_label("Application").fill("Dana for Night Patrol")  # type: ignore[attr-defined]
    pg.get_by_label("Search Position").fill("Patrol Off")  # type: ignore[attr-defined]
    pg.get_by_role("option", name=re.compile("Patrol Officer")).click()  # type: ignore[attr-defined]
    pg.get_by_label("Search Candidate").fill("Dana")  # type: ignore[attr-defined]
    pg.get_by_role("option", name=re.compile("Dana Whitfield")).click()  # type: ignore[attr-defined]
    pg.get_by_label("Stage").select_option("Applied")  # type: ignore[attr-defined]
    pg.get_by_role("button", name="Save").click()  # type: ignore[attr-defined]
    pg.wait_for_url(re.compile(r"/r/[A-Za-z0-9]{18}$"))  # type: ignore[attr-defined]
    assert pg.get_by_role("link", name="Patrol Officer (Night)").is_visible()  # type: ignore[attr-defined]
    shot(pg, "02-created-application")


def test_kanban_move_and_refused_move_snaps_back(page: object, live_server: LiveServer) -> None:
    pg: object = page
    pg.goto("/o/Job_Application__c/kanban")  # type: ignore[attr-defined]
    card = pg.locator(".kcard", has_text="Application 00")  # type: ignore[attr-defined]
    interview = pg.locator('.lane[data-value="Interview"]')  # type: ignore[attr-defined]
    card.drag_to(interview.locator(".cards"))
    interview.locator(".kcard", has_text="Application 00").wait_for()
    playwright_sync.expect(pg.locator(".kcard.pending")).to_have_count(0)  # type: ignore[attr-defined]
    org = live_server.org
    soql = f"SELECT Stage__c FROM Job_Application__c WHERE Id = '{org.applications[0]}'"
    deadline = time.time() + 10
    while query(org.ctx, soql)["records"][0]["Stage__c"] != "Interview":
        assert time.time() < deadline, "the drag did not update the stage"
        time.sleep(0.1)
    # Hired without an offer amount is refused by the validation rule: the card snaps back
    card = pg.locator(".kcard", has_text="Application 00")  # type: ignore[attr-defined]
    card.locator("select.kmove").select_option("Hired")
    msg = pg.locator("#kanban-msg")  # type: ignore[attr-defined]
    msg.wait_for(state="visible")
    assert "An offer needs an offer amount." in msg.inner_text()
    playwright_sync.expect(pg.locator(".kcard.pending")).to_have_count(0)  # type: ignore[attr-defined]
    assert interview.locator(".kcard", has_text="Application 00").count() == 1
    shot(pg, "03-kanban-refused-move")


def test_inline_edit_in_list(page: object, live_server: LiveServer) -> None:
    pg: object = page
    pg.goto("/o/Job_Application__c")  # type: ignore[attr-defined]
    row = pg.locator("tr", has_text="Application 03")  # type: ignore[attr-defined]
    row.get_by_role("button", name="Edit Score").click()
    box = row.get_by_role("textbox", name="Score")
    box.fill("91")
    box.press("Enter")
    row.locator("td.editable", has_text="91").wait_for()
    expect = query(live_server.org.ctx, f"SELECT Score__c FROM Job_Application__c WHERE Id = "
                                        f"'{live_server.org.applications[3]}'")["records"][0]
    assert expect["Score__c"] == 91
    assert "counting" not in pg.locator("#count").inner_text()  # type: ignore[attr-defined]
    shot(pg, "04-inline-edit")


def test_summary_report_chart(page: object) -> None:
    pg: object = page
    pg.goto("/reports?run=1&obj=Position__c&g1=Department__c&g2=Status__c&agg=SUM&field=Headcount__c"
            "&chart=bar")  # type: ignore[attr-defined]
    chart = pg.locator("figure.chart-box svg")  # type: ignore[attr-defined]
    assert chart.is_visible()
    assert chart.locator("rect").count() >= 3
    assert pg.get_by_role("columnheader", name="Subtotal").is_visible()  # type: ignore[attr-defined]
    shot(pg, "05-summary-report")
    pg.goto("/dashboards")  # type: ignore[attr-defined]
    assert pg.locator("svg.chart").count() >= 3  # type: ignore[attr-defined]
    shot(pg, "05b-dashboard")


def test_build_a_two_component_dashboard(page: object, live_server: LiveServer) -> None:
    """Save a report from the builder, then build a dashboard of it twice (a donut and a key metric), move the
    metric first, save, and see both tiles drawn in that order."""
    pg: Any = page
    pg.goto("/reports?run=1&obj=Position__c&g1=Department__c&agg=SUM&field=Headcount__c&chart=bar")
    pg.get_by_label("Save as (API name)").fill("Headcount_Board")
    pg.get_by_label("Label", exact=True).fill("Headcount by department")
    pg.get_by_role("button", name="Save report").click()
    pg.wait_for_url(re.compile(r"/reports/r/Headcount_Board$"))
    pg.goto("/dashboards")
    pg.get_by_role("link", name="New dashboard").click()
    pg.get_by_label("Title", exact=True).fill("Hiring overview")
    pg.get_by_label("API name").fill("Hiring_Overview")
    for chart, title in (("Donut", "Headcount share"), ("Key metric", "Total headcount")):
        pg.get_by_label("Report", exact=True).select_option(label="Headcount by department (saved)")
        pg.get_by_label("Chart", exact=True).select_option(label=chart)
        pg.get_by_label("Component title").fill(title)
        pg.get_by_role("button", name="Add component").click()
    pg.get_by_role("button", name="Move component 2 up").click()
    assert pg.get_by_label("Title of component 1").input_value() == "Total headcount"
    shot(pg, "05c-dashboard-builder")
    pg.get_by_role("button", name="Save dashboard").click()
    pg.wait_for_url(re.compile(r"/dashboards/Hiring_Overview$"))
    tiles = pg.locator("section.card")
    assert tiles.count() == 2
    assert tiles.nth(0).get_attribute("aria-label") == "Total headcount"
    total = query(live_server.org.ctx, "SELECT SUM(Headcount__c) s FROM Position__c")["records"][0]["s"]
    assert tiles.nth(0).locator("p.metric strong").inner_text() == f"{int(total)}"
    assert tiles.nth(1).locator("svg.chart").is_visible()
    assert tiles.nth(1).locator("svg.chart").get_attribute("aria-label") == "Headcount share"
    shot(pg, "05d-dashboard-built")


def test_import_wizard_with_error_report(page: object, tmp_path: Path) -> None:
    pg: object = page
    src = tmp_path / "candidates.csv"
    src.write_text("Candidate Name,Email,Source\nEve Import,eve@example.com,Web\nFay Import,bad-email,Web\n")
    pg.goto("/o/Candidate__c/import")  # type: ignore[attr-defined]
    pg.get_by_label(re.compile("CSV file")).set_input_files(str(src))  # type: ignore[attr-defined]
    pg.get_by_role("button", name="Upload").click()  # type: ignore[attr-defined]
    pg.get_by_role("button", name="Dry run").click()  # type: ignore[attr-defined]
    report = pg.get_by_role("table", name="Error report")  # type: ignore[attr-defined]
    assert report.is_visible() and "INVALID_EMAIL_ADDRESS" in report.inner_text()
    assert "Nothing was saved" in pg.locator(".summary").inner_text()  # type: ignore[attr-defined]
    shot(pg, "06-import-dry-run")
    pg.get_by_role("button", name="Import").click()  # type: ignore[attr-defined]
    assert "1 imported" in pg.locator(".summary").inner_text()  # type: ignore[attr-defined]


def test_object_manager_field_appears_on_form(page: object) -> None:
    pg: object = page
    pg.goto("/setup/o/Position__c")  # type: ignore[attr-defined]
    pg.get_by_role("link", name="New field").click()  # type: ignore[attr-defined]
    pg.get_by_label("Label").fill("Shift Pattern")  # type: ignore[attr-defined]
    pg.get_by_label("API name").fill("Shift_Pattern")  # type: ignore[attr-defined]
    pg.get_by_label("Type").select_option("picklist")  # type: ignore[attr-defined]
    pg.get_by_label(re.compile("Picklist values")).fill("Days\nNights\nRotating")  # type: ignore[attr-defined]
    pg.get_by_role("button", name="Show plan").click()  # type: ignore[attr-defined]
    assert "add_field" in pg.locator(".plan pre").inner_text()  # type: ignore[attr-defined]
    shot(pg, "07a-object-manager-plan")
    pg.get_by_role("button", name="Apply").click()  # type: ignore[attr-defined]
    pg.wait_for_url(re.compile(r"/setup/o/Position__c$"))  # type: ignore[attr-defined]
    pg.goto("/o/Position__c/new")  # type: ignore[attr-defined]
    field = pg.get_by_label("Shift Pattern")  # type: ignore[attr-defined]
    assert field.is_visible()
    field.select_option("Nights")
    shot(pg, "07b-new-field-on-form")


def test_totp_login_step(browser: object, live_server: LiveServer) -> None:
    """A user with an authenticator gets the verification-code step; a wrong code is refused, the right one
    signs in."""
    from keel.security.totp import totp
    from keel.services.security import enroll_totp, system_context
    from keel.services.users import create_user

    sysctx = system_context(live_server.org.ctx, "browser test: totp user")
    uid = create_user(sysctx, username="totp@web.test", password="a long totp passphrase", last_name="Totp",
                      email="totp@web.test", profile="Standard User")
    secret = enroll_totp(sysctx, uid)
    ctx = browser.new_context(base_url=live_server.url)  # type: ignore[attr-defined]
    pg = ctx.new_page()
    pg.goto("/login")
    pg.get_by_label("Username").fill("totp@web.test")
    pg.get_by_label("Password").fill("a long totp passphrase")
    pg.get_by_role("button", name="Log in").click()
    code = pg.get_by_label("Verification code")
    assert code.is_visible()
    shot(pg, "10-totp-step")
    pg.get_by_label("Password").fill("a long totp passphrase")
    wrong = "000000" if totp(secret, time.time()) != "000000" else "111111"
    code.fill(wrong)
    pg.get_by_role("button", name="Log in").click()
    assert pg.get_by_role("alert").is_visible() and pg.get_by_label("Verification code").is_visible()
    pg.get_by_label("Password").fill("a long totp passphrase")
    pg.get_by_label("Verification code").fill(totp(secret, time.time()))
    pg.get_by_role("button", name="Log in").click()
    pg.wait_for_url(re.compile(r"/$"))
    assert pg.get_by_role("heading", name="App launcher").is_visible()
    ctx.close()


def test_file_upload_and_note_on_a_record(page: object, live_server: LiveServer, tmp_path: Path) -> None:
    pg: object = page
    resume = tmp_path / "resume.pdf"
    resume.write_bytes(b"%PDF-1.4\n%%EOF\n")
    pg.goto(f"/r/{live_server.org.candidates[4]}")  # type: ignore[attr-defined]
    pg.get_by_label("Upload a file").set_input_files(str(resume))  # type: ignore[attr-defined]
    pg.get_by_role("button", name="Upload", exact=True).click()  # type: ignore[attr-defined]
    assert pg.get_by_role("link", name="resume.pdf").is_visible()  # type: ignore[attr-defined]
    pg.get_by_label("Title").fill("Reference check")  # type: ignore[attr-defined]
    pg.get_by_label("Note", exact=True).fill("Two good references.")  # type: ignore[attr-defined]
    pg.get_by_role("button", name="Add note").click()  # type: ignore[attr-defined]
    assert pg.get_by_text("Two good references.").is_visible()  # type: ignore[attr-defined]
    shot(pg, "11-record-notes-files")
