"""Baseline: the system tables of system schema version 1, frozen as they shipped.

This file must never change: databases created before Alembic was introduced are stamped at this revision by
``keel migrate``, and the upgrade test builds its oldest-version fixture by running only this revision.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    md = sa.MetaData()
    sa.Table(
        "keel_meta", md,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )

    sa.Table(
        "keel_object", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("api_name", sa.String(80), nullable=False, unique=True),
        sa.Column("key_prefix", sa.String(3), nullable=False, unique=True),
        sa.Column("table_name", sa.String(40), nullable=False, unique=True),
        sa.Column("definition", sa.Text, nullable=False),
    )

    sa.Table(
        "keel_field", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("object_id", sa.Integer, sa.ForeignKey("keel_object.id", ondelete="CASCADE"), nullable=False),
        sa.Column("api_name", sa.String(80), nullable=False),
        sa.Column("column_name", sa.String(40)),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.UniqueConstraint("object_id", "api_name"),
    )

    sa.Table(
        "keel_sequence", md,
        sa.Column("name", sa.String(80), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )

    sa.Table(
        "keel_history", md,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("object_id", sa.Integer, nullable=False),
        sa.Column("record_id", sa.BigInteger, nullable=False),
        sa.Column("field", sa.String(80), nullable=False),
        sa.Column("old_value", sa.Text),
        sa.Column("new_value", sa.Text),
        sa.Column("created_date", sa.DateTime, nullable=False),
        sa.Column("created_by_id", sa.BigInteger),
        sa.Index("ix_keel_history_record", "object_id", "record_id", "created_date"),
    )

    sa.Table(
        "keel_outbox", md,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("topic", sa.String(40), nullable=False),
        sa.Column("object_id", sa.Integer),
        sa.Column("record_id", sa.BigInteger),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("idempotency_key", sa.String(80), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("created_date", sa.DateTime, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Index("ix_keel_outbox_due", "state", "next_attempt_at"),
    )

    sa.Table(
        "keel_recycle_bin", md,
        sa.Column("object_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("record_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("deleted_date", sa.DateTime, nullable=False),
        sa.Column("deleted_by_id", sa.BigInteger),
        sa.Column("root_object_id", sa.Integer, nullable=False),
        sa.Column("root_record_id", sa.BigInteger, nullable=False),
        sa.Index("ix_keel_recycle_root", "root_object_id", "root_record_id"),
        sa.Index("ix_keel_recycle_date", "object_id", "deleted_date"),
    )

    sa.Table(
        "keel_credential", md,
        sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("changed_at", sa.DateTime, nullable=False),
        sa.Column("failed_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_until", sa.DateTime),
        sa.Column("totp_secret", sa.Text),
    )

    sa.Table(
        "keel_audit", md,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("created_date", sa.DateTime, nullable=False),
        sa.Column("actor_id", sa.BigInteger),
        sa.Column("on_behalf_of_id", sa.BigInteger),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("object", sa.String(80)),
        sa.Column("record_id", sa.BigInteger),
        sa.Column("result", sa.String(20), nullable=False, server_default="success"),
        sa.Column("detail", sa.Text),
        sa.Index("ix_keel_audit_date", "created_date"),
    )
    md.create_all(bind)
    if bind.dialect.name == "postgresql":
        # The audit log is append-only even for the application role's own mistakes.
        bind.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION keel_audit_immutable() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'keel_audit is append-only'; END $$ LANGUAGE plpgsql"
        )
        bind.exec_driver_sql("DROP TRIGGER IF EXISTS keel_audit_no_change ON keel_audit")
        bind.exec_driver_sql(
            "CREATE TRIGGER keel_audit_no_change BEFORE UPDATE OR DELETE ON keel_audit "
            "FOR EACH ROW EXECUTE FUNCTION keel_audit_immutable()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            bind.exec_driver_sql(
                f"CREATE TRIGGER IF NOT EXISTS keel_audit_no_{verb.lower()} BEFORE {verb} ON keel_audit "
                "BEGIN SELECT RAISE(ABORT, 'keel_audit is append-only'); END"
            )
    op.execute("INSERT INTO keel_meta (key, value) SELECT 'system_schema', '1' "
               "WHERE NOT EXISTS (SELECT 1 FROM keel_meta WHERE key = 'system_schema')")


def downgrade() -> None:
    raise NotImplementedError("the baseline cannot be downgraded; restore a backup instead")
