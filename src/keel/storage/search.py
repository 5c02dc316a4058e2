"""Full-text search indexes on record tables: the DDL and the matching SQL, per dialect.

Why two shapes:
- **SQLite**: an FTS5 table ``sx_<table>`` with ``content=<table>`` (external content: the text is stored once, in
  the record table) keyed by the record's rowid (its INTEGER primary key), one FTS column per searchable field.
  UPDATE and DELETE triggers on the record table keep it in step for every path that changes or removes rows; the
  UPDATE trigger names the indexed columns, so the frequent writes that touch no text (roll-ups, ``is_deleted``,
  ``version``) cost nothing. New rows are added by the two paths that insert into record tables (the lifecycle's
  write and the import's restore) with ``index_rows``, one ``INSERT … SELECT`` per batch: a per-row INSERT trigger
  costs three times as much, because every trigger-driven write makes FTS5 flush its pending terms, and it halved
  bulk-load speed.
- **PostgreSQL**: a GIN expression index ``sx_<table>`` over ``to_tsvector('simple', …)`` of the same columns. An
  expression index is maintained by PostgreSQL itself (COPY included), needs no trigger and no extra column, and is
  local to its table, so it works unchanged under Citus schema-based sharding.

Both sides see the same tokens: PostgreSQL's text is first folded with ``regexp_replace(…, '[^[:alnum:]]+', ' ')``
so that its parser cannot keep ``a.b@c.com`` or ``x-y`` as single tokens while FTS5's ``unicode61`` splits them;
FTS5 keeps diacritics because the ``simple`` configuration does. ``simple`` does not stem, so names and codes
are found as typed.

Records in the recycle bin stay in the index (their text is unchanged); readers filter on ``is_deleted`` as every
SOQL query does. Queries reach these indexes only as bound parameters built by ``services.search``, which quotes
every token.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy.engine import Connection

PREFIX = "sx_"
_FOLD = "[^[:alnum:]]+"


def index_name(table: str) -> str:
    """The search index of ``table``: the FTS5 table on SQLite, the GIN index on PostgreSQL."""
    return PREFIX + table


def is_search_index(name: str) -> bool:
    return name.startswith(PREFIX)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def exists(conn: Connection, table: str) -> bool:
    name = index_name(table)
    if conn.dialect.name == "postgresql":
        return conn.exec_driver_sql("SELECT to_regclass(%(n)s) IS NOT NULL", {"n": _q(name)}).scalar() is True
    return conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).first() is not None


def vector_sql(columns: Sequence[str], alias: str | None = None) -> str:
    """PostgreSQL: the tsvector of ``columns``. The index is built on exactly this text, so a query repeating it
    (for all columns) can use the index."""
    prefix = f"{_q(alias)}." if alias else ""
    parts = [f"coalesce({prefix}{_q(c)}, '')" for c in columns]
    text = " || ' ' || ".join(parts) if parts else "''"
    return f"to_tsvector('simple'::regconfig, regexp_replace({text}, '{_FOLD}', ' ', 'g'))"


def create(conn: Connection, table: str, columns: Sequence[str]) -> None:
    """Build the index of ``table`` over ``columns`` from the rows already there (a no-op if it exists)."""
    if not columns or exists(conn, table):
        return
    name = index_name(table)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"CREATE INDEX {_q(name)} ON {_q(table)} USING gin (({vector_sql(columns)}))")
        return
    cols = ", ".join(_q(c) for c in columns)
    new = ", ".join(f"new.{_q(c)}" for c in columns)
    old = ", ".join(f"old.{_q(c)}" for c in columns)
    fts, tab = _q(name), _q(table)
    conn.exec_driver_sql(
        f"CREATE VIRTUAL TABLE {fts} USING fts5({cols}, content={tab}, content_rowid='id', "
        "tokenize='unicode61 remove_diacritics 0')")
    add = f"INSERT INTO {fts}(rowid, {cols}) VALUES (new.id, {new});"
    remove = f"INSERT INTO {fts}({fts}, rowid, {cols}) VALUES ('delete', old.id, {old});"
    conn.exec_driver_sql(f"CREATE TRIGGER {_q(name + '_ad')} AFTER DELETE ON {tab} BEGIN {remove} END")
    conn.exec_driver_sql(f"CREATE TRIGGER {_q(name + '_au')} AFTER UPDATE OF {cols} ON {tab} "
                         f"BEGIN {remove} {add} END")
    conn.exec_driver_sql(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")


def index_rows(conn: Connection, table: str, columns: Sequence[str], pks: Sequence[int]) -> None:
    """SQLite: add rows just inserted into ``table`` (by primary key) to its FTS5 index, in one statement.

    Every path that inserts into a record table calls this (through ``metadata.search_index.index_new_rows``) after
    its INSERT, in the same transaction; PostgreSQL's expression index needs nothing."""
    if conn.dialect.name != "sqlite" or not pks or not columns:
        return
    fts, cols = _q(index_name(table)), ", ".join(_q(c) for c in columns)
    conn.exec_driver_sql(f"INSERT INTO {fts}(rowid, {cols}) SELECT id, {cols} FROM {_q(table)} "
                         "WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(list(pks)),))


def drop(conn: Connection, name: str) -> None:
    """Drop a search index by its name (triggers first: SQLite refuses to drop a column a trigger names)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {_q(name)}")
        return
    for suffix in ("_ai", "_ad", "_au"):
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {_q(name + suffix)}")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_q(name)}")
