"""Page layouts in the object manager: the draft is edited with buttons (nothing stored), shown as a metadata
plan, and applied; the record page then follows the new layout. Bad drafts and other users are refused."""

from __future__ import annotations

import html
import re
from typing import Any

from starlette.testclient import TestClient

from .conftest import Org, csrf_of

EDITOR = "/setup/o/Position__c/layouts/default"


def _state(page: str) -> dict[str, Any]:
    """The form as a browser would post it: inputs with values, and the selected option of each select."""
    data: dict[str, Any] = {}
    for name, value in re.findall(r'<input[^>]*\bname="([^"]+)" value="([^"]*)"', page):
        if name.endswith(".fields"):
            data.setdefault(name, []).append(html.unescape(value))
        else:
            data[name] = html.unescape(value)
    for name, options in re.findall(r'<select[^>]*\bname="([^"]+)"[^>]*>(.*?)</select>', page, re.S):
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', options) or re.search(
            r'<option value="([^"]*)"', options)
        if chosen:
            data[name] = html.unescape(chosen.group(1))
    return data


def _press(client: TestClient, page: str, op: str, **changes: Any) -> str:
    r = client.post(EDITOR, data={**_state(page), **changes, "op": op})
    assert r.status_code == 200, r.text
    return r.text


def _layout(org: Org) -> dict[str, Any]:
    return dict(org.ctx.schema().get_object("Position__c").extra["layouts"]["default"])


def _fields(page: str, section: int) -> list[str]:
    return [html.unescape(v) for v in re.findall(rf'name="s{section}.fields" value="([^"]*)"', page)]


def test_a_layout_is_edited_planned_then_applied(admin: TestClient, web_org: Org) -> None:
    assert f'href="{EDITOR}"' in admin.get("/setup/o/Position__c").text
    before = _layout(web_org)
    page = admin.get(EDITOR).text
    assert _fields(page, 0)[:2] == ["Name", "Department__c"]
    assert 'aria-label="Move Department up"' in page and "required" in page
    page = _press(admin, page, "fd:Name")  # into the right-hand column
    assert _fields(page, 0)[:2] == ["Department__c", "Name"]
    page = _press(admin, page, "sa", new_section="Hiring")
    page = _press(admin, page, "fd:Headcount__c", **{"to.Headcount__c": "2"})  # moved to the new section
    page = _press(admin, page, "fr:Max_Pay__c")
    page = _press(admin, page, "su:1", **{"s1.label": "Confidential", "s1.columns": "2"})
    assert _fields(page, 0) == ["Secret_Notes__c"] and _fields(page, 2) == ["Headcount__c"]
    assert "Max_Pay__c" in re.search(r'id="new_field".*?</select>', page, re.S).group(0)  # type: ignore[union-attr]
    assert _layout(web_org) == before  # a draft is never stored

    planned = admin.post(EDITOR, data={**_state(page), "op": "plan"})
    assert planned.status_code == 200, planned.text
    text = html.unescape(planned.text)
    assert "update_object" in text and "Position__c" in text and "(extra)" in text
    for change in ("section 'Hiring' added", "field Max_Pay__c removed", "field Headcount__c moved to 'Hiring'",
                   "sections reordered: Confidential, Position, Hiring", "'Private' renamed to 'Confidential'",
                   "fields of 'Position' reordered: Department__c, Name", "'Confidential': 2 column(s)"):
        assert change in text, change
    assert _layout(web_org) == before

    done = admin.post(EDITOR, data={**_state(planned.text), "op": "apply"}, follow_redirects=False)
    assert done.status_code == 303, done.text
    after = _layout(web_org)
    assert [s["label"] for s in after["sections"]] == ["Confidential", "Position", "Hiring"]
    assert after["sections"][1]["fields"] == ["Department__c", "Name", "Status__c", "Open_Date__c"]
    assert after["related"] == before["related"]  # what the editor does not touch is kept
    record = html.unescape(admin.get(f"/r/{web_org.positions[1]}").text)
    order = re.findall(r'<h2 id="sec-\d+">([^<]*)</h2>', record)
    assert order == ["Confidential", "Position", "Hiring", "More fields"], order
    assert "Max Pay" in record.split(">More fields<")[1]  # a custom field left off is still shown at the end


def test_bad_drafts_are_refused(admin: TestClient, web_org: Org) -> None:
    page = admin.get(EDITOR).text
    before = _layout(web_org)
    r = admin.post(EDITOR, data={**_state(page), "s0.label": "", "op": "plan"})
    assert r.status_code == 400 and "INVALID_LAYOUT: Every section needs a label." in html.unescape(r.text)
    twice = _state(page)
    twice["s1.fields"] = [*twice["s1.fields"], twice["s0.fields"][0]]
    r = admin.post(EDITOR, data={**twice, "op": "apply"})
    assert r.status_code == 400 and "is placed twice" in html.unescape(r.text)
    r = admin.post(EDITOR, data={**_state(page), "s0.fields": ["Nope__c"], "op": "apply"})
    assert r.status_code == 400 and "has no field 'Nope__c'" in html.unescape(r.text)
    r = admin.post(EDITOR, data={**_state(page), "op": "sa", "new_section": " "})
    assert r.status_code == 400 and "Give the new section a label." in r.text
    assert _layout(web_org) == before
    assert admin.get("/setup/o/Position__c/layouts/compact").status_code == 404


def test_only_customizers_edit_layouts(admin: TestClient, recruiter: TestClient, web_org: Org) -> None:
    before = _layout(web_org)
    assert recruiter.get(EDITOR).status_code == 403
    state = _state(admin.get(EDITOR).text)
    token = csrf_of(recruiter.get("/o/Position__c").text)
    r = recruiter.post(EDITOR, data={**state, "csrf_token": token, "s0.label": "Sneaky", "op": "apply"})
    assert r.status_code == 403
    assert _layout(web_org) == before
