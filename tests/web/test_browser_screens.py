"""More real-browser scenarios against a live server (SQLite): behaviour that only exists in the browser, such as
dependent picklists narrowing as the controller changes, a refused kanban drag snapping back, keyboard-only use
and layouts at laptop widths. Screenshots go to tests/artifacts/."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from keel.services.metadata import apply_package
from keel.services.query import query

from .conftest import ADMIN, ADMIN_PW, LiveServer
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


def test_a_refused_drag_snaps_back_with_the_message(page: object, live_server: LiveServer) -> None:
    pg: object = page
    pg.goto("/o/Job_Application__c/kanban")  # type: ignore[attr-defined]
    applied = pg.locator('.lane[data-value="Applied"]')  # type: ignore[attr-defined]
    hired = pg.locator('.lane[data-value="Hired"]')  # type: ignore[attr-defined]
    before = applied.locator(".n").inner_text()
    card = applied.locator(".kcard", has_text="Application 01")
    card.drag_to(hired.locator(".cards"))  # a real HTML5 drag and drop, not the "Move to" select
    msg = pg.locator("#kanban-msg")  # type: ignore[attr-defined]
    msg.wait_for(state="visible")
    assert "An offer needs an offer amount." in msg.inner_text()  # the validation rule's message
    expect(pg.locator(".kcard.pending")).to_have_count(0)  # type: ignore[attr-defined]
    expect(applied.locator(".kcard", has_text="Application 01")).to_have_count(1)  # snapped back
    expect(hired.locator(".kcard", has_text="Application 01")).to_have_count(0)
    assert applied.locator(".n").inner_text() == before
    shot(pg, "21-kanban-refused-drag")
    org = live_server.org
    rec = query(org.ctx, f"SELECT Stage__c FROM Job_Application__c WHERE Id = '{org.applications[1]}'")
    assert rec["records"][0]["Stage__c"] == "Applied"


# -- accessibility ------------------------------------------------------------------------------------------

CONTROL_ROLES = {"textbox", "searchbox", "combobox", "listbox", "checkbox", "radio", "spinbutton", "button",
                 "slider", "switch"}


def _unnamed_controls(pg: object) -> list[str]:
    """Form controls without an accessible name, as Chromium's own accessibility tree computes names."""
    cdp = pg.context.new_cdp_session(pg)  # type: ignore[attr-defined]
    try:
        nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
    finally:
        cdp.detach()
    bad = []
    for n in nodes:
        role = (n.get("role") or {}).get("value")
        if n.get("ignored") or role not in CONTROL_ROLES:
            continue
        if not str((n.get("name") or {}).get("value") or "").strip():
            bad.append(f"{role} (backend node {n.get('backendDOMNodeId')})")
    return bad


def _focused(pg: object) -> dict[str, Any]:
    return pg.evaluate(  # type: ignore[attr-defined,no-any-return]
        "() => { const e = document.activeElement; return {tag: e.tagName, id: e.id || '', "
        "text: (e.innerText || e.value || '').trim().slice(0, 60), href: e.getAttribute('href') || '', "
        "inList: !!e.closest('table.list tbody')}; }")


def _tab_until(pg: object, want: Callable[[dict[str, Any]], bool], limit: int = 150) -> dict[str, Any]:
    seen = []
    for _ in range(limit):
        pg.keyboard.press("Tab")  # type: ignore[attr-defined]
        now = _focused(pg)
        seen.append(f"{now['tag']}#{now['id']}:{now['text'][:20]}")
        if want(now):
            return now
    raise AssertionError(f"Tab never reached the element; the tab order was {seen}")


def test_main_screens_by_keyboard_only(page: object, live_server: LiveServer) -> None:
    pg: object = page
    pg.goto("/o/Position__c")  # type: ignore[attr-defined]
    first = _tab_until(pg, lambda e: True, 1)
    assert first["tag"] == "A" and first["text"] == "Skip to content"  # the first stop is the skip link
    pg.keyboard.press("Enter")  # type: ignore[attr-defined]
    assert _focused(pg)["id"] == "main"
    row = _tab_until(pg, lambda e: bool(e["inList"]) and str(e["href"]).startswith("/r/"))  # the list's first record
    pg.keyboard.press("Enter")  # type: ignore[attr-defined]
    pg.wait_for_url(f"**{row['href']}")  # type: ignore[attr-defined]
    _tab_until(pg, lambda e: e["tag"] == "A" and e["text"] == "Edit")
    pg.keyboard.press("Enter")  # type: ignore[attr-defined]
    pg.wait_for_url(f"**{row['href']}/edit")  # type: ignore[attr-defined]
    _tab_until(pg, lambda e: e["id"] == "f-Headcount__c")
    pg.keyboard.press("Control+A")  # type: ignore[attr-defined]
    pg.keyboard.type("6")  # type: ignore[attr-defined]
    _tab_until(pg, lambda e: e["tag"] == "BUTTON" and e["text"] == "Save")
    pg.keyboard.press("Enter")  # type: ignore[attr-defined]
    pg.wait_for_url(f"**{row['href']}")  # type: ignore[attr-defined]
    rid = row["href"].removeprefix("/r/")
    rec = query(live_server.org.ctx, f"SELECT Headcount__c FROM Position__c WHERE Id = '{rid}'")["records"][0]
    assert rec["Headcount__c"] == 6


def test_every_form_control_has_an_accessible_name(page: object, live_server: LiveServer) -> None:
    pg: object = page
    org = live_server.org
    screens = ["/", "/o/Position__c", f"/r/{org.positions[0]}", f"/r/{org.positions[0]}/edit",
               "/o/Job_Application__c/new", "/o/Job_Application__c/kanban", "/o/Job_Application__c",
               "/reports?run=1&obj=Position__c&g1=Department__c", "/o/Candidate__c/import", "/search?q=Position",
               "/dashboards", "/dashboards/build"]
    unnamed = {}
    for url in screens:
        pg.goto(url)  # type: ignore[attr-defined]
        bad = _unnamed_controls(pg)
        if bad:
            unnamed[url] = bad
    assert not unnamed, unnamed
    pg.evaluate("() => document.querySelector('main').append(document.createElement('select'))")  # type: ignore[attr-defined]
    assert len(_unnamed_controls(pg)) == 1  # the probe does find a control without a name


# Elements sticking out past the right edge of the window, except inside a container that scrolls or clips them
# on purpose (the kanban board's lanes, a wide chart): what a user would have to scroll the page sideways for.
OVERFLOWING = """() => {
  const clipped = e => { for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
    if (['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(a).overflowX)) return true; } return false; };
  return [...document.querySelectorAll('body *')].filter(e => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.right > window.innerWidth + 1 && !clipped(e) && !e.classList.contains('skip');
  }).map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className + ' right=' +
               Math.round(e.getBoundingClientRect().right));
}"""

SCROLLS_SIDEWAYS = "() => document.documentElement.scrollWidth > window.innerWidth"


@pytest.mark.parametrize("size", [(1280, 720), (1024, 768)])
def test_list_and_record_pages_fit_a_laptop_screen(browser: object, live_server: LiveServer,
                                                   size: tuple[int, int]) -> None:
    ctx = browser.new_context(viewport={"width": size[0], "height": size[1]},  # type: ignore[attr-defined]
                              base_url=live_server.url)
    try:
        pg = ctx.new_page()
        pg.goto("/login")
        pg.get_by_label("Username").fill(ADMIN)
        pg.get_by_label("Password").fill(ADMIN_PW)
        pg.get_by_role("button", name="Log in").click()
        pg.wait_for_url("**/")
        org = live_server.org
        for url in ("/o/Position__c", "/o/Job_Application__c", f"/r/{org.positions[0]}",
                    f"/r/{org.applications[0]}", f"/r/{org.positions[0]}/edit", "/o/Job_Application__c/kanban"):
            pg.goto(url)
            assert pg.evaluate(OVERFLOWING) == [], f"{url} overflows horizontally at {size}"
            assert pg.evaluate(SCROLLS_SIDEWAYS) is False, f"{url} scrolls sideways at {size}"
        pg.goto("/o/Position__c")
        shot(pg, f"22-list-{size[0]}x{size[1]}")
        pg.evaluate("() => { const d = document.createElement('div'); d.id = 'wide'; d.style.width = '3000px'; "
                    "d.textContent = 'wide'; document.querySelector('main').append(d); }")
        assert any(e.startswith("DIV#wide") for e in pg.evaluate(OVERFLOWING))  # the measures do see one
        assert pg.evaluate(SCROLLS_SIDEWAYS) is True
    finally:
        ctx.close()
