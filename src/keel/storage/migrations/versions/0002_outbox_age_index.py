"""Index pending outbox events by age, so /metrics and /readyz read the outbox depth and oldest event cheaply.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_keel_outbox_age", "keel_outbox", ["state", "created_date"])
    op.execute("UPDATE keel_meta SET value = '2' WHERE key = 'system_schema'")


def downgrade() -> None:
    op.drop_index("ix_keel_outbox_age", table_name="keel_outbox")
    op.execute("UPDATE keel_meta SET value = '1' WHERE key = 'system_schema'")
