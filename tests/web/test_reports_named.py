"""Tabular and stacked-bar reports, saving a report from the builder, and reports/dashboards from YAML packages
(the format in docs/web.md), with the per-user dashboard cache. Everything runs as the viewing user."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from keel.web.app import create_web_app
from keel.web.definitions import APPS_DIR, load_catalog

from .conftest import ADMIN, ADMIN_PW, RECRUITER, RECRUITER_PW, SECRET, Org, csrf_of, login

APP_YAML = """name: hiring
label: Hiring
reports:
  - name: by_department
    label: Positions by department and status
    chart: stacked_bar
    soql: "SELECT Department__c, Status__c, COUNT(Id) n FROM Position__c GROUP BY Department__c, Status__c"
  - name: secret_by_status
    label: Secret notes (hidden from recruiters)
    soql: "SELECT Status__c, Secret_Notes__c FROM Position__c LIMIT 5"
  - name: heads_per_position
    label: Headcount per position
    soql: "SELECT Department__c, SUM(Headcount__c) heads, COUNT(Id) n FROM Position__c GROUP BY Department__c
      ORDER BY Department__c"
    summaries:
      - {name: per_position, label: Heads per position, formula: "ROUND(SUM(heads) / SUM(n), 2)"}
      - {name: never, label: Divided by zero, formula: "SUM(heads) / (SUM(n) - SUM(n))"}
dashboard: [by_department, headcount]
"""
REPORT_YAML = """report: headcount
label: Headcount by department
object: Position__c
groupings: [Department__c]
aggregate: SUM
field: Headcount__c
chart: bar
filter: {field: Status__c, op: "=", value: Open}
"""


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("apps")
    (root / "hiring" / "reports").mkdir(parents=True)
    (root / "hiring" / "app.yaml").write_text(APP_YAML)
    (root / "hiring" / "reports" / "headcount.yaml").write_text(REPORT_YAML)
    return root


def _client(org: Org, package: Path, user: str, pw: str) -> Iterator[TestClient]:
    app = create_web_app(org.ctx)
    app.app.state.catalog = load_catalog(package)  # type: ignore[attr-defined]
    with TestClient(app) as c:
        yield login(c, user, pw)


@pytest.fixture(scope="module")
def admin_pkg(web_org: Org, package: Path) -> Iterator[TestClient]:
    yield from _client(web_org, package, ADMIN, ADMIN_PW)


@pytest.fixture(scope="module")
def recruiter_pkg(web_org: Org, package: Path) -> Iterator[TestClient]:
    yield from _client(web_org, package, RECRUITER, RECRUITER_PW)


def test_the_apps_packages_load_without_errors() -> None:
    catalog = load_catalog(APPS_DIR)
    assert catalog.errors == [] and catalog.reports


def test_tabular_report_respects_field_level_security(admin: TestClient, recruiter: TestClient) -> None:
    url = "/reports?run=1&obj=Position__c&type=tabular&cols=Name,Department__c,Secret_Notes__c&ff=Status__c&fv=Open"
    a, r = admin.get(url), recruiter.get(url)
    assert a.status_code == r.status_code == 200
    assert SECRET in a.text and SECRET not in r.text
    assert "Position 001" in r.text and "Position 000" not in r.text  # the filter applies
    assert "60 rows" in r.text


def test_stacked_bar(recruiter: TestClient) -> None:
    r = recruiter.get("/reports?run=1&obj=Position__c&g1=Department__c&g2=Status__c&chart=stacked_bar")
    svg = re.search(r"<svg.*?</svg>", r.text, re.S)
    assert svg and "Patrol" in svg.group(0) and "Draft" in svg.group(0) and "Open" in svg.group(0)
    assert "<script" not in svg.group(0)


def test_save_report_private_then_shared(admin: TestClient, recruiter: TestClient) -> None:
    page = admin.get("/reports?run=1&obj=Position__c&g1=Department__c&agg=SUM&field=Headcount__c")
    data = {"csrf_token": csrf_of(page.text), "obj": "Position__c", "g1": "Department__c", "agg": "SUM",
            "field": "Headcount__c", "chart": "pie", "name": "Headcount_By_Dept", "label": "Headcount <by> dept"}
    r = admin.post("/reports/save", data=data, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/reports/r/Headcount_By_Dept"
    shown = admin.get("/reports/r/Headcount_By_Dept")
    assert shown.status_code == 200 and "Headcount &lt;by&gt; dept" in shown.text and "<svg" in shown.text
    assert "Headcount_By_Dept" in admin.get("/reports").text
    assert recruiter.get("/reports/r/Headcount_By_Dept").status_code == 404  # private to its owner
    r = admin.post("/reports/save", data={**data, "shared": "on"}, follow_redirects=False)
    assert r.status_code == 303 and recruiter.get("/reports/r/Headcount_By_Dept").status_code == 200
    # someone else cannot overwrite it, and a report on a hidden field is refused at save time
    rp = recruiter.get("/reports")
    r = recruiter.post("/reports/save", data={**data, "csrf_token": csrf_of(rp.text)}, follow_redirects=False)
    assert r.status_code == 400 and "Another user" in r.text
    r = recruiter.post("/reports/save", data={**data, "csrf_token": csrf_of(rp.text), "name": "Mine",
                                              "g1": "Secret_Notes__c"}, follow_redirects=False)
    assert r.status_code == 400
    assert admin.post("/reports/save", data={**data, "csrf_token": ""}).status_code == 403


def test_a_shared_report_runs_as_the_viewer(admin: TestClient, recruiter: TestClient) -> None:
    page = admin.get("/reports")
    admin.post("/reports/save", data={"csrf_token": csrf_of(page.text), "obj": "Position__c", "type": "tabular",
                                      "cols": "Name,Secret_Notes__c", "name": "Secrets", "shared": "on"})
    assert SECRET in admin.get("/reports/r/Secrets").text
    r = recruiter.get("/reports/r/Secrets")
    assert r.status_code == 200 and SECRET not in r.text


def test_package_reports_and_dashboard(admin_pkg: TestClient, recruiter_pkg: TestClient) -> None:
    r = recruiter_pkg.get("/reports/r/hiring.by_department")
    assert r.status_code == 200 and "<svg" in r.text and "Patrol" in r.text
    r = recruiter_pkg.get("/reports/r/hiring.headcount")
    assert r.status_code == 200 and "Sum of Headcount" in r.text
    assert SECRET in admin_pkg.get("/reports/r/hiring.secret_by_status").text
    hidden = recruiter_pkg.get("/reports/r/hiring.secret_by_status")
    assert SECRET not in hidden.text
    assert 'href="/dashboards/hiring"' in recruiter_pkg.get("/dashboards").text
    first = recruiter_pkg.get("/dashboards/hiring")
    assert first.status_code == 200 and "(0 from cache)" in first.text and first.text.count("<svg") == 2
    again = recruiter_pkg.get("/dashboards/hiring")
    assert "(2 from cache)" in again.text
    assert "(0 from cache)" in recruiter_pkg.get("/dashboards/hiring?refresh=1").text
    assert "(0 from cache)" in admin_pkg.get("/dashboards/hiring").text  # never another user's entry


def test_bad_package_definitions_are_reported_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "app.yaml").write_text("reports:\n  - {name: 'bad name'}\ndashboard: [missing]\n")
    assert load_catalog(tmp_path).errors


def test_keel_apply_deploys_a_packages_reports_and_dashboards(admin: TestClient, web_org: Org,
                                                              tmp_path: Path) -> None:
    from keel.services.metadata import apply_package

    pkg = tmp_path / "hiring_pack"
    (pkg / "reports").mkdir(parents=True)
    (pkg / "dashboards").mkdir()
    (pkg / "reports" / "headcount.yaml").write_text(REPORT_YAML)
    (pkg / "dashboards" / "overview.yaml").write_text("dashboard: overview\nlabel: Overview\n"
                                                      "components: [headcount]\n")
    apply_package(web_org.ctx, pkg)
    r = admin.get("/reports/r/hiring_pack.headcount")
    assert r.status_code == 200 and "Sum of Headcount" in r.text
    assert 'href="/dashboards/hiring_pack.overview"' in admin.get("/dashboards").text
    assert admin.get("/dashboards/hiring_pack.overview").text.count("<svg") == 1


def test_summary_formulas_per_group_and_for_the_grand_total(recruiter_pkg: TestClient, web_org: Org) -> None:
    """A ratio of the report's aggregates on every group's row and, on the Total line, over all rows (not an
    average of the rows' ratios); a division by zero is blank. It is computed from what the viewer sees."""
    from keel.services.query import query
    from keel.services.report_summaries import parse_summaries, summarise
    from keel.services.security import user_context
    from keel.storage import ids
    from keel.web.base import display

    page = recruiter_pkg.get("/reports/r/hiring.heads_per_position").text
    assert "<th scope=\"col\">Heads per position</th>" in page
    uid = query(web_org.ctx, f"SELECT Id FROM User WHERE Username = '{RECRUITER}'")["records"][0]["Id"]
    ctx = user_context(web_org.ctx, ids.split(uid)[1])
    rows = query(ctx, "SELECT Department__c, Headcount__c FROM Position__c")["records"]
    heads = sum(r["Headcount__c"] or 0 for r in rows)
    total = re.search(r'<tr class="total"><th scope="row">Total</th><td><strong>([^<]*)</strong></td>'
                      r'<td><strong>([^<]*)</strong></td><td><strong>([^<]*)</strong></td>'
                      r'<td><strong>([^<]*)</strong></td></tr>', page)
    assert total and total.groups() == ("", "", display(round(heads / len(rows), 2)), ""), page[-2000:]
    for dept in {r["Department__c"] for r in rows}:
        mine = [r["Headcount__c"] or 0 for r in rows if r["Department__c"] == dept]
        assert f"<td>{dept}</td><td>{display(sum(mine))}</td><td>{len(mine)}</td>" \
               f"<td>{display(round(sum(mine) / len(mine), 2))}</td><td></td>" in page
    with pytest.raises(Exception, match="wrap heads"):
        parse_summaries([{"name": "bad", "formula": "heads / SUM(n)"}])
    with pytest.raises(Exception, match="only"):
        parse_summaries([{"name": "bad", "formula": "TODAY()"}])
    rows_out, grand = summarise(parse_summaries([{"name": "r", "formula": "SUM(a) / SUM(b)"}]),
                                [{"a": 10, "b": 2}, {"a": 5, "b": 0}, {"a": None, "b": 3}])
    assert [r["r"] for r in rows_out] == [5, None, None] and grand == {"r": 3}
