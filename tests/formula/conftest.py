"""Fixtures for the formula tests: a schema with test objects, and real SQLite and PostgreSQL databases.

PostgreSQL runs when KEEL_TEST_PG is set, in a schema of its own that is dropped at the end; when it is set and the
server is unreachable the tests fail rather than skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from formula_cases import build_schema
from sqlalchemy import event

from keel.formula import sqlite_functions
from keel.metadata.model import SchemaSnapshot
from keel.metadata.tables import table_for
from keel.storage.engine import Database

ROOT = Path(__file__).resolve().parents[2]
OBJECTS = ("User", "Formula_Grand__c", "Formula_Parent__c", "Formula_Test__c", "Formula_Child__c")


@pytest.fixture(scope="session")
def schema() -> SchemaSnapshot:
    return build_schema()


def create_tables(db: Database, schema: SchemaSnapshot) -> None:
    with db.transaction() as conn:
        for name in OBJECTS:
            table_for(schema, schema.get_object(name)).create(conn)


@pytest.fixture(scope="session")
def sqlite_db(schema: SchemaSnapshot) -> Iterator[Database]:
    db = Database("sqlite:///:memory:")

    @event.listens_for(db.engine, "connect")
    def _register(dbapi_conn: object, _record: object) -> None:
        sqlite_functions.register(dbapi_conn)

    create_tables(db, schema)
    yield db
    db.dispose()


def pg_url() -> str | None:
    return os.environ.get("KEEL_TEST_PG") or None


@pytest.fixture(scope="session")
def pg_db(schema: SchemaSnapshot) -> Iterator[Database]:
    url = pg_url()
    if url is None:
        pytest.skip("KEEL_TEST_PG is not set: the PostgreSQL half is off")
    name = f"keel_f_{secrets.token_hex(4)}"
    db = Database(f"{url}{'&' if '?' in url else '?'}schema={name}")
    create_tables(db, schema)  # fails loudly when the server is unreachable
    yield db
    db.dispose()
    admin = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg"))
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest) -> Database:
    fixture = "sqlite_db" if request.param == "sqlite" else "pg_db"
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]
