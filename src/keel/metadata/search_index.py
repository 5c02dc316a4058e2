"""Building the full-text search indexes an existing organisation lacks.

Why this is not an Alembic migration: data tables belong to metadata (``plan``/``apply``), and Alembic only moves
Keel's fixed system tables (``storage.migrate``). A database created before search indexes existed has record
tables without them; ``keel migrate`` calls ``build_missing`` and serving refuses (``require_built``) until it has,
so ``/search`` never runs against a missing index. New objects and field changes get their index from the plan
(``tables.index_specs`` lists it), and an org import creates it with the table, before the rows are loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.errors import KeelError
from keel.metadata.model import ObjectDef
from keel.metadata.store import load_snapshot
from keel.metadata.tables import search_fields
from keel.storage import search
from keel.storage import system as S
from keel.storage.engine import Database


def _present(conn: Connection) -> set[str]:
    pattern = {"p": search.PREFIX.replace("_", "\\_") + "%"}
    if conn.dialect.name == "postgresql":
        sql = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND indexname LIKE :p"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE :p ESCAPE '\\'"
    return {str(r[0]) for r in conn.execute(sa.text(sql), pattern)}


def missing(conn: Connection) -> list[ObjectDef]:
    """Searchable objects whose index is not in the database (none before ``keel init``)."""
    if not sa.inspect(conn).has_table(S.meta.name) or S.get_meta(conn, "schema_version") is None:
        return []
    have = _present(conn)
    return [o for o in load_snapshot(conn) if search_fields(o) and search.index_name(o.table) not in have]


def build_missing(db: Database) -> list[str]:
    """Create every missing index from the rows already stored, in one transaction; the object names built."""
    with db.transaction() as conn:
        objs = missing(conn)
        for obj in objs:
            search.create(conn, obj.table, [f.column or "" for f in search_fields(obj)])
    return [o.api_name for o in objs]


def index_new_rows(conn: Connection, obj: ObjectDef, pks: Sequence[int], cache: dict[str, Any] | None = None) -> None:
    """Add rows just inserted into ``obj``'s table to its search index (SQLite; see ``storage.search``). Objects
    without an index yet (an organisation ``keel migrate`` has not upgraded) are skipped: building the index later
    reads every row. ``cache`` (a schema snapshot's) remembers which indexes exist, so a one-record save costs one
    extra statement, not two."""
    if conn.dialect.name != "sqlite" or not pks:
        return
    cols = [f.column or "" for f in search_fields(obj)]
    if not cols:
        return
    built: set[str] = (cache if cache is not None else {}).setdefault("search_built", set())
    if obj.table not in built:
        if not search.exists(conn, obj.table):
            return
        built.add(obj.table)  # only presence is remembered: an index is dropped only with a new snapshot
    search.index_rows(conn, obj.table, cols, pks)


def require_built(db: Database) -> None:
    """Refuse to serve while an object lacks its search index (an organisation from before search indexes)."""
    with db.read() as conn:
        objs = missing(conn)
    if objs:
        raise KeelError(f"{len(objs)} object(s) have no search index yet ({', '.join(o.api_name for o in objs[:5])}"
                        f"{', …' if len(objs) > 5 else ''}). Back up (`keel backup -o FILE`), then run `keel migrate`.",
                        code="MIGRATION_REQUIRED")
