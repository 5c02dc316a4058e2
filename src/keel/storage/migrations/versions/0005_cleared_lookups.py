"""Lookups cleared by a parent's delete (``keel_cleared_lookup``), so undelete can restore them.

An organisation upgraded from 0004 starts with the table empty: parents deleted before the upgrade did not clear
their children's lookups, so there is nothing to restore for them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "keel_cleared_lookup",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("root_object_id", sa.Integer, nullable=False),
        sa.Column("root_record_id", sa.BigInteger, nullable=False),
        sa.Column("object_id", sa.Integer, nullable=False),
        sa.Column("record_id", sa.BigInteger, nullable=False),
        sa.Column("field_id", sa.Integer, nullable=False),
        sa.Column("parent_object_id", sa.Integer, nullable=False),
        sa.Column("parent_record_id", sa.BigInteger, nullable=False),
        if_not_exists=True,
    )
    op.create_index("ix_keel_cleared_lookup_root", "keel_cleared_lookup", ["root_object_id", "root_record_id"],
                    if_not_exists=True)
    op.execute("UPDATE keel_meta SET value = '5' WHERE key = 'system_schema'")


def downgrade() -> None:
    op.drop_table("keel_cleared_lookup")
    op.execute("UPDATE keel_meta SET value = '4' WHERE key = 'system_schema'")
