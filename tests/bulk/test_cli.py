"""``keel import --bulk`` / ``keel export --bulk`` and ``keel jobs list/show/abort``."""

from __future__ import annotations

import csv
from pathlib import Path

from typer.testing import CliRunner

from conftest import PACKAGE
from keel.cli.main import app
from keel.services.metadata import apply_package
from keel.services.org import init_org, open_context
from keel.settings import Settings


def test_bulk_import_export_and_jobs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keel.db'}"
    ctx = open_context(url, settings=Settings(database_url=url, data_dir=str(tmp_path / ".keel")))
    init_org(ctx, admin_username="admin@cli.test", admin_password="a cli admin passphrase")
    apply_package(ctx, PACKAGE)
    ctx.db.dispose()
    src = tmp_path / "items.csv"
    with open(src, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Name", "Category__c", "Qty__c", "Note__c"])
        w.writerows([[f"I{i}", "c", str(-1 if i == 7 else i), "=1+1" if i == 3 else ""] for i in range(300)])
    runner = CliRunner()
    env = {"KEEL_DATA_DIR": str(tmp_path / ".keel"), "COLUMNS": "250"}
    r = runner.invoke(app, ["import", "Item__c", str(src), "--bulk", "--db", url], env=env)
    assert r.exit_code == 0, r.output
    assert "300 row(s) processed, 1 failed" in r.output
    with open(tmp_path / "items.errors.csv") as f:
        errors = list(csv.DictReader(f))
    assert errors[0]["sf__Error"].startswith("FIELD_CUSTOM_VALIDATION_EXCEPTION")
    out = tmp_path / "out.csv"
    r = runner.invoke(app, ["export", "Item__c", "-o", str(out), "--bulk", "--db", url], env=env)
    assert r.exit_code == 0, r.output
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 299 and "'=1+1" in {x["Note__c"] for x in rows}
    r = runner.invoke(app, ["jobs", "list", "--db", url], env=env)
    assert r.exit_code == 0 and "JobComplete" in r.output and "V2Query" in r.output
    job_id = r.output.split("750", 1)[1][:15]
    r = runner.invoke(app, ["jobs", "show", "750" + job_id, "--db", url], env=env)
    assert r.exit_code == 0 and "state" in r.output
    r = runner.invoke(app, ["jobs", "abort", "750" + job_id, "--db", url], env=env)
    assert r.exit_code == 1 and "already" in r.output
