"""Fault injection: a PostgreSQL backend killed mid-transaction, a full disk during a bulk job, and SQLite under
many concurrent readers and writers. (SIGKILL of a live server is in test_crash.py.)"""

from __future__ import annotations

import contextlib
import resource
import signal
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from keel.context import Context
from keel.errors import KeelError
from keel.formula.sqlite_functions import register as register_sqlite_functions
from keel.records import save_many
from keel.services import bulk
from keel.services.bulk_worker import run_pending
from keel.services.csvio import import_csv
from keel.services.query import query
from keel.storage.engine import Database
from tests.conftest import PG_URL
from tests.ops.apiclient import V, client_and_token

PG_ONLY = ["postgresql"] if PG_URL else []


class KillOnce:
    """Lifecycle hooks that terminate their own PostgreSQL backend (from a second connection) in the middle of a
    save: after the rows are written, before history, roll-ups and the outbox."""

    def __init__(self, inner: Any, marker: str) -> None:
        self.inner, self.marker, self.fired = inner, marker, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def after_save(self, ctx: Context, conn: sa.Connection, obj: Any, rows: Any) -> None:
        if not self.fired and any(self.marker in str(r.values.get("Name", "")) for r in rows):
            self.fired = True
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            killer = sa.create_engine(str(PG_URL).replace("postgresql://", "postgresql+psycopg://", 1))
            with killer.begin() as k:
                k.exec_driver_sql("SELECT pg_terminate_backend(%(p)s)", {"p": pid})
            killer.dispose()
        if self.inner is not None:
            self.inner.after_save(ctx, conn, obj, rows)


@pytest.mark.parametrize("backend", PG_ONLY)
def test_pg_connection_killed_mid_transaction(org: Context) -> None:
    client, token = client_and_token(org)
    hooks = client.app.state.ctx.hooks  # type: ignore[attr-defined]
    hooks.inner = KillOnce(hooks.inner, "doomed")
    auth = {"Authorization": f"Bearer {token}"}
    records = [{"attributes": {"type": "Account"}, "Name": f"doomed {i}"} for i in range(5)]
    r = client.post(f"/services/data/{V}/composite/sobjects", json={"allOrNone": True, "records": records},
                    headers=auth)
    assert r.status_code >= 500 and r.headers["content-type"].startswith("application/json"), r.text
    assert hooks.inner.fired
    ok = client.post(f"/services/data/{V}/sobjects/Account", json={"Name": "survivor"}, headers=auth)
    assert ok.status_code == 201, ok.text
    names = {x["Name"] for x in query(org, "SELECT Name FROM Account")["records"]}
    assert "survivor" in names and not any(n.startswith("doomed") for n in names)
    with org.db.read() as conn:  # nothing half-written: no history or outbox rows for the doomed records
        assert conn.execute(sa.text("SELECT COUNT(*) FROM keel_outbox WHERE payload LIKE :p"),
                            {"p": "%doomed%"}).scalar() == 0


def _limited(org: Context, pages: int) -> Context:
    """The same organisation through connections whose database file may not grow beyond ``pages`` pages."""

    def limit(dbapi_conn: Any) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

    return replace(org, db=Database(org.db.url, sqlite_functions=(register_sqlite_functions, limit)))


@pytest.mark.parametrize("backend", ["sqlite"])
def test_full_disk_during_bulk_job_then_resume(org: Context) -> None:
    bulk.ensure_tables(org)
    job = bulk.create_job(org, {"object": "Account", "operation": "insert"}, job_type="V2Ingest")
    up = bulk.Upload(org, job)
    up.write(("Name,Description\n" + "".join(f"Bulk {i},{'x' * 300}\n" for i in range(6000))).encode())
    up.commit()
    bulk.set_state(org, job.id, "UploadComplete")
    with org.db.read() as conn:
        pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar() or 0)
    full = _limited(org, pages + 150)  # room for a chunk or two, not for 6,000 rows of 300+ bytes
    run_pending(full)
    full.db.dispose()
    names = [r["Name"] for r in _bulk_rows(org)]
    assert len(names) < 6000, "the size limit was hit mid-job"
    assert len(set(names)) == len(names)
    # What the job's owner sees meanwhile: still running, with the reason it stopped moving
    client, token = client_and_token(org)
    auth = {"Authorization": f"Bearer {token}"}
    paused = client.get(f"/services/data/{V}/jobs/ingest/{job.id}", headers=auth).json()
    assert paused["state"] == "InProgress", paused
    assert paused["errorMessage"].startswith("Paused: STORAGE_LIMIT_EXCEEDED: The database is out of space"), paused
    assert "resumes where it stopped" in paused["errorMessage"]
    assert paused["numberRecordsFailed"] == 0, paused
    # Space returns: the job finishes, and every row is stored exactly once.
    run_pending(org)
    names = [r["Name"] for r in _bulk_rows(org)]
    assert sorted(names) == sorted(f"Bulk {i}" for i in range(6000))
    done = client.get(f"/services/data/{V}/jobs/ingest/{job.id}", headers=auth).json()
    assert done["state"] == "JobComplete" and not done.get("errorMessage"), done
    assert done["numberRecordsProcessed"] == 6000 and done["numberRecordsFailed"] == 0, done


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """This process may not grow any file beyond ``limit`` bytes (RLIMIT_FSIZE, no privileges needed): the kernel
    refuses the write (EFBIG) as a full volume would (ENOSPC). SIGXFSZ is ignored so the write fails instead of
    killing the process; both are restored after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)


def test_upload_storage_full_during_an_upload_then_reupload(org: Context, tmp_path: Path) -> None:
    """The upload directory runs out of room in the middle of a Bulk 2.0 PUT: a clear error, no partial file or
    upload record, the job still Open; once there is room the client uploads again and the job completes."""
    client, token = client_and_token(org)
    auth = {"Authorization": f"Bearer {token}"}
    job = client.post(f"/services/data/{V}/jobs/ingest", json={"object": "Account", "operation": "insert"},
                      headers=auth).json()
    biggest = max((p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()), default=0)  # SQLite database
    limit = biggest + 1024 * 1024
    rows = limit // 300 + 1000
    body = ("Name,Description\n" + "".join(f"Up {i},{'y' * 290}\n" for i in range(rows))).encode()
    assert len(body) > limit
    with file_size_limit(limit):
        full = client.put(f"/services/data/{V}/jobs/ingest/{job['id']}/batches", content=body,
                          headers={**auth, "Content-Type": "text/csv"})
    assert full.status_code == 400, full.text
    err = full.json()[0]
    assert err["errorCode"] == "STORAGE_LIMIT_EXCEEDED", err
    assert "no room to store this upload" in err["message"] and "Upload it again" in err["message"], err
    info = client.get(f"/services/data/{V}/jobs/ingest/{job['id']}", headers=auth).json()
    assert info["state"] == "Open" and not info.get("errorMessage"), info
    job_dir = bulk.job_dir(org, job["id"])
    assert not list(job_dir.glob("upload-*")), "the partial upload file was removed"
    with org.db.read() as conn:
        assert bulk.uploads_of(conn, bulk.read_job(org, conn, job["id"]).pk) == []
    # Space returns: the same upload succeeds and the job completes with every row once
    again = client.put(f"/services/data/{V}/jobs/ingest/{job['id']}/batches", content=body,
                       headers={**auth, "Content-Type": "text/csv"})
    assert again.status_code == 201, again.text
    closed = client.patch(f"/services/data/{V}/jobs/ingest/{job['id']}", json={"state": "UploadComplete"},
                          headers=auth)
    assert closed.status_code == 200, closed.text
    run_pending(org)
    done = client.get(f"/services/data/{V}/jobs/ingest/{job['id']}", headers=auth).json()
    assert done["state"] == "JobComplete" and done["numberRecordsProcessed"] == rows, done
    assert _count_like(org, "Up %") == rows


@pytest.mark.parametrize("backend", ["sqlite"])
def test_full_disk_during_import_then_resume(org: Context, tmp_path: Path) -> None:
    """`keel import` on a full disk: the whole import fails, nothing is half-written, and the same command
    succeeds once there is room."""
    csv = tmp_path / "accounts.csv"
    csv.write_text("Name,Description\n" + "".join(f"Imp {i},{'x' * 300}\n" for i in range(3000)))
    with org.db.read() as conn:
        pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar() or 0)
    full = _limited(org, pages + 100)
    with pytest.raises(KeelError) as refused:
        import_csv(full, "Account", csv, chunk=500)
    assert refused.value.code == "STORAGE_LIMIT_EXCEEDED"
    full.db.dispose()
    assert _count_like(org, "Imp %") == 0
    with org.db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    report = import_csv(org, "Account", csv, chunk=500)
    assert report.created == 3000 and _count_like(org, "Imp %") == 3000


def _count_like(ctx: Context, pattern: str) -> int:
    from keel.services.query import query_all_records

    return len(list(query_all_records(ctx, f"SELECT Id FROM Account WHERE Name LIKE '{pattern}'")))


def _bulk_rows(ctx: Context) -> list[dict[str, Any]]:
    from keel.services.query import query_all_records

    return list(query_all_records(ctx, "SELECT Name FROM Account WHERE Name LIKE 'Bulk %'"))


def test_sqlite_many_readers_and_writers(org: Context, backend: str) -> None:
    """16 threads through the single-writer design: nobody ever sees 'database is locked'."""
    errors: list[BaseException] = []
    written: list[str] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        try:
            for i in range(25):
                name = f"w{n}-{i}"
                save_many(org, "Account", [{"Name": name}])
                with lock:
                    written.append(name)
        except BaseException as e:
            errors.append(e)

    def reader() -> None:
        try:
            for _ in range(40):
                query(org, "SELECT Id, Name FROM Account ORDER BY Name LIMIT 50")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    threads += [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, [repr(e) for e in errors[:3]]
    names = {r["Name"] for r in _all_accounts(org)}
    assert set(written) <= names and len(written) == 200


def _all_accounts(ctx: Context) -> list[dict[str, Any]]:
    from keel.services.query import query_all_records

    return list(query_all_records(ctx, "SELECT Name FROM Account"))
