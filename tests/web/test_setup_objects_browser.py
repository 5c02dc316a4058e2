"""In a real browser (Debian's Chromium): an administrator creates a custom object in the object manager, adds a
field to it, both through the plan shown before Apply, then opens the new object's tab and creates a record of
it. The screenshot goes to tests/artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.apps.live import chromium, logged_in

from .conftest import ADMIN, ADMIN_PW, ARTIFACTS, LiveServer


@pytest.fixture(scope="module")
def page(live_server: LiveServer) -> Iterator[object]:
    with chromium() as browser, logged_in(browser, live_server.url, ADMIN, ADMIN_PW) as pg:
        yield pg


def test_create_an_object_add_a_field_create_a_record(page: object, live_server: LiveServer) -> None:
    pg: object = page
    pg.goto("/setup")  # type: ignore[attr-defined]
    pg.get_by_role("link", name="New object").click()  # type: ignore[attr-defined]
    pg.wait_for_url(re.compile(r"/setup/objects/new$"))  # type: ignore[attr-defined]
    pg.get_by_label("Label", exact=True).fill("Equipment Loan")  # type: ignore[attr-defined]
    pg.get_by_label("Auto-number", exact=True).check()  # type: ignore[attr-defined]
    pg.get_by_label("Auto-number format").fill("EL-{000}")  # type: ignore[attr-defined]
    pg.get_by_label("Sharing (organisation-wide default)").select_option("public_read")  # type: ignore[attr-defined]
    pg.get_by_role("button", name="Show plan").click()  # type: ignore[attr-defined]
    plan = pg.get_by_role("region", name="Plan")  # type: ignore[attr-defined]
    assert "create_object  Equipment_Loan__c" in plan.inner_text()
    assert pg.get_by_label("API name").input_value() == "Equipment_Loan__c"  # type: ignore[attr-defined]
    pg.get_by_role("button", name="Apply").click()  # type: ignore[attr-defined]
    pg.wait_for_url(re.compile(r"/setup/o/Equipment_Loan__c$"))  # type: ignore[attr-defined]

    pg.get_by_role("link", name="New field").click()  # type: ignore[attr-defined]
    pg.get_by_label("Label").fill("Serial Number")  # type: ignore[attr-defined]
    pg.get_by_label("API name").fill("Serial_Number")  # type: ignore[attr-defined]
    pg.get_by_label("Type").select_option("text")  # type: ignore[attr-defined]
    pg.get_by_role("button", name="Show plan").click()  # type: ignore[attr-defined]
    plan = pg.get_by_role("region", name="Plan")  # type: ignore[attr-defined]
    assert "add_field      Equipment_Loan__c.Serial_Number__c" in plan.inner_text()
    pg.get_by_role("button", name="Apply").click()  # type: ignore[attr-defined]
    pg.wait_for_url(re.compile(r"/setup/o/Equipment_Loan__c$"))  # type: ignore[attr-defined]
    assert pg.get_by_role("cell", name="Serial_Number__c").is_visible()  # type: ignore[attr-defined]

    pg.get_by_role("link", name="Open the Equipment Loans tab").click()  # type: ignore[attr-defined]
    pg.wait_for_url(re.compile(r"/o/Equipment_Loan__c$"))  # type: ignore[attr-defined]
    pg.get_by_role("link", name="New", exact=True).click()  # type: ignore[attr-defined]
    pg.get_by_label("Serial Number").fill("SN-4471")  # type: ignore[attr-defined]
    pg.get_by_role("button", name="Save").click()  # type: ignore[attr-defined]
    pg.wait_for_url(re.compile(r"/r/[A-Za-z0-9]{18}$"))  # type: ignore[attr-defined]
    main = pg.get_by_role("main").inner_text()  # type: ignore[attr-defined]
    assert "EL-001" in main and "SN-4471" in main
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "web-setup-new-object-record.png"), full_page=True)  # type: ignore[attr-defined]
