"""Shared fixtures for the SOQL tests: the schema and the same seeded rows in SQLite and (when KEEL_TEST_PG is set)
PostgreSQL. PostgreSQL gets a fresh schema per session, dropped at the end."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from soqldata import Seeded, make_schema, seed

from keel.metadata.model import SchemaSnapshot
from keel.storage.engine import Database


def _pg_url() -> str | None:
    return os.environ.get("KEEL_TEST_PG") or None


def dialects() -> list[str]:
    return ["sqlite", "postgresql"] if _pg_url() else ["sqlite"]


@pytest.fixture(scope="session")
def schema() -> SchemaSnapshot:
    return make_schema()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for this session, dropped at the end. Fails (never skips) when unreachable."""
    base = _pg_url()
    assert base, "KEEL_TEST_PG is not set"
    name = f"keel_q_{secrets.token_hex(4)}"
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}schema={name}"
    eng = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
    with eng.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    eng.dispose()


@pytest.fixture(scope="session")
def seeded_sqlite(schema: SchemaSnapshot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('soql')}/q.db")
    s = seed(db, schema)
    yield s
    db.dispose()


@pytest.fixture(scope="session")
def seeded_pg(schema: SchemaSnapshot, request: pytest.FixtureRequest) -> Iterator[Seeded]:
    url = request.getfixturevalue("pg_url")
    db = Database(url)
    s = seed(db, schema)
    yield s
    db.dispose()


@pytest.fixture(params=dialects())
def seeded(request: pytest.FixtureRequest) -> Seeded:
    name = "seeded_sqlite" if request.param == "sqlite" else "seeded_pg"
    s = request.getfixturevalue(name)
    assert isinstance(s, Seeded)
    return s
