"""Summary reports grouped by three fields, with a subtotal closing every first- and second-level group, and
averages that stay right at every level (a sum over a count, never an average of averages)."""

from __future__ import annotations

import html
import io
import re

import openpyxl  # type: ignore[import-untyped]
import pytest
from starlette.testclient import TestClient

from keel.services.query import query
from keel.web.base import display

from .conftest import Org, csrf_of

THREE = "/reports?run=1&obj=Position__c&g1=Department__c&g2=Status__c&g3=Headcount__c&agg=SUM&field=Headcount__c"


def _cells(page: str, css: str) -> dict[str, str]:
    """Row label -> value of the rows with ``class="<css>"``."""
    rows = re.findall(rf'<tr class="{css}"><th scope="row" colspan="3">Subtotal: ([^<]*)</th><td><strong>([^<]*)'
                      r'</strong></td></tr>', page)
    return {html.unescape(k): v for k, v in rows}


def _soql_sum(org: Org, where: str) -> float:
    rec = query(org.ctx, f"SELECT SUM(Headcount__c) s FROM Position__c WHERE {where}")["records"][0]
    return float(rec["s"] or 0)


def test_three_groupings_show_subtotals_at_both_levels(admin: TestClient, web_org: Org) -> None:
    r = admin.get(THREE)
    assert r.status_code == 200, r.text
    page = r.text
    assert 'id="g3"' in page and "Headcount</th>" in page
    firsts, seconds = _cells(page, "subtotal level-1"), _cells(page, "subtotal level-2")
    assert set(firsts) == {"Patrol", "Investigations", "Dispatch"}
    assert set(seconds) == {f"{d} · {s}" for d in firsts for s in ("Open", "Draft")}
    for dept, shown in firsts.items():
        assert shown == display(_soql_sum(web_org, f"Department__c = '{dept}'"))
    for key, shown in seconds.items():
        dept, status = key.split(" · ")
        assert shown == display(_soql_sum(web_org, f"Department__c = '{dept}' AND Status__c = '{status}'"))
    # every leaf row sits before the subtotal of its group: the first subtotal closes the first group's leaves
    first_sub = page.index('class="subtotal level-2"')
    assert page[:first_sub].count("<tr><td>") >= 1
    total = query(web_org.ctx, "SELECT SUM(Headcount__c) s FROM Position__c")["records"][0]["s"]
    assert re.search(rf'Grand total</th><td><strong>{display(float(total))}</strong>', page)


def test_average_subtotals_are_not_averages_of_averages(admin: TestClient, web_org: Org) -> None:
    page = admin.get("/reports?run=1&obj=Position__c&g1=Department__c&g2=Status__c&g3=Headcount__c&agg=AVG"
                     "&field=Headcount__c").text
    overall = float(query(web_org.ctx, "SELECT AVG(Headcount__c) a FROM Position__c")["records"][0]["a"])
    m = re.search(r"Grand total</th><td><strong>([^<]*)</strong>", page)
    assert m and m.group(1) == display(overall)
    for dept, shown in _cells(page, "subtotal level-1").items():
        a = query(web_org.ctx, f"SELECT AVG(Headcount__c) a FROM Position__c WHERE Department__c = '{dept}'")
        assert shown == display(float(a["records"][0]["a"]))


def test_three_level_report_saves_and_exports(admin: TestClient, web_org: Org) -> None:
    token = csrf_of(admin.get("/reports").text)
    params = {"obj": "Position__c", "type": "summary", "g1": "Department__c", "g2": "Status__c",
              "g3": "Headcount__c", "agg": "COUNT", "chart": "bar"}
    r = admin.post("/reports/save", data={**params, "name": "three_levels", "label": "Three levels",
                                          "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    saved = admin.get("/reports/r/three_levels").text
    assert 'class="subtotal level-2"' in saved and "Headcount" in saved
    x = admin.get("/reports/export.xlsx?obj=Position__c&g1=Department__c&g2=Status__c&g3=Headcount__c&agg=COUNT")
    rows = list(openpyxl.load_workbook(io.BytesIO(x.content)).active.iter_rows(values_only=True))
    assert rows[0] == ("Department", "Status", "Headcount", "Record count")
    n = query(web_org.ctx, "SELECT COUNT() FROM Position__c")["totalSize"]
    assert rows[-1][-1] == n and sum(float(row[-1]) for row in rows[1:-1]) == n


def test_a_hidden_field_cannot_be_the_third_grouping(recruiter: TestClient) -> None:
    r = recruiter.get("/reports?run=1&obj=Position__c&g1=Department__c&g2=Status__c&g3=Secret_Notes__c")
    assert "You cannot group by" in r.text and "Subtotal:" not in r.text


def test_grouping_twice_by_one_field_is_refused(admin: TestClient) -> None:
    r = admin.get("/reports?run=1&obj=Position__c&g1=Department__c&g2=Status__c&g3=Department__c")
    assert "Group by each field once." in r.text


def test_median_and_p90_levels_come_from_the_rows_not_from_the_groups(admin: TestClient, web_org: Org) -> None:
    """A percentile cannot be merged from its groups: each subtotal and the grand total are the median (p90) of
    their own rows, as Python computes them from the same records."""
    import statistics

    recs = query(web_org.ctx, "SELECT Department__c, Headcount__c FROM Position__c WHERE Headcount__c != null")
    by_dept: dict[str, list[float]] = {}
    for r in recs["records"]:
        by_dept.setdefault(r["Department__c"], []).append(float(r["Headcount__c"]))
    every = [v for vs in by_dept.values() for v in vs]
    assert len(by_dept) > 1 and len(every) > 3
    for agg, fn in (("MEDIAN", statistics.median),
                    ("P90", lambda v: statistics.quantiles(v, n=10, method="inclusive")[-1] if len(v) > 1 else v[0])):
        page = admin.get(f"/reports?run=1&obj=Position__c&g1=Department__c&g2=Status__c&g3=Open_Date__c&agg={agg}"
                         "&field=Headcount__c").text
        m = re.search(r"Grand total</th><td><strong>([^<]*)</strong>", page)
        assert m and m.group(1) == display(fn(every)), agg
        csv_rows = admin.get(f"/reports/export.csv?obj=Position__c&g1=Department__c&agg={agg}"
                             "&field=Headcount__c").text.strip().splitlines()
        got = {line.split(",")[0]: float(line.split(",")[1]) for line in csv_rows[1:]}
        assert got == pytest.approx({**{d: fn(v) for d, v in by_dept.items()}, "Total": fn(every)}), agg
