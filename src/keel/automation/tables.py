"""Automation's own system tables: deployed definitions, scheduled-path due rows, and CDC subscriber positions.

They live in their own ``MetaData`` so automation can be installed into an existing organisation without touching
the core system tables; ``create_automation_tables`` is idempotent.
"""

from __future__ import annotations

import sqlalchemy as sa

automation = sa.MetaData()

definitions = sa.Table(
    "keel_automation_def", automation,
    sa.Column("kind", sa.String(16), primary_key=True),  # flow | approval
    sa.Column("name", sa.String(80), primary_key=True),
    sa.Column("object", sa.String(80), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("definition", sa.Text, nullable=False),  # the parsed YAML document, as JSON
)

scheduled = sa.Table(
    "keel_scheduled_action", automation,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("flow", sa.String(80), nullable=False),
    sa.Column("path", sa.String(80), nullable=False),
    sa.Column("object_id", sa.Integer, nullable=False),
    sa.Column("record_id", sa.BigInteger, nullable=False),
    sa.Column("due_at", sa.DateTime, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, server_default="pending"),  # pending|running|done|cancelled
    sa.Column("run_as_id", sa.BigInteger),
    sa.Column("created_date", sa.DateTime, nullable=False),
    sa.Column("fired_date", sa.DateTime),
    sa.Column("last_error", sa.Text),
    sa.Index("ix_keel_scheduled_due", "state", "due_at"),
    sa.Index("ix_keel_scheduled_record", "object_id", "record_id", "flow"),
)

cdc_positions = sa.Table(
    "keel_cdc_position", automation,
    sa.Column("subscriber", sa.String(120), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("updated_date", sa.DateTime, nullable=False),
)


def create_automation_tables(conn: sa.Connection) -> None:
    automation.create_all(conn)
