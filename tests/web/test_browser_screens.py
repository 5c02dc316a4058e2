"""More real-browser scenarios against a live server (SQLite): behaviour that only exists in the browser, such as
dependent picklists narrowing as the controller changes, a refused kanban drag snapping back, keyboard-only use
and layouts at laptop widths. Screenshots go to tests/artifacts/."""

from __future__ import annotations

from pathlib import Path

from keel.services.metadata import apply_package

from .conftest import LiveServer
from .test_browser import browser, page, shot

__all__ = ["browser", "page"]  # fixtures shared with test_browser
DEPENDENT = Path(__file__).parent / "fixtures" / "dependent"


def _enabled_options(pg: object, select: str) -> list[str]:
    return pg.eval_on_selector_all(  # type: ignore[attr-defined,no-any-return]
        f"{select} option", "os => os.filter(o => !o.disabled && !o.hidden).map(o => o.value)")


def test_changing_the_controlling_field_narrows_the_dependent_options(page: object, live_server: LiveServer) -> None:
    apply_package(live_server.org.ctx, DEPENDENT)
    pg: object = page
    pg.goto("/o/Assignment__c/new")  # type: ignore[attr-defined]
    assert _enabled_options(pg, "#f-Unit__c") == ["", "Training"]  # no division yet: only the unrestricted value
    pg.get_by_label("Division").select_option("Patrol")  # type: ignore[attr-defined]
    assert _enabled_options(pg, "#f-Unit__c") == ["", "Traffic", "K9", "Radio", "Training"]
    pg.get_by_label("Unit").select_option("K9")  # type: ignore[attr-defined]
    pg.get_by_label("Division").select_option("Investigations")  # type: ignore[attr-defined]
    assert _enabled_options(pg, "#f-Unit__c") == ["", "Homicide", "Training"]
    assert pg.get_by_label("Unit").input_value() == ""  # type: ignore[attr-defined]  # K9 no longer valid
    pg.get_by_label("Unit").select_option("Homicide")  # type: ignore[attr-defined]
    pg.get_by_label("Assignment Name").fill("Cold cases")  # type: ignore[attr-defined]
    shot(pg, "20-dependent-picklist")
    pg.get_by_role("button", name="Save").click()  # type: ignore[attr-defined]
    pg.wait_for_url("**/r/*")  # type: ignore[attr-defined]
    assert "Homicide" in pg.locator("main").inner_text()  # type: ignore[attr-defined]
