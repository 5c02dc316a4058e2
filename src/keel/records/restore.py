"""Writing rows back with their original ids: the one write path besides the lifecycle, for ``keel import-org``.

Why it exists: moving an organisation to another database must keep every id (ids are in URLs, integrations'
external keys, history and audit rows) and every audit column (who created what, when). The lifecycle rightly
refuses to let a caller choose ids or audit columns, and re-running defaults, auto-numbers, validation rules and
flows on data that already passed them would change it. So this path restores *state*; it does not create records.

Its limits keep it honest:
- system actor only, and each call writes an audit row;
- values still go through the object's typed ``Table`` (the same column types the lifecycle's codec targets), so a
  value the column cannot hold fails the whole import transaction;
- it advances the id allocator past the restored ids, so the lifecycle never reissues one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.context import Context
from keel.errors import KeelError
from keel.metadata.model import ObjectDef
from keel.metadata.search_index import index_new_rows
from keel.metadata.tables import build_table
from keel.storage import system as S


def restore_rows(ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[Mapping[str, Any]], *,
                 audit: bool = True) -> int:
    """Insert ``rows`` (physical column -> value, ids included) into ``obj``'s table; return the count."""
    if not ctx.actor.is_system:
        raise KeelError("Only the system actor may restore rows with their original ids.",
                        code="INSUFFICIENT_ACCESS")
    if not rows:
        return 0
    table = build_table(obj)
    conn.execute(sa.insert(table), list(rows))
    index_new_rows(conn, obj, [int(r["id"]) for r in rows])
    advance_ids(conn, obj.table, max(int(r["id"]) for r in rows))
    if audit:
        conn.execute(sa.insert(S.audit).values(
            created_date=ctx.clock(), actor_id=ctx.actor.user_id, action="records.restore", object=obj.api_name,
            result="success", detail=f"{len(rows)} row(s) restored with their original ids"))
    return len(rows)


def advance_ids(conn: Connection, table: str, high: int) -> None:
    """Make the id allocator of ``table`` hand out ids above ``high`` (never lowers it)."""
    if high <= 0:
        return
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            f"SELECT setval('\"{table}_id_seq\"', GREATEST(%(h)s, (SELECT last_value FROM \"{table}_id_seq\")))",
            {"h": high})
        return
    name = f"ids:{table}"
    current = conn.execute(sa.select(S.sequences.c.value).where(S.sequences.c.name == name)).scalar()
    if current is None:
        conn.execute(sa.insert(S.sequences).values(name=name, value=high))
    elif int(current) < high:
        conn.execute(sa.update(S.sequences).where(S.sequences.c.name == name).values(value=high))


def id_high_water(conn: Connection, table: str) -> int:
    """The last id handed out for ``table`` (0 if none), whichever allocator the dialect uses."""
    if conn.dialect.name == "postgresql":
        row = conn.exec_driver_sql(f'SELECT last_value, is_called FROM "{table}_id_seq"').first()
        return int(row[0]) if row is not None and row[1] else 0
    value = conn.execute(sa.select(S.sequences.c.value).where(S.sequences.c.name == f"ids:{table}")).scalar()
    top = conn.exec_driver_sql(f'SELECT MAX(id) FROM "{table}"').scalar()
    return max(int(value or 0), int(top or 0))
