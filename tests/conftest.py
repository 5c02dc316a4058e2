"""Suite-wide fixtures: one fresh organisation per test, on SQLite and, when KEEL_TEST_PG is set, PostgreSQL.

PostgreSQL tests never skip: if KEEL_TEST_PG is set and the server is unreachable, they fail.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from keel.context import Context
from keel.services.org import init_org, open_context
from keel.settings import Settings

PG_URL = os.environ.get("KEEL_TEST_PG")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])
ADMIN = "admin@example.com"
ADMIN_PASSWORD = "a long admin passphrase"
_pg_counts: dict[str, int] = {"postgresql": 0}


def pg_schema_url(prefix: str = "keel_t") -> tuple[str, str]:
    """A URL for a brand-new schema in the test database, and the schema's name."""
    assert PG_URL, "KEEL_TEST_PG is not set"
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={schema}", schema


def drop_pg_schema(schema: str) -> None:
    assert PG_URL
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised organisation, built once and copied for each test (initialising costs ~0.3 s)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    ctx = open_context(f"sqlite:///{path}", settings=Settings())
    init_org(ctx, admin_username=ADMIN, admin_password=ADMIN_PASSWORD)
    with ctx.db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    ctx.db.dispose()
    return path


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty database on the chosen backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'keel.db'}"
        return
    url, schema = pg_schema_url()
    _pg_counts["postgresql"] += 1
    try:
        yield url
    finally:
        drop_pg_schema(schema)


@pytest.fixture
def org(backend: str, db_url: str, tmp_path: Path, sqlite_template: Path) -> Iterator[Context]:
    """An initialised organisation (standard objects, system user, administrator), acting as the system."""
    if backend == "sqlite":
        shutil.copy(sqlite_template, tmp_path / "keel.db")
    settings = Settings(database_url=db_url, data_dir=str(tmp_path / ".keel"))
    ctx = open_context(db_url, settings=settings)
    if backend != "sqlite":
        init_org(ctx, admin_username=ADMIN, admin_password=ADMIN_PASSWORD)
    try:
        yield ctx
    finally:
        ctx.db.dispose()


@pytest.fixture
def make_db(tmp_path: Path) -> Iterator[Callable[[str], Context]]:
    """Contexts on new, empty databases of a given backend (import and restore targets); PostgreSQL schemas are
    dropped afterwards."""
    schemas: list[str] = []
    opened: list[Context] = []

    def make(backend: str) -> Context:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path / f'db{len(opened)}.db'}"
        else:
            url, schema = pg_schema_url("keel_new")
            schemas.append(schema)
        ctx = open_context(url, settings=Settings(database_url=url, data_dir=str(tmp_path / f"data{len(opened)}")))
        opened.append(ctx)
        return ctx

    yield make
    for c in opened:
        c.db.dispose()
    for s in schemas:
        drop_pg_schema(s)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    passed = [r for r in terminalreporter.stats.get("passed", []) if "postgresql" in r.nodeid or "[pg" in r.nodeid]
    failed = [r for r in terminalreporter.stats.get("failed", []) if "postgresql" in r.nodeid]
    if PG_URL:
        terminalreporter.write_line(
            f"PostgreSQL half: {len(passed)} passed, {len(failed)} failed against {PG_URL}")
    else:
        terminalreporter.write_line("PostgreSQL half: not run (set KEEL_TEST_PG to run it)")


@pytest.fixture(autouse=True)
def wide_cli_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI tables are read by tests, so render them wide enough not to truncate, whatever the terminal."""
    from keel.cli import common

    monkeypatch.setattr(common.console, "width", 250)
    monkeypatch.setattr(common.err_console, "width", 250)
