"""Bringing an existing organisation's derived indexes in line with what this Keel builds for its metadata.

Composite indexes (``metadata.indexes``) are derived from metadata by code, so a newer Keel may want a different
index for the same definitions (report indexes now carry the owner and the shared flag that the sharing predicate
reads). ``plan`` compares two snapshots through the same code and sees no change; the database still holds the
old index. ``keel migrate`` calls ``sync``, which creates the composite indexes a table lacks and drops the ones
no definition calls for. The hierarchy indexes of private objects (``metadata.tables.lineage_specs``) are kept the
same way. Serving does not wait for it: an old index is slower, never wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.metadata.store import load_snapshot
from keel.metadata.tables import index_specs, lineage_index_names, lineage_specs
from keel.storage import ddl
from keel.storage import system as S
from keel.storage.ddl import IndexSpec
from keel.storage.engine import Database

PREFIX = "cx_"


@dataclass(frozen=True, slots=True)
class Pending:
    table: str
    create: tuple[IndexSpec, ...]
    drop: tuple[str, ...]


def _present(conn: Connection, table: str, prefix: str) -> set[str]:
    if conn.dialect.name == "postgresql":
        sql = ("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = :t "
               "AND indexname LIKE :p")
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t AND name LIKE :p ESCAPE '\\'"
    return {str(r[0]) for r in conn.execute(sa.text(sql), {"t": table, "p": prefix.replace("_", "\\_") + "%"})}


def pending(conn: Connection) -> list[Pending]:
    """Per table, the composite indexes to create and to drop (nothing before ``keel init``)."""
    if not sa.inspect(conn).has_table(S.meta.name) or S.get_meta(conn, "schema_version") is None:
        return []
    out = []
    for obj in load_snapshot(conn):
        if not obj.table:
            continue
        want = {s.name: s for s in index_specs(obj) if s.name.startswith(PREFIX)
                and (not s.dialects or conn.dialect.name in s.dialects)}
        want.update((s.name, s) for s in lineage_specs(obj))
        have = _present(conn, obj.table, PREFIX) | (_present(conn, obj.table, f"ix_{obj.table}_")
                                                    & lineage_index_names(obj.table))
        create = tuple(s for n, s in sorted(want.items()) if n not in have)
        drop = tuple(sorted(have - set(want)))
        if create or drop:
            out.append(Pending(obj.table, create, drop))
    return out


def sync(db: Database) -> list[Pending]:
    """Create and drop composite indexes as ``pending`` lists them, in one transaction; what was done."""
    with db.transaction() as conn:
        todo = pending(conn)
        for p in todo:
            for name in p.drop:
                ddl.drop_index(conn, name)
            for spec in p.create:
                ddl.create_index(conn, p.table, spec)
    return todo
