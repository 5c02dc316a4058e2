"""Each record's ``is_shared`` flag, carried by the Name index, and a per-record index of ``keel_share_reach``.

A manager's list sorted by Name tests every Name-index entry it walks. With the flag in the index, only records
that have a share probe the share tables, by record (``security/reach.py``). The flag is derived from
``keel_share``, so this migration fills it here with plain SQL; from then on every share write keeps it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keel.storage.ddl import IndexSpec, create_index, drop_index

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

NAME_INCLUDE = ("owner_id", "is_shared")  # as ``metadata.tables.NAME_INCLUDE``, frozen here


def _objects(bind: sa.Connection) -> list[tuple[int, str, set[str]]]:
    insp = sa.inspect(bind)
    if not insp.has_table("keel_object"):
        return []
    out = []
    for oid, table in bind.execute(sa.text("SELECT id, table_name FROM keel_object ORDER BY id")):
        if insp.has_table(table):
            out.append((int(oid), str(table), {c["name"] for c in insp.get_columns(table)}))
    return out


def upgrade() -> None:
    bind = op.get_bind()
    has_shares = sa.inspect(bind).has_table("keel_share")
    for oid, table, cols in _objects(bind):
        if "is_shared" not in cols:
            op.add_column(table, sa.Column("is_shared", sa.Boolean, nullable=False, server_default=sa.false()))
        if has_shares:
            bind.execute(sa.text(f'UPDATE "{table}" SET is_shared = :t WHERE id IN '
                                 "(SELECT record_id FROM keel_share WHERE object_id = :o)"), {"t": True, "o": oid})
        if {"name", "owner_id"} <= cols:
            name = f"ix_{table}_name"
            drop_index(bind, name)
            create_index(bind, table, IndexSpec(name, ("name",), lower=True, include=NAME_INCLUDE, nulls_first=True))
    if sa.inspect(bind).has_table("keel_share_reach"):
        op.execute("CREATE INDEX IF NOT EXISTS ix_keel_share_reach_record "
                   "ON keel_share_reach (object_id, record_id, pos, access_level)")
    op.execute("UPDATE keel_meta SET value = '6' WHERE key = 'system_schema'")


def downgrade() -> None:
    bind = op.get_bind()
    op.execute("DROP INDEX IF EXISTS ix_keel_share_reach_record")
    for _oid, table, cols in _objects(bind):
        if {"name", "owner_id"} <= cols:
            name = f"ix_{table}_name"
            drop_index(bind, name)
            create_index(bind, table, IndexSpec(name, ("name",), lower=True, include=("owner_id",),
                                                nulls_first=True))
        if "is_shared" in cols:  # no index names it any more, so SQLite (3.35+) drops it in place
            op.execute(f'ALTER TABLE "{table}" DROP COLUMN is_shared')
    op.execute("UPDATE keel_meta SET value = '5' WHERE key = 'system_schema'")
