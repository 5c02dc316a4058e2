"""In a real browser (Debian's Chromium, as in test_browser.py): an administrator adds a validation rule in the
object manager, sees the plan, applies it, and the rule then refuses a record save with its message next to the
field. The screenshot goes to tests/artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.apps.live import chromium, logged_in

from .conftest import ADMIN, ADMIN_PW, ARTIFACTS, LiveServer

MESSAGE = "Headcount above 20 needs a staffing plan."


@pytest.fixture(scope="module")
def page(live_server: LiveServer) -> Iterator[object]:
    with chromium() as browser, logged_in(browser, live_server.url, ADMIN, ADMIN_PW) as pg:
        yield pg


def test_a_new_rule_refuses_a_save_in_the_browser(page: object, live_server: LiveServer) -> None:
    pg: object = page
    pg.goto("/setup/o/Position__c")  # type: ignore[attr-defined]
    pg.get_by_role("link", name=re.compile(r"^Validation rules")).click()  # type: ignore[attr-defined]
    pg.wait_for_url(re.compile(r"/setup/o/Position__c/rules$"))  # type: ignore[attr-defined]
    pg.get_by_label("Rule name").fill("Headcount_Needs_Plan")  # type: ignore[attr-defined]
    pg.get_by_label("Condition").fill("Headcount__c >")  # type: ignore[attr-defined]
    pg.get_by_label("Error message").fill(MESSAGE)  # type: ignore[attr-defined]
    pg.get_by_label("Error field").select_option("Headcount__c")  # type: ignore[attr-defined]
    pg.get_by_role("button", name="Show plan").click()  # type: ignore[attr-defined]
    alert = pg.get_by_role("alert")  # type: ignore[attr-defined]
    assert "INVALID_FORMULA: The condition has an error at line 1, column" in alert.inner_text()
    pg.get_by_label("Condition").fill("Headcount__c > 20")  # type: ignore[attr-defined]
    pg.get_by_role("button", name="Show plan").click()  # type: ignore[attr-defined]
    plan = pg.get_by_role("region", name="Plan")  # type: ignore[attr-defined]
    assert "add rule Headcount_Needs_Plan" in plan.inner_text() and "update_object" in plan.inner_text()
    plan.get_by_role("button", name="Apply").click()
    pg.wait_for_url(re.compile(r"/setup/o/Position__c/rules$"))  # type: ignore[attr-defined]
    assert pg.get_by_role("row", name=re.compile("Headcount_Needs_Plan")).is_visible()  # type: ignore[attr-defined]

    pg.goto("/o/Position__c/new")  # type: ignore[attr-defined]
    pg.get_by_label("Position Title").fill("Academy intake")  # type: ignore[attr-defined]
    pg.get_by_label("Department").select_option("Patrol")  # type: ignore[attr-defined]
    pg.get_by_label("Headcount").fill("25")  # type: ignore[attr-defined]
    pg.get_by_role("button", name="Save").click()  # type: ignore[attr-defined]
    error = pg.locator("#e-Headcount__c")  # type: ignore[attr-defined]
    error.wait_for()
    assert MESSAGE in error.inner_text()
    assert pg.get_by_label("Headcount").get_attribute("aria-invalid") == "true"  # type: ignore[attr-defined]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "web-setup-rule-refuses-save.png"), full_page=True)  # type: ignore[attr-defined]
    pg.get_by_label("Headcount").fill("12")  # type: ignore[attr-defined]
    pg.get_by_role("button", name="Save").click()  # type: ignore[attr-defined]
    pg.wait_for_url(re.compile(r"/r/[A-Za-z0-9]{18}$"))  # type: ignore[attr-defined]
