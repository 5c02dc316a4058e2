"""The report builder beyond one grouping: several filters ANDed, relative date filters, MIN and MAX, CSV export
(neutralised, field-masked), and every chart kind printing its labels and values in the SVG itself, so a chart is
readable without hovering. Expectations come from SOQL over the same data."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import xml.etree.ElementTree as ET

import pytest
from starlette.testclient import TestClient

from keel.records import save_many
from keel.services.query import query
from keel.services.security import system_context
from keel.web.base import display

from .conftest import SECRET, Org

HOSTILE = '=HYPERLINK("http://evil.example","x")'


@pytest.fixture(scope="module")
def dated(web_org: Org) -> Org:
    """Open dates 10 and 200 days ago and distinct maximum pay on the first 60 positions, and one position whose
    name is a spreadsheet formula."""
    ctx = system_context(web_org.ctx, "report builder test data")
    today = dt.datetime.now(dt.UTC).date()
    save_many(ctx, "Position__c", [
        {"Id": pid, "Open_Date__c": (today - dt.timedelta(days=10 if i % 2 else 200)).isoformat(),
         "Max_Pay__c": 50_000 + 1_000 * ((i * 37) % 60)} for i, pid in enumerate(web_org.positions[:60])])
    save_many(ctx, "Position__c", [{"Name": HOSTILE, "Department__c": "Patrol", "Status__c": "Open"}])
    return web_org


def _csv(client: TestClient, qs: str) -> list[list[str]]:
    r = client.get(f"/reports/export.csv?{qs}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith("attachment;")
    return list(csv.reader(io.StringIO(r.text)))


def _count(org: Org, where: str) -> int:
    return int(query(org.ctx, f"SELECT COUNT() FROM Position__c WHERE {where}")["totalSize"])


def test_filters_are_anded_and_take_relative_dates(admin: TestClient, dated: Org) -> None:
    one = "obj=Position__c&g1=Department__c&agg=COUNT&ff=Status__c&fo=%3D&fv=Open"
    rows = _csv(admin, one)
    assert rows[-1] == ["Total", str(_count(dated, "Status__c = 'Open'"))]
    recent = "&ff2=Open_Date__c&fo2=%3D&fv2=LAST_N_DAYS:90"
    expect = {d: _count(dated, f"Status__c = 'Open' AND Open_Date__c = LAST_N_DAYS:90 AND Department__c = '{d}'")
              for d in ("Patrol", "Investigations", "Dispatch")}
    rows = _csv(admin, one + recent)
    assert {r[0]: int(r[1]) for r in rows[1:-1]} == {d: n for d, n in expect.items() if n}
    assert int(rows[-1][1]) == sum(expect.values()) > 0
    assert sum(expect.values()) < _count(dated, "Status__c = 'Open'")  # the second filter narrowed the report
    three = one + recent + "&ff3=Department__c&fo3=%3D&fv3=Patrol"
    rows = _csv(admin, three)
    assert rows[1:] == [["Patrol", str(expect["Patrol"])], ["Total", str(expect["Patrol"])]]
    page = admin.get(f"/reports?run=1&{three}").text
    assert 'id="rff3"' in page and 'name="fv3" value="Patrol"' in page  # the builder shows all three filters
    older = _csv(admin, "obj=Position__c&agg=COUNT&ff=Open_Date__c&fo=%3C&fv=LAST_N_DAYS:90")
    assert older[-1] == ["Total", str(_count(dated, "Open_Date__c < LAST_N_DAYS:90"))] and older[-1][1] != "0"


@pytest.mark.parametrize("agg", ["MIN", "MAX"])
def test_min_and_max_per_group_and_overall(admin: TestClient, dated: Org, agg: str) -> None:
    got = _csv(admin, f"obj=Position__c&g1=Department__c&agg={agg}&field=Max_Pay__c")
    assert got[0] == ["Department", f"{agg.title()} of Max Pay"]
    recs = query(dated.ctx, f"SELECT Department__c, {agg}(Max_Pay__c) v FROM Position__c GROUP BY Department__c")
    expect = {r["Department__c"]: float(r["v"]) for r in recs["records"]}
    assert {r[0]: float(r[1]) for r in got[1:-1]} == expect
    assert len(set(expect.values())) == 3  # distinct per group, so a mixed-up group would show
    assert float(got[-1][1]) == (min if agg == "MIN" else max)(expect.values())
    page = admin.get(f"/reports?run=1&obj=Position__c&g1=Department__c&agg={agg}&field=Max_Pay__c").text
    for v in expect.values():
        assert display(v) in page


def test_csv_export_neutralises_formulas_and_masks_fields(admin: TestClient, recruiter: TestClient,
                                                          dated: Org) -> None:
    rows = _csv(admin, "obj=Position__c&type=tabular&cols=Name,Department__c,Max_Pay__c&ff=Name&fo=contains"
                       "&fv=HYPERLINK")
    assert rows == [["Position Title", "Department", "Max Pay"], ["'" + HOSTILE, "Patrol", ""]]
    grouped = _csv(admin, "obj=Position__c&g1=Name&agg=COUNT&ff=Name&fo=contains&fv=HYPERLINK")
    assert grouped[1] == ["'" + HOSTILE, "1"]
    admin_rows = _csv(admin, "obj=Candidate__c&type=tabular&cols=Name,SSN__c")
    assert admin_rows[0] == ["Candidate Name", "SSN"] and SECRET in admin_rows[1][1]
    masked = _csv(recruiter, "obj=Candidate__c&type=tabular&cols=Name,SSN__c")
    assert masked[0] == ["Candidate Name"] and len(masked) == len(admin_rows)
    assert SECRET not in str(masked)
    refused = recruiter.get("/reports/export.csv?obj=Candidate__c&g1=SSN__c")
    assert refused.status_code != 200 and SECRET not in refused.text
    assert 'href="/reports/export.csv?' in admin.get("/reports?run=1&obj=Position__c&g1=Department__c").text


def _svg_texts(client: TestClient, kind: str) -> list[ET.Element]:
    page = client.get(f"/reports?run=1&obj=Position__c&g1=Department__c&agg=SUM&field=Headcount__c&chart={kind}")
    m = re.search(r"<svg.*?</svg>", page.text, re.S)
    assert m, f"no {kind} chart"
    svg = ET.fromstring(m.group(0))
    return list(svg.iter("{http://www.w3.org/2000/svg}text"))


def _sums(org: Org) -> dict[str, int]:
    recs = query(org.ctx, "SELECT Department__c, SUM(Headcount__c) v FROM Position__c GROUP BY Department__c")
    return {r["Department__c"]: int(r["v"]) for r in recs["records"]}


@pytest.mark.parametrize("kind", ["pie", "donut", "funnel"])
def test_pie_donut_and_funnel_print_each_label_with_its_value(admin: TestClient, dated: Org, kind: str) -> None:
    texts = _svg_texts(admin, kind)
    words = [t.text or "" for t in texts]
    sums = _sums(dated)
    assert len(set(sums.values())) == 3
    total = sum(sums.values())
    assert words[0] == "Sum of Headcount by Department"
    for dept, v in sums.items():
        expected = f"{dept}: {v:,}" + (f" ({100 * v / total:.0f}%)" if kind != "funnel" else "")
        assert expected in words, (expected, words)
    assert (f"{total:,}" in words) == (kind == "donut")  # the donut prints the total in its hole


def test_line_chart_prints_each_value_above_its_label(admin: TestClient, dated: Org) -> None:
    texts = _svg_texts(admin, "line")
    sums = _sums(dated)
    by_x: dict[str, list[str]] = {}
    for t in texts[1:]:
        by_x.setdefault(t.get("x", ""), []).append(t.text or "")
    pairs = {tuple(sorted(v, key=lambda s: s.replace(",", "").isdigit())) for v in by_x.values()}
    assert pairs == {(dept, f"{v:,}") for dept, v in sums.items()}


def test_package_reports_take_several_filters() -> None:
    from keel.web.definitions import report_from_yaml

    r = report_from_yaml({"report": "recent_open", "object": "Position__c", "groupings": ["Department__c"],
                          "filter": {"field": "Status__c", "value": "Open"},
                          "filters": [{"field": "Open_Date__c", "op": "=", "value": "LAST_N_DAYS:90"}]})
    assert (r.params["ff"], r.params["fo"], r.params["fv"]) == ("Status__c", "=", "Open")
    assert (r.params["ff2"], r.params["fo2"], r.params["fv2"]) == ("Open_Date__c", "=", "LAST_N_DAYS:90")
