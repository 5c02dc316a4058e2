"""The command line: init, plan/apply, describe, users, and `keel up` serving a fresh database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from keel.cli.main import app
from keel.context import Context
from keel.services.org import open_context

FIXTURE = Path(__file__).parent.parent / "fixtures" / "every_type"
runner = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "250"})
    assert result.exit_code == code, result.output
    return result.output


def test_init_plan_apply_describe(db_url: str, tmp_path: Path) -> None:
    out = run("init", "--db", db_url, "--admin-username", "root@agency.gov", "--admin-password",
              "a long admin passphrase")
    assert "administrator root@agency.gov" in out.replace("\n", " ")
    assert "already initialised" in run("init", "--db", db_url, "--admin-password", "another long passphrase")
    plan = run("plan", str(FIXTURE), "--db", db_url)
    assert "create_object  Position__c" in plan and "create_object  Posting__c" in plan
    run("apply", str(FIXTURE), "--db", db_url)
    assert "No changes." in run("plan", str(FIXTURE), "--db", db_url)
    listing = run("describe", "--db", db_url)
    assert "Position__c" in listing and "Account" in listing
    fields = run("describe", "Position__c", "--db", db_url)
    assert "Hiring_Manager__c" in fields and "Hiring_Manager__r" in fields.replace("\n", "")
    bad = run("describe", "Nope__c", "--db", db_url, code=1)
    assert "INVALID_TYPE" in bad


def test_refused_plan_exits_non_zero_with_counts(db_url: str, tmp_path: Path) -> None:
    run("init", "--db", db_url, "--admin-password", "a long admin passphrase")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "Item__c.yaml").write_text("object: Item__c\nfields:\n  - {name: Code__c, type: text, length: 10}\n")
    run("apply", str(pkg), "--db", db_url)
    csv = tmp_path / "items.csv"
    csv.write_text("Name,Code__c\na,ABCDEFGH\nb,XY\n")
    run("import", "Item__c", str(csv), "--db", db_url)
    (pkg / "Item__c.yaml").write_text("object: Item__c\nfields:\n  - {name: Code__c, type: text, length: 4}\n")
    out = run("plan", str(pkg), "--db", db_url, code=1)
    assert "would truncate 1 row(s)" in out
    assert "truncate 1 row(s)" in run("apply", str(pkg), "--db", db_url, code=1)


def test_plan_refuses_controlled_by_parent_without_a_master(db_url: str, tmp_path: Path) -> None:
    run("init", "--db", db_url, "--admin-password", "a long admin passphrase")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "Note__c.yaml").write_text("object: Note__c\nsharing: controlled_by_parent\n"
                                      "fields:\n  - {name: Account__c, type: lookup, to: Account}\n")
    out = " ".join(run("plan", str(pkg), "--db", db_url, code=1).split())
    assert "Note__c.yaml: object 'Note__c': sharing controlled_by_parent needs a master_detail field" in out
    (pkg / "Note__c.yaml").write_text("object: Note__c\n"
                                      "fields:\n  - {name: Account__c, type: master_detail, to: Account}\n")
    run("apply", str(pkg), "--db", db_url)
    ctx = open_context(db_url)
    try:
        assert ctx.schema().get_object("Note__c").sharing == "controlled_by_parent"
    finally:
        ctx.db.dispose()


# Salesforce's key prefixes for the standard objects Keel ships.
SALESFORCE_PREFIXES = {
    "Account": "001", "Contact": "003", "User": "005", "Lead": "00Q", "Opportunity": "006", "Case": "500",
    "Task": "00T", "Event": "00U", "Note": "002", "Attachment": "00P", "Organization": "00D", "Group": "00G",
    "GroupMember": "011", "Profile": "00e", "UserRole": "00E", "PermissionSet": "0PS",
    "PermissionSetAssignment": "0Pa", "PermissionSetGroup": "0PG", "PermissionSetGroupComponent": "0PC",
    "ObjectPermissions": "110", "FieldPermissions": "01k", "QueueSobject": "03g", "ProcessInstance": "04g",
    "ProcessInstanceStep": "04h", "ProcessInstanceWorkitem": "04i", "AccountShare": "00r", "ContactShare": "03s",
    "LeadShare": "01o", "OpportunityShare": "00t", "CaseShare": "01n", "BulkJob": "750", "SharingRule": "02S",
    "RecordType": "012",
}
AUDIT = ["Id", "Name", "OwnerId", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById",
         "SystemModstamp", "IsDeleted"]


def test_init_installs_standard_objects_with_salesforce_prefixes_and_audit_fields(db_url: str) -> None:
    run("init", "--db", db_url, "--admin-password", "a long admin passphrase")
    listing = {}
    for line in run("describe", "--db", db_url).splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").replace("┃", "│").split("│")]
        if len(cells) == 5 and cells[0] not in ("", "Object"):
            listing[cells[0]] = cells[2]
    assert listing == SALESFORCE_PREFIXES
    ctx = open_context(db_url)
    try:
        schema = ctx.schema()
        with ctx.db.read() as conn:
            insp = sa.inspect(conn)
            for obj in schema:
                assert [obj.get_field(n).api_name for n in AUDIT] == AUDIT, obj.api_name
                columns = {c["name"] for c in insp.get_columns(obj.table)}
                assert {obj.get_field(n).column for n in AUDIT} <= columns, obj.api_name
                assert obj.get_field("OwnerId").reference_to[:1] == ("User",)
    finally:
        ctx.db.dispose()
    account = run("describe", "Account", "--db", db_url)
    assert all(name in account for name in [*AUDIT, "Industry", "BillingCity"])


def test_db_defaults_to_keel_db_in_the_working_directory(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KEEL_DATABASE_URL", raising=False)
    monkeypatch.delenv("KEEL_CONFIG", raising=False)
    assert not (tmp_path / "keel.db").exists()
    result = runner.invoke(app, ["init", "--admin-password", "a long admin passphrase"], catch_exceptions=False,
                           env={"KEEL_DATABASE_URL": None, "KEEL_CONFIG": None, "COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "keel.db").is_file()
    assert "Account" in run("describe")
    monkeypatch.setenv("KEEL_DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")  # the variable comes first
    run("init", "--admin-password", "a long admin passphrase")
    assert (tmp_path / "other.db").is_file()


def test_import_shows_its_progress_where_stderr_is_not_a_terminal(org: Context, tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "Item__c.yaml").write_text("object: Item__c\nfields:\n  - {name: Code__c, type: text}\n")
    run("apply", str(pkg), "--db", org.db.url)
    csv = tmp_path / "items.csv"
    csv.write_text("Name,Code__c\n" + "".join(f"item {i},C{i}\n" for i in range(37)))
    result = runner.invoke(app, ["import", "Item__c", str(csv), "--db", org.db.url], catch_exceptions=False,
                           env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "Importing Item__c" in result.stderr and "37/37" in result.stderr
    assert "Imported 37 new" in result.stdout


def test_users(db_url: str) -> None:
    run("init", "--db", db_url, "--admin-password", "a long admin passphrase")
    run("user", "create", "--username", "ann@agency.gov", "--password", "ann's long passphrase", "--first-name",
        "Ann", "--db", db_url)
    weak = run("user", "create", "--username", "bob@agency.gov", "--password", "short", "--db", db_url, code=1)
    assert "at least 12 characters" in weak
    listing = run("user", "list", "--db", db_url)
    assert "ann@agency.gov" in listing and "bob@agency.gov" not in listing
    run("user", "deactivate", "ann@agency.gov", "--db", db_url)
    assert "no" in [line.split("│")[-2].strip() for line in run("user", "list", "--db", db_url).splitlines()
                    if "ann@agency.gov" in line]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_keel_up_initialises_and_serves(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "KEEL_DATABASE_URL": f"sqlite:///{tmp_path / 'keel.db'}", "KEEL_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "keel.cli.main", "up", "--port", str(port), "--https-port", "0",
                             "--no-apps"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError("keel up did not start serving")
        assert (tmp_path / "keel.db").exists()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    assert "admin@keel.local" in out


def test_formula_check_and_recalc(db_url: str, tmp_path: Path) -> None:
    run("init", "--db", db_url, "--admin-password", "a long admin passphrase")
    assert run("formula", "check", "AnnualRevenue * 2", "--object", "Account", "--db", db_url).strip() == "currency"
    bad = run("formula", "check", "AnnualRevenue & 2", "--object", "Account", "--db", db_url, code=1)
    assert "INVALID_FORMULA" in bad and "column" in bad
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "Box__c.yaml").write_text(
        "object: Box__c\nfields:\n  - {name: Items__c, type: rollup, function: COUNT, child: Items__r}\n")
    (pkg / "Item__c.yaml").write_text(
        "object: Item__c\nsharing: controlled_by_parent\nfields:\n"
        "  - {name: Box__c, type: master_detail, to: Box__c, child_relationship_name: Items__r}\n")
    run("apply", str(pkg), "--db", db_url)
    assert "Recalculated Box__c.Items__c on 0 record(s)" in run("recalc", "Box__c.Items__c", "--db", db_url)
    assert "not a roll-up" in run("recalc", "Box__c.Name", "--db", db_url, code=1)


def test_keel_up_first_run_installs_the_apps_and_prints_demo_logins(tmp_path: Path) -> None:
    """The README quick start, at the smallest sample: the apps and their demo users, whose printed logins work."""
    port = free_port()
    env = {**os.environ, "KEEL_DATABASE_URL": f"sqlite:///{tmp_path / 'keel.db'}", "KEEL_DATA_DIR": str(tmp_path),
           "COLUMNS": "80"}
    proc = subprocess.Popen([sys.executable, "-m", "keel.cli.main", "up", "--port", str(port), "--https-port", "0",
                             "--sample", "1"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise AssertionError("keel up did not start serving")
        # a persona logs in with the printed password (SOAP login, as simple-salesforce does) and sees sample data
        envelope = ('<?xml version="1.0" encoding="utf-8"?><env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/'
                    'envelope/" xmlns:urn="urn:partner.soap.sforce.com"><env:Body><urn:login><urn:username>'
                    'recruiter@keel.local</urn:username><urn:password>keel-demo-passphrase</urn:password></urn:login>'
                    '</env:Body></env:Envelope>')
        r = httpx.post(f"{base}/services/Soap/u/59.0", content=envelope,
                       headers={"Content-Type": "text/xml", "SOAPAction": "login"}, timeout=10)
        assert r.status_code == 200, r.text
        session = r.text.split("<sessionId>")[1].split("</sessionId>")[0]
        q = httpx.get(f"{base}/services/data/v59.0/query", params={"q": "SELECT COUNT(Id) n FROM Job_Application__c"},
                      headers={"Authorization": f"Bearer {session}"}, timeout=10)
        assert q.status_code == 200 and q.json()["records"][0]["n"] > 0, q.text
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    for line in ("admin@keel.local", "recruiter@keel.local", "hiringmanager@keel.local", "procurement@keel.local",
                 "grants@keel.local", "charityfinance@keel.local", "keel-demo-passphrase"):
        assert line in out, out
