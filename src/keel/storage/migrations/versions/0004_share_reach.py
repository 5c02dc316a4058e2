"""Managers inherit their subordinates' shares: role-tree positions (``keel_role_span``) and where each share
reaches (``keel_share_reach``).

Both are derived data that ``security.principals.recalculate`` fills, which needs the organisation's metadata,
so this migration only creates them, empty (storage cannot import the security layer). Until the next
recalculation (any change to roles, users' roles or groups, or ``recalculate_sharing``) managers inherit
nothing, which is what they had before. Like 0003, an organisation without security tables is left to
``keel init``'s ``create_all``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("keel_role_span", "keel_share_reach")


def upgrade() -> None:
    bind = op.get_bind()
    if sa.inspect(bind).has_table("keel_share"):
        md = sa.MetaData()
        sa.Table(
            "keel_role_span", md,
            sa.Column("role_id", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("lo", sa.Integer, nullable=False),
            sa.Column("hi", sa.Integer, nullable=False),
        )
        sa.Table(
            "keel_share_reach", md,
            sa.Column("object_id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("pos", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("record_id", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("access_level", sa.SmallInteger, primary_key=True, autoincrement=False),
            sqlite_with_rowid=False,
        )
        md.create_all(bind, checkfirst=True)
    op.execute("UPDATE keel_meta SET value = '4' WHERE key = 'system_schema'")


def downgrade() -> None:
    bind = op.get_bind()
    insp = sa.inspect(bind)
    for table in TABLES:
        if insp.has_table(table):
            op.drop_table(table)
    op.execute("UPDATE keel_meta SET value = '3' WHERE key = 'system_schema'")
