"""``keel backup`` and ``keel restore``: a consistent online copy of one organisation, with its uploaded files.

A backup is one tar file:
- ``manifest.json``: Keel version, system-table revision, system and metadata schema versions, the dialect, the
  PostgreSQL schema, and the SHA-256 and size of every other member;
- ``database.sqlite`` (SQLite's online backup API: a page-consistent snapshot taken while writers keep going) or
  ``database.pgdump`` (``pg_dump -Fc`` of the organisation's schema, one MVCC snapshot);
- ``files/…``: everything under ``settings.data_dir``.

The database is copied before the files. Uploads are written and fsync'ed before the row that refers to them
commits, so every file the snapshot refers to is already on disk; files newer than the snapshot are harmless extras.

Restore verifies every checksum before touching the target, and only ever writes into an empty database: a restore
that merged into live data would be a silent corruption, not a recovery.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from keel.context import Context
from keel.errors import KeelError
from keel.storage import migrate
from keel.storage import system as S
from keel.storage.engine import Database, normalise_url

FORMAT = "keel-backup/1"


def keel_version() -> str:
    try:
        return version("keel")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0+unknown"


def libpq_url(url: str) -> tuple[str, str | None]:
    """A URL that pg_dump/pg_restore/psql understand (no SQLAlchemy driver, no ``schema=``), and the schema."""
    parsed = sa.make_url(url)
    query = dict(parsed.query)
    schema = query.pop("schema", None)
    parsed = parsed.set(drivername="postgresql", query=query)
    return parsed.render_as_string(hide_password=False), schema if isinstance(schema, str) else None


def sqlite_path(url: str) -> Path:
    database = sa.make_url(url).database
    if not database or database == ":memory:":
        raise KeelError("Backups need a file database, not an in-memory one.", code="BACKUP_FAILED")
    return Path(database)


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: dict[str, Any]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _versions(conn: sa.Connection) -> dict[str, Any]:
    return {"system_revision": migrate.current_revision(conn),
            "system_schema": S.get_meta(conn, "system_schema"),
            "metadata_schema_version": S.get_meta(conn, "schema_version"),
            "org_id": S.get_meta(conn, "org_id")}


def _data_files(data_dir: Path, exclude: set[Path]) -> Iterator[Path]:
    if not data_dir.is_dir():
        return
    for p in sorted(data_dir.rglob("*")):
        if p.is_file() and p.resolve() not in exclude:
            yield p


def backup(ctx: Context, out: str | Path) -> BackupResult:
    """Write a consistent backup of the organisation (and ``data_dir``) to ``out``."""
    db = ctx.db
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="keel-backup-") as tmp:
        work = Path(tmp)
        manifest: dict[str, Any] = {"format": FORMAT, "keel_version": keel_version(), "dialect": db.dialect,
                                    "schema": db.schema, "created": datetime.now(UTC).isoformat()}
        if db.dialect == "sqlite":
            dbfile = work / "database.sqlite"
            src = sqlite3.connect(str(sqlite_path(db.url)))
            dst = sqlite3.connect(str(dbfile))
            try:
                src.backup(dst)  # one step: a single consistent snapshot even while writers commit
            finally:
                dst.close()
                src.close()
            check = Database(f"sqlite:///{dbfile}")
            with check.read() as conn:
                manifest.update(_versions(conn))
            check.dispose()
        else:
            with db.read() as conn:
                manifest.update(_versions(conn))
            dbfile = work / "database.pgdump"
            _run_pg(["pg_dump", "-Fc", "--no-owner", "-n", db.schema or "public", "-f", str(dbfile)], db.url)
        members = {dbfile.name: dbfile}
        excluded = {out.resolve()}
        if db.dialect == "sqlite":
            excluded.add(sqlite_path(db.url).resolve())
        data_dir = Path(ctx.settings.data_dir)
        for p in _data_files(data_dir, excluded):
            if not p.name.endswith(("-wal", "-shm", "-journal", ".partial")):
                members["files/" + p.relative_to(data_dir).as_posix()] = p
        manifest["members"] = {name: {"sha256": _sha256(p), "size": p.stat().st_size}
                               for name, p in members.items()}
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w") as tar:
            raw = json.dumps(manifest, indent=2, sort_keys=True).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
            for name, p in members.items():
                tar.add(str(p), arcname=name, recursive=False)
        with partial.open("rb") as fh:
            os.fsync(fh.fileno())
        partial.replace(out)  # a crash mid-backup never leaves a truncated file under the final name
    return BackupResult(out, manifest)


def _run_pg(args: list[str], url: str) -> None:
    conninfo, _ = libpq_url(url)
    if shutil.which(args[0]) is None:
        raise KeelError(f"{args[0]} is not installed; install the PostgreSQL client tools.", code="BACKUP_FAILED")
    proc = subprocess.run([*args, f"--dbname={conninfo}"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise KeelError(f"{args[0]} failed: {proc.stderr.strip()[:2000]}", code="BACKUP_FAILED")


def read_manifest(path: str | Path) -> dict[str, Any]:
    with tarfile.open(path, "r") as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            raise KeelError(f"{path}: not a Keel backup (no manifest.json)", code="BACKUP_INVALID")
        manifest: dict[str, Any] = json.loads(member.read())
    if manifest.get("format") != FORMAT:
        raise KeelError(f"{path}: unknown backup format {manifest.get('format')!r}", code="BACKUP_INVALID")
    return manifest


def _is_empty(db: Database) -> bool:
    if db.dialect == "sqlite":
        path = sqlite_path(db.url)
        if not path.exists() or path.stat().st_size == 0:
            return True
    with db.read() as conn:
        return not sa.inspect(conn).get_table_names()


def restore(ctx: Context, path: str | Path) -> dict[str, Any]:
    """Restore a backup into ``ctx``'s database, which must be empty. Returns the manifest."""
    manifest = read_manifest(path)
    db = ctx.db
    if manifest["dialect"] != db.dialect:
        raise KeelError(f"This backup is of a {manifest['dialect']} database; restore it into one of those, or "
                        "move between databases with `keel export-org` / `keel import-org`.", code="BACKUP_INVALID")
    if not _is_empty(db):
        raise KeelError(f"Refusing to restore into {db.url}: the database is not empty. Restore into a new, empty "
                        "database (or PostgreSQL schema).", code="RESTORE_TARGET_NOT_EMPTY")
    with tempfile.TemporaryDirectory(prefix="keel-restore-") as tmp:
        work = Path(tmp)
        with tarfile.open(path, "r") as tar:
            tar.extractall(work, filter="data")
        for name, expect in manifest["members"].items():
            got = work / name
            if not got.is_file() or got.stat().st_size != expect["size"] or _sha256(got) != expect["sha256"]:
                raise KeelError(f"{path}: checksum mismatch for {name}; the backup is damaged and nothing was "
                                "restored.", code="BACKUP_INVALID")
        if db.dialect == "sqlite":
            target = sqlite_path(db.url)
            db.dispose()
            for suffix in ("", "-wal", "-shm"):
                Path(str(target) + suffix).unlink(missing_ok=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp_target = target.with_name(target.name + ".restoring")
            shutil.copyfile(work / "database.sqlite", tmp_target)
            tmp_target.replace(target)
        else:
            _restore_pg(db, manifest, work / "database.pgdump")
        files = work / "files"
        if files.is_dir():
            shutil.copytree(files, ctx.settings.data_dir, dirs_exist_ok=True)
    return manifest


def _restore_pg(db: Database, manifest: dict[str, Any], dump: Path) -> None:
    """pg_restore recreates the source schema by name; a different target name is reached by renaming it.

    A plain engine is used here: ``Database`` creates its schema on every new connection, which would collide
    with the schema pg_restore creates."""
    source = manifest.get("schema") or "public"
    target = db.schema or "public"
    db.dispose()
    plain = sa.create_engine(normalise_url(libpq_url(db.url)[0])[0])
    try:
        with plain.begin() as conn:
            taken = conn.exec_driver_sql("SELECT 1 FROM information_schema.schemata WHERE schema_name = %(s)s",
                                         {"s": source}).first()
            if source != target and taken:
                raise KeelError(f"Schema {source!r} (the backup's) already exists in the target database; restore "
                                f"into a database without it, or into schema {source!r} itself once it is empty.",
                                code="RESTORE_TARGET_NOT_EMPTY")
            if target != "public":
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{target}"')  # checked empty; pg_restore makes its own
        _run_pg(["pg_restore", "--no-owner", "--exit-on-error", "--single-transaction", str(dump)], db.url)
        if source != target:
            with plain.begin() as conn:
                conn.exec_driver_sql(f'ALTER SCHEMA "{source}" RENAME TO "{target}"')
    finally:
        plain.dispose()
