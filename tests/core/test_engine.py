"""SQLite connection settings: every pooled connection runs in WAL mode, enforces foreign keys and waits for a
busy writer instead of failing at once."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from keel.storage.engine import Database


def test_every_sqlite_connection_gets_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'k.db'}")
    try:
        with db.engine.connect() as a, db.engine.connect() as b:  # two pooled connections, each configured
            for conn in (a, b):
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL, safe under WAL
        with db.transaction() as conn:
            conn.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
            conn.exec_driver_sql("CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER "
                                 "REFERENCES parent(id))")
        with pytest.raises(sa.exc.IntegrityError), db.transaction() as conn:
            conn.exec_driver_sql("INSERT INTO child (id, parent_id) VALUES (1, 42)")
        with db.read() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM child").scalar() == 0
    finally:
        db.dispose()


def _write_in_child(url: str, marker: str) -> None:
    db = Database(url)
    try:
        with db.transaction() as conn:
            conn.exec_driver_sql("INSERT INTO t (v) VALUES (?)", (marker,))
    finally:
        db.dispose()


def test_a_writer_in_another_process_waits_for_the_lock_then_commits(tmp_path: Path) -> None:
    """Another process's writer waits while one holds a write transaction and commits once it ends: no
    'database is locked'. That it waits on ``<db>-writer`` is the next test's subject."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    db = Database(url)
    try:
        with db.transaction() as conn:
            conn.exec_driver_sql("CREATE TABLE t (v TEXT)")
        assert (tmp_path / "k.db-writer").exists()
        mp = multiprocessing.get_context("spawn")
        with db.transaction() as conn:
            conn.exec_driver_sql("INSERT INTO t (v) VALUES ('first')")
            child = mp.Process(target=_write_in_child, args=(url, "second"))
            child.start()
            time.sleep(1.5)  # long enough for a spawned child to import and reach its write
            assert child.is_alive(), "the other process's writer must wait while this one holds the lock"
        child.join(30)
        assert child.exitcode == 0
        with db.read() as conn:
            assert [r[0] for r in conn.exec_driver_sql("SELECT v FROM t ORDER BY rowid")] == ["first", "second"]
    finally:
        db.dispose()


def _held(path: Path) -> bool:
    """Whether some other open description holds the writer lock (a process of its own would see the same)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_the_writer_lock_is_held_until_the_outermost_write_ends(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'k.db'}")
    lock = tmp_path / "k.db-writer"
    try:
        with db.transaction() as conn:
            conn.exec_driver_sql("CREATE TABLE t (v TEXT)")
            assert _held(lock)
        assert not _held(lock)
        with db._write_lock:
            with db._process_lock():
                with db._process_lock():  # re-entered by the same thread (a write inside a write)
                    assert _held(lock)
                assert _held(lock), "leaving the inner write must not release the outer one's lock"
            assert not _held(lock)
        with pytest.raises(sa.exc.OperationalError), db.transaction() as conn:
            conn.exec_driver_sql("INSERT INTO nowhere (v) VALUES ('x')")
        assert not _held(lock), "a failed write releases the lock"
    finally:
        db.dispose()


def test_a_writer_gives_up_after_the_busy_timeout_when_the_lock_is_never_released(tmp_path: Path) -> None:
    from keel.storage.engine import _flock_within

    path = tmp_path / "k.db-writer"
    holder, waiter = (os.open(path, os.O_RDWR | os.O_CREAT, 0o600) for _ in range(2))
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            _flock_within(waiter, 0.3)
        assert 0.3 <= time.monotonic() - started < 2
        fcntl.flock(holder, fcntl.LOCK_UN)
        _flock_within(waiter, 0.3)  # free again: taken at once
        assert _held(path)
    finally:
        os.close(holder)
        os.close(waiter)
