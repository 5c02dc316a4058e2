"""Moving an organisation between databases with export-org / import-org, keeping every id and every row."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from keel.context import Context
from keel.errors import KeelError
from keel.services.orgio import export_org, import_org
from keel.services.query import query
from tests.conftest import BACKENDS
from tests.ops.conftest import populate


def _tree(root: Path) -> dict[str, str]:
    """Every exported file, without the manifest (it names the source dialect) and the import's own audit row."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            text = p.read_text(encoding="utf-8")
            if p.name == "keel_audit.jsonl":
                text = "".join(line + "\n" for line in text.splitlines() if '"org.import"' not in line)
            out[p.relative_to(root).as_posix()] = text
    return out


def test_round_trip_is_lossless(org: Context, make_db: Callable[[str], Context], tmp_path: Path,
                                backend: str) -> None:
    """SQLite -> PostgreSQL -> SQLite (and PostgreSQL -> SQLite -> SQLite); SQLite only without KEEL_TEST_PG."""
    middle = next((b for b in BACKENDS if b != backend), backend)
    populate(org)
    first = export_org(org, tmp_path / "a")
    assert first["rows"]["data/Position__c.csv"] == 4
    moved = make_db(middle)
    import_org(moved, tmp_path / "a")
    export_org(moved, tmp_path / "b")
    back = make_db("sqlite")
    import_org(back, tmp_path / "b")
    export_org(back, tmp_path / "c")
    a, b, c = _tree(tmp_path / "a"), _tree(tmp_path / "b"), _tree(tmp_path / "c")
    assert a.keys() == b.keys() == c.keys()
    for name in a:
        assert a[name] == b[name], name
        assert b[name] == c[name], name
    # The moved organisation works: queries see the same records, and new ids never collide with old ones.
    before = query(org, "SELECT Id, Name, Max_Pay__c FROM Position__c ORDER BY Name")["records"]
    after = query(moved, "SELECT Id, Name, Max_Pay__c FROM Position__c ORDER BY Name")["records"]
    assert [(r["Id"], r["Name"], r["Max_Pay__c"]) for r in before] == \
        [(r["Id"], r["Name"], r["Max_Pay__c"]) for r in after]
    from keel.records import save_many

    new = save_many(moved, "Account", [{"Name": "After the move"}])[0].id
    old_ids = {r["Id"] for r in query(org, "SELECT Id FROM Account")["records"]}
    assert new not in old_ids


def test_import_refuses_non_empty_target_and_damaged_export(org: Context, make_db: Callable[[str], Context],
                                                            tmp_path: Path) -> None:
    export_org(org, tmp_path / "x")
    with pytest.raises(KeelError) as exc:
        import_org(org, tmp_path / "x")
    assert exc.value.code == "IMPORT_TARGET_NOT_EMPTY"
    csv = tmp_path / "x" / "data" / "Account.csv"
    csv.write_text(csv.read_text() + "tampered\n")
    target = make_db("sqlite")
    with pytest.raises(KeelError) as exc:
        import_org(target, tmp_path / "x")
    assert exc.value.code == "IMPORT_FAILED"


@pytest.mark.slow
def test_round_trip_with_the_three_apps(make_db: Callable[[str], Context], tmp_path: Path) -> None:
    """The recruiting, vendors and philanthropy apps (schema, roles, permission sets, flows, approvals) and
    recruiting sample data move SQLite -> PostgreSQL (when available) -> SQLite without a difference."""
    import importlib

    from keel.services.apps import apply_app
    from keel.services.org import init_org
    from tests.conftest import ADMIN, ADMIN_PASSWORD

    source = make_db("sqlite")
    init_org(source, admin_username=ADMIN, admin_password=ADMIN_PASSWORD)
    for name in ("vendors", "philanthropy", "recruiting"):
        apply_app(source, name)
    importlib.import_module("keel.apps.recruiting.sample").generate(source, 20)
    export_org(source, tmp_path / "a")
    moved = make_db(BACKENDS[-1])
    import_org(moved, tmp_path / "a")
    export_org(moved, tmp_path / "b")
    back = make_db("sqlite")
    import_org(back, tmp_path / "b")
    export_org(back, tmp_path / "c")
    a, b, c = _tree(tmp_path / "a"), _tree(tmp_path / "b"), _tree(tmp_path / "c")
    assert "data/Job_Application__c.csv" in a
    assert a == b == c
