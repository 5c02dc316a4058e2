"""Each record's owner's place in the role hierarchy (``role_depth``, ``role_1`` .. ``role_4``) and the table of
every user's lineage they are copied from (``keel_owner_lineage``).

Both are derived data that ``security.principals.recalculate`` fills, which needs the organisation's metadata,
so this migration only adds the columns and creates the table, empty (storage cannot import the security layer).
Managers read their own depth from that table, so until a recalculation fills it they keep the owner-list
predicate and see exactly what they saw before (the security version is bumped, so no process keeps an access
read before the upgrade); ``keel migrate`` runs the recalculation and builds the new indexes
(``metadata.index_sync``) right after the migrations.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ROLES = ("role_1", "role_2", "role_3", "role_4")  # as ``metadata.tables.LINEAGE_ROLES``, frozen here
TABLE = "keel_owner_lineage"


def _tables(bind: sa.Connection) -> list[tuple[str, set[str]]]:
    insp = sa.inspect(bind)
    if not insp.has_table("keel_object"):
        return []
    out = []
    for (table,) in bind.execute(sa.text("SELECT table_name FROM keel_object ORDER BY id")):
        if insp.has_table(table):
            out.append((str(table), {c["name"] for c in insp.get_columns(table)}))
    return out


def upgrade() -> None:
    bind = op.get_bind()
    for table, cols in _tables(bind):
        if "owner_id" not in cols or "role_depth" in cols:
            continue
        op.add_column(table, sa.Column("role_depth", sa.SmallInteger))
        for c in ROLES:
            op.add_column(table, sa.Column(c, sa.BigInteger))
    if sa.inspect(bind).has_table("keel_share"):  # the security tables exist: add this one beside them
        md = sa.MetaData()
        sa.Table(TABLE, md, sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
                 sa.Column("role_depth", sa.SmallInteger),
                 *(sa.Column(c, sa.BigInteger) for c in ROLES))
        md.create_all(bind, checkfirst=True)
    # Access objects cached by running processes hold a manager's depth: make them stale (``security_version``).
    op.execute("UPDATE keel_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'security_version'")
    op.execute("UPDATE keel_meta SET value = '7' WHERE key = 'system_schema'")


def downgrade() -> None:
    bind = op.get_bind()
    if sa.inspect(bind).has_table(TABLE):
        op.drop_table(TABLE)
    for table, cols in _tables(bind):
        if "role_depth" not in cols:
            continue
        for c in ROLES:  # their partial indexes name them: drop those first (SQLite refuses otherwise)
            op.execute(f'DROP INDEX IF EXISTS "ix_{table}_{c}"')
        op.execute(f'DROP INDEX IF EXISTS "ix_{table}_shared_name"')
        for c in (*ROLES, "role_depth"):
            op.execute(f'ALTER TABLE "{table}" DROP COLUMN "{c}"')
    op.execute("UPDATE keel_meta SET value = '6' WHERE key = 'system_schema'")
