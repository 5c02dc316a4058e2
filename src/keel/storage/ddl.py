"""DDL primitives. ``metadata.apply`` turns a plan into calls to these; storage never sees a plan.

Both SQLite and PostgreSQL run DDL inside the caller's transaction, so a failing metadata change leaves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.storage import search


@dataclass(frozen=True, slots=True)
class IndexSpec:
    name: str
    columns: tuple[str, ...]
    unique: bool = False
    lower: bool = False  # index lower(column): case-insensitive lookups, as SOQL compares strings
    live_only: bool = False  # partial: only rows not in the recycle bin
    include: tuple[str, ...] = ()  # trailing plain columns, so a filter on them is answered from the index
    lower_columns: tuple[str, ...] = ()  # key columns indexed on lower(column) when ``lower`` is False (composites)
    # PostgreSQL sorts NULLs last ascending, so a plain index serves neither ``ASC NULLS FIRST`` nor, scanned
    # backwards, ``DESC NULLS LAST``, the two orders SOQL uses by default; keys built NULLS FIRST serve both.
    # SQLite always sorts NULLs first, so this is PostgreSQL-only. ``id`` is never NULL and is ordered without a
    # NULLS clause (plain ASC/DESC), so it keeps PostgreSQL's default.
    nulls_first: bool = False
    dialects: tuple[str, ...] = ()  # built only on these databases (empty: all)
    search: bool = False  # a full-text index over ``columns`` (``storage.search``), not a B-tree
    # Partial: only rows matching this condition (SQL, booleans written ``true``/``false``). A query uses the
    # index only when its WHERE implies the condition, which SQLite decides by comparing expressions, so the
    # boolean literal is rendered the way SQLAlchemy renders it in queries (1 on SQLite).
    where: str = ""

    def keys(self) -> tuple[str, ...]:
        """The key expressions in order, as SQL, to compare two specs whatever their names."""
        if self.search:
            return tuple(f'fulltext("{c}")' for c in self.columns)
        return tuple(f'lower("{c}")' if self.lower or c in self.lower_columns else f'"{c}"' for c in self.columns) \
            + tuple(f'"{c}"' for c in self.include)


def create_table(conn: Connection, table: sa.Table) -> None:
    table.create(conn)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f'CREATE SEQUENCE IF NOT EXISTS "{table.name}_id_seq"')


def drop_table(conn: Connection, name: str) -> None:
    search.drop(conn, search.index_name(name))  # an FTS5 table is a table of its own on SQLite
    conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}"')
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f'DROP SEQUENCE IF EXISTS "{name}_id_seq"')


def add_column(conn: Connection, table: str, column: sa.Column[Any]) -> None:
    ctype = column.type.compile(dialect=conn.dialect)
    conn.exec_driver_sql(f'ALTER TABLE "{table}" ADD COLUMN "{column.name}" {ctype}')


def drop_column(conn: Connection, table: str, column: str) -> None:
    conn.exec_driver_sql(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')


def create_index(conn: Connection, table: str, spec: IndexSpec) -> None:
    if spec.dialects and conn.dialect.name not in spec.dialects:
        return
    if spec.search:
        search.create(conn, table, spec.columns)
        return
    nulls = " NULLS FIRST" if spec.nulls_first and conn.dialect.name == "postgresql" else ""
    keys = spec.keys()
    cols = ", ".join([k + (nulls if c != "id" else "") for c, k in zip(spec.columns, keys, strict=False)]
                     + list(keys[len(spec.columns):]))
    where = " WHERE is_deleted = false" if spec.live_only else ""
    if spec.where:
        cond = spec.where
        if conn.dialect.name == "sqlite":
            cond = cond.replace("= true", "= 1").replace("= false", "= 0")
        where = f" WHERE {cond}"
    unique = "UNIQUE " if spec.unique else ""
    conn.exec_driver_sql(f'CREATE {unique}INDEX IF NOT EXISTS "{spec.name}" ON "{table}" ({cols}){where}')


def drop_index(conn: Connection, name: str) -> None:
    if search.is_search_index(name):
        search.drop(conn, name)
        return
    conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{name}"')


def allocate_ids(conn: Connection, table: str, count: int) -> Sequence[int]:
    """Reserve ``count`` primary keys for ``table`` inside the caller's transaction.

    PostgreSQL uses a sequence, which never blocks concurrent inserters. SQLite has a single writer, so a counter
    row is enough and keeps ids dense.
    """
    if count <= 0:
        return ()
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(
            f"SELECT nextval('\"{table}_id_seq\"') FROM generate_series(1, %(n)s)", {"n": count}
        ).all()
        return [int(r[0]) for r in rows]
    from keel.storage.system import next_values

    first = next_values(conn, f"ids:{table}", count)
    return range(first, first + count)


def count_rows(conn: Connection, table: str, where: str = "") -> int:
    sql = f'SELECT COUNT(*) FROM "{table}"' + (f" WHERE {where}" if where else "")
    return int(conn.exec_driver_sql(sql).scalar() or 0)
