"""Report indexes derived from a package's reports: planned with the package, covering, dropped with the report."""

from __future__ import annotations

from pathlib import Path

import yaml

from keel.context import Context
from keel.metadata.plan import plan
from keel.metadata.store import load_snapshot
from keel.services.metadata import apply_package, plan_package
from keel.services.report_indexes import load_package_objects

OBJECT = {"object": "Deal__c", "fields": [
    {"name": "Region__c", "type": "picklist", "values": ["North", "South"]},
    {"name": "Kind__c", "type": "picklist", "values": ["New", "Renewal"]},
    {"name": "Amount__c", "type": "currency"},
    {"name": "Account__c", "type": "lookup", "to": "Account"},
    {"name": "Double__c", "type": "formula", "returns": "number", "formula": "Amount__c * 2"}]}
SOQL_REPORTS = [
    {"name": "by_region", "soql": "SELECT Region__c, SUM(Amount__c) s FROM Deal__c WHERE Kind__c = 'New' "
                                  "GROUP BY Region__c"},
    {"name": "by_account_industry", "soql": "SELECT Account__r.Industry, COUNT(Id) n FROM Deal__c "
                                            "GROUP BY Account__r.Industry"},
    {"name": "formula", "soql": "SELECT Region__c, SUM(Double__c) d FROM Deal__c GROUP BY Region__c"},
    {"name": "rows", "soql": "SELECT Name, Amount__c FROM Deal__c"},
    {"name": "broken", "soql": "SELECT FROM WHERE"}]
STRUCTURED = {"report": "kinds", "object": "Deal__c", "type": "summary", "groupings": ["Kind__c", "Region__c"],
              "aggregate": "AVG", "field": "Amount__c"}


def _package(root: Path, reports: list[dict[str, object]], structured: bool = True) -> Path:
    (root / "objects").mkdir(parents=True, exist_ok=True)
    (root / "objects" / "Deal__c.yaml").write_text(yaml.safe_dump(OBJECT))
    (root / "app.yaml").write_text(yaml.safe_dump({"name": "deals", "reports": reports}))
    (root / "reports").mkdir(exist_ok=True)
    target = root / "reports" / "kinds.yaml"
    if structured:
        target.write_text(yaml.safe_dump(STRUCTURED))
    elif target.exists():
        target.unlink()
    return root


def test_reports_an_index_can_cover_get_one(org: Context, tmp_path: Path) -> None:
    pkg = _package(tmp_path / "deals", SOQL_REPORTS)
    (deal,) = load_package_objects(pkg)
    derived = {ix.source: (ix.fields, ix.include) for ix in deal.indexes if ix.kind == "report"}
    # parent paths, formulas, non-aggregate and unparsable reports get none
    assert derived == {"report:by_region": (("Region__c",), ("Amount__c", "Kind__c")),
                       "report:kinds": (("Kind__c", "Region__c"), ("Amount__c",))}
    p, problems = plan_package(org, pkg)
    assert not problems
    assert len([op for op in p.ops if op.kind == "create_index"]) == 2
    apply_package(org, pkg)
    with org.db.read() as conn:
        assert plan(load_snapshot(conn), load_package_objects(pkg)).empty


def test_an_index_goes_when_its_report_goes(org: Context, tmp_path: Path) -> None:
    pkg = _package(tmp_path / "deals", SOQL_REPORTS)
    apply_package(org, pkg)
    _package(pkg, SOQL_REPORTS, structured=False)
    p = apply_package(org, pkg)
    dropped = [op.detail for op in p.ops if op.kind == "drop_index"]
    assert len(dropped) == 1 and [op.kind for op in p.ops].count("create_index") == 0


def test_a_declared_index_that_covers_a_report_is_enough(org: Context, tmp_path: Path) -> None:
    pkg = _package(tmp_path / "deals", SOQL_REPORTS[:1], structured=False)
    doc = {**OBJECT, "indexes": [{"group_by": ["Region__c"], "include": ["Kind__c", "Amount__c", "Account__c"]}]}
    (pkg / "objects" / "Deal__c.yaml").write_text(yaml.safe_dump(doc))
    (deal,) = load_package_objects(pkg)
    assert [ix.source for ix in deal.indexes if ix.kind == "report"] == ["declared"]
