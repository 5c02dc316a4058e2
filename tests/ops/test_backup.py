"""keel backup / keel restore: online, consistent, checksummed, and only into an empty database."""

from __future__ import annotations

import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from keel.context import Context
from keel.errors import KeelError
from keel.records import save_many
from keel.services.backup import backup, read_manifest, restore
from keel.services.query import query
from keel.settings import Settings
from keel.storage import migrate
from tests.conftest import drop_pg_schema


def _names(ctx: Context) -> set[str]:
    return {r["Name"] for r in query(ctx, "SELECT Name FROM Account")["records"]}


def test_online_backup_while_writing_then_restore(org: Context, make_db: Callable[[str], Context],
                                                  tmp_path: Path, backend: str) -> None:
    upload = Path(org.settings.data_dir) / "bulk" / "job1" / "batch-1.csv"
    upload.parent.mkdir(parents=True)
    upload.write_text("Name\nUploaded\n")
    save_many(org, "Account", [{"Name": f"before {i}"} for i in range(50)])
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        i = 0
        while not stop.is_set():
            save_many(org, "Account", [{"Name": f"during {i}"}])
            written.append(i)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        result = backup(org, tmp_path / "org.keelbackup")
    finally:
        stop.set()
        t.join()
    assert written, "the writer made progress while the backup ran"
    m = read_manifest(result.path)
    assert m["system_revision"] == migrate.head_revision()
    assert m["metadata_schema_version"] and m["keel_version"]
    assert "files/bulk/job1/batch-1.csv" in m["members"]

    if backend == "sqlite":
        target = make_db("sqlite")
    else:  # the disaster: the organisation's schema is gone; restore under a new name
        drop_pg_schema(org.db.schema or "")
        org.db.dispose()
        target = make_db("postgresql")
    restore(target, result.path)
    names = _names(target)
    assert {f"before {i}" for i in range(50)} <= names
    during = sorted(int(n.split()[1]) for n in names if n.startswith("during"))
    assert during == list(range(len(during))), "a consistent snapshot holds a prefix of the committed writes"
    assert (Path(target.settings.data_dir) / "bulk" / "job1" / "batch-1.csv").read_text() == "Name\nUploaded\n"
    save_many(target, "Account", [{"Name": "after restore"}])  # the restored organisation accepts writes


def test_restore_refuses_non_empty_target(org: Context, tmp_path: Path) -> None:
    result = backup(org, tmp_path / "b.tar")
    with pytest.raises(KeelError) as exc:
        restore(org, result.path)
    assert exc.value.code == "RESTORE_TARGET_NOT_EMPTY"


def test_damaged_backup_is_refused_before_touching_the_target(tmp_path: Path) -> None:
    from keel.services.org import init_org, open_context

    url = f"sqlite:///{tmp_path / 'src.db'}"
    src = open_context(url, settings=Settings(database_url=url, data_dir=str(tmp_path / "d")))
    init_org(src, admin_username="a@example.com", admin_password="a long admin passphrase")
    good = backup(src, tmp_path / "good.tar").path
    bad = tmp_path / "bad.tar"
    with tarfile.open(good) as tin, tarfile.open(bad, "w") as tout:
        for member in tin.getmembers():
            data = tin.extractfile(member)
            assert data is not None
            raw = data.read()
            if member.name == "database.sqlite":
                raw = raw[:-10] + b"corruption"
            tout.addfile(member, __import__("io").BytesIO(raw))
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    target = open_context(target_url, settings=Settings(database_url=target_url, data_dir=str(tmp_path / "t")))
    with pytest.raises(KeelError) as exc:
        restore(target, bad)
    assert exc.value.code == "BACKUP_INVALID" and "checksum" in exc.value.message
    assert not (tmp_path / "target.db").exists() or (tmp_path / "target.db").stat().st_size == 0


def test_cli_backup_and_restore(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from keel.cli.main import app

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    env = {"KEEL_DATA_DIR": str(tmp_path / "data")}
    assert runner.invoke(app, ["init", "--db", url, "--admin-password", "a long admin passphrase"],
                         env=env).exit_code == 0
    out = runner.invoke(app, ["backup", "--db", url, "-o", str(tmp_path / "cli.tar")], env=env)
    assert out.exit_code == 0, out.output
    restored = f"sqlite:///{tmp_path / 'restored.db'}"
    back = runner.invoke(app, ["restore", str(tmp_path / "cli.tar"), "--db", restored], env=env)
    assert back.exit_code == 0, back.output
    again = runner.invoke(app, ["restore", str(tmp_path / "cli.tar"), "--db", restored], env=env)
    assert again.exit_code == 1 and "RESTORE_TARGET_NOT_EMPTY" in again.output
