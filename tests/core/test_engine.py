"""SQLite connection settings: every pooled connection runs in WAL mode, enforces foreign keys and waits for a
busy writer instead of failing at once."""

from __future__ import annotations

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
