"""Upgrading an installed app from a changed copy of its package: `keel app plan` shows the change, and `keel app
install` applies all of it in one transaction or none of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from typer.testing import CliRunner

from keel.cli.main import app
from keel.context import Context
from keel.metadata.store import load_snapshot
from keel.records import save_many
from keel.services.apps import app_dir, install_app, installed_version, plan_app
from keel.services.automation import wire_automation
from keel.services.org import open_context
from keel.services.query import query
from keel.web.views import views_for
from tests.apps.conftest import refused

FIELD = {"name": "Renewal_Notes__c", "type": "text", "length": 255, "label": "Renewal Notes"}
V = int(yaml.safe_load((app_dir("vendors") / "app.yaml").read_text())["version"])  # the bundled version
RULE = {"name": "Value_Positive", "condition": "Value__c <= 0", "message": "A contract has a positive value.",
        "field": "Value__c"}


def cli(*args: str, code: int = 0) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == code, res.output
    return res.output


def version_2(tmp_path: Path, *, broken_flow: bool) -> Path:
    """A copy of the vendors package with a new Contract field and rule; optionally a flow that does not check."""
    pkg = tmp_path / ("broken" if broken_flow else "v2")
    shutil.copytree(app_dir("vendors"), pkg)
    doc = yaml.safe_load((pkg / "app.yaml").read_text())
    (pkg / "app.yaml").write_text(yaml.safe_dump({**doc, "version": V + 1}, sort_keys=False))
    obj = yaml.safe_load((pkg / "objects" / "Contract__c.yaml").read_text())
    obj["fields"].append(FIELD)
    obj["validation_rules"].append(RULE)
    (pkg / "objects" / "Contract__c.yaml").write_text(yaml.safe_dump(obj, sort_keys=False))
    if broken_flow:
        (pkg / "flows" / "broken.yaml").write_text(
            "- flow: Broken\n  object: Contract__c\n  event: created\n  condition: 'No_Such_Field__c > 1'\n"
            "  actions: [{set: {Title__c: '\"x\"'}}]\n")
    return pkg


def columns(org: Context) -> set[str]:
    """Contract's fields as the database now has them (the CLI changed it, not this Context)."""
    with org.db.read() as conn:
        return {f.api_name for f in load_snapshot(conn).get_object("Contract__c").fields}


def test_upgrade_from_a_changed_package_is_planned_then_applied_whole(org: Context, tmp_path: Path) -> None:
    install_app(org, "vendors")
    db = ["--db", org.db.url]
    # the plan names the new field and the changed rules, and the versions
    out = cli("app", "plan", str(version_2(tmp_path, broken_flow=False)), *db)
    assert f"installed {V}, package version {V + 1}" in out and "Renewal_Notes__c" in out, out
    assert "Contract__c" in out and "validation_rules" in out, out
    # a package whose flow does not check is refused after its schema change ran: nothing of it stays
    out = cli("app", "install", str(version_2(tmp_path, broken_flow=True)), *db, code=1)
    assert "No_Such_Field__c" in out, out
    assert "Renewal_Notes__c" not in columns(org) and installed_version(org, "vendors") == str(V)
    # the good package applies: field, rule and version together
    cli("app", "install", str(tmp_path / "v2"), *db)
    assert installed_version(org, "vendors") == str(V + 1)
    assert "No schema changes." in cli("app", "plan", str(tmp_path / "v2"), *db)
    assert "Renewal_Notes__c" in columns(org)
    ctx = wire_automation(open_context(org.db.url, settings=org.settings))
    try:
        vendor = save_many(ctx, "Account", [{"Name": "V", "Type": "Vendor", "Vendor_Status__c": "Active"}])[0].id
        refused(ctx, "Contract__c", [{"Vendor__c": vendor, "Title__c": "Free", "Value__c": 0}], "positive value")
        save_many(ctx, "Contract__c", [{"Vendor__c": vendor, "Title__c": "Paid", "Value__c": 10,
                                        "Renewal_Notes__c": "renew in May"}])
    finally:
        ctx.db.dispose()


def test_vendors_before_record_types_upgrade_to_the_vendor_record_type(org: Context, tmp_path: Path) -> None:
    """Version 1 of the app knew vendors only by Type = Vendor; the upgrade adds Account.RecordTypeId, the Vendor
    record type and its list view in one plan, and the vendors made before it keep working."""
    old = tmp_path / "v1"
    shutil.copytree(app_dir("vendors"), old)
    doc = yaml.safe_load((old / "app.yaml").read_text())
    (old / "app.yaml").write_text(yaml.safe_dump({**doc, "version": 1}, sort_keys=False))
    ext = yaml.safe_load((old / "extends" / "Account.yaml").read_text())
    (old / "extends" / "Account.yaml").write_text(yaml.safe_dump(
        {k: v for k, v in ext.items() if k not in ("record_types", "list_views")}, sort_keys=False))
    install_app(org, str(old))
    with org.db.read() as conn:
        assert load_snapshot(conn).get_object("Account").find_field("RecordTypeId") is None
    ctx = wire_automation(org)
    before = save_many(ctx, "Account", [{"Name": "Old V", "Type": "Vendor", "Vendor_Status__c": "Active"}])[0].id

    ap = plan_app(org, "vendors")
    assert (ap.installed_version, ap.version) == ("1", str(V)) and not ap.problems
    described = "\n".join(ap.describe())
    assert "add_field      Account.RecordTypeId" in described and "update_object  Account" in described, described
    install_app(org, "vendors")
    assert installed_version(org, "vendors") == str(V) and plan_app(org, "vendors").plan.empty
    vendor_type = query(org, "SELECT Id FROM RecordType WHERE SobjectType = 'Account' AND DeveloperName = 'Vendor'")
    rt = vendor_type["records"][0]["Id"]

    ctx = wire_automation(open_context(org.db.url, settings=org.settings))
    try:
        # a vendor of the record type gets Type = Vendor, and no other Type; the old vendor still takes contracts
        new = save_many(ctx, "Account", [{"Name": "New V", "RecordTypeId": rt, "Vendor_Status__c": "Active"}])[0].id
        refused(ctx, "Account", [{"Name": "X", "RecordTypeId": rt, "Type": "Charity"}], "not available for record type")
        got = query(ctx, f"SELECT Type, RecordType.DeveloperName FROM Account WHERE Id = '{new}'")["records"][0]
        assert (got["Type"], got["RecordType"]["DeveloperName"]) == ("Vendor", "Vendor")
        for vendor in (before, new):
            save_many(ctx, "Contract__c", [{"Vendor__c": vendor, "Title__c": "Paid", "Value__c": 10}])
        # the Vendors list view filters on the record type
        with ctx.db.read() as conn:
            account = load_snapshot(conn).get_object("Account")
        view = next(v for v in views_for(account) if v.name == "vendors")
        assert view.filters == [{"field": "RecordType.DeveloperName", "op": "=", "value": "Vendor"}]
        rows = query(ctx, "SELECT Name FROM Account WHERE RecordType.DeveloperName = 'Vendor'")["records"]
        assert [r["Name"] for r in rows] == ["New V"]
    finally:
        ctx.db.dispose()
