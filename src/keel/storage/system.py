"""Keel's own system tables. Data tables are metadata-driven; these are fixed and versioned by migrations."""

from __future__ import annotations

import sqlalchemy as sa

SCHEMA_VERSION = 7  # keep equal to the newest migration in storage/migrations/versions

system = sa.MetaData()

meta = sa.Table(
    "keel_meta", system,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

objects = sa.Table(
    "keel_object", system,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("api_name", sa.String(80), nullable=False, unique=True),
    sa.Column("key_prefix", sa.String(3), nullable=False, unique=True),
    sa.Column("table_name", sa.String(40), nullable=False, unique=True),
    sa.Column("definition", sa.Text, nullable=False),
)

fields = sa.Table(
    "keel_field", system,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("object_id", sa.Integer, sa.ForeignKey("keel_object.id", ondelete="CASCADE"), nullable=False),
    sa.Column("api_name", sa.String(80), nullable=False),
    sa.Column("column_name", sa.String(40)),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("definition", sa.Text, nullable=False),
    sa.UniqueConstraint("object_id", "api_name"),
)

sequences = sa.Table(
    "keel_sequence", system,
    sa.Column("name", sa.String(80), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

history = sa.Table(
    "keel_history", system,
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

outbox = sa.Table(
    "keel_outbox", system,
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
    sa.Index("ix_keel_outbox_age", "state", "created_date"),
)

recycle_bin = sa.Table(
    "keel_recycle_bin", system,
    sa.Column("object_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("record_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("deleted_date", sa.DateTime, nullable=False),
    sa.Column("deleted_by_id", sa.BigInteger),
    sa.Column("root_object_id", sa.Integer, nullable=False),
    sa.Column("root_record_id", sa.BigInteger, nullable=False),
    sa.Index("ix_keel_recycle_root", "root_object_id", "root_record_id"),
    sa.Index("ix_keel_recycle_date", "object_id", "deleted_date"),
)

# Lookups a delete cleared (``on_delete: set_null``), kept until the deleted record leaves the recycle bin so that
# undeleting it puts them back, as Salesforce does. ``root_*`` is the recycle-bin entry the delete made.
cleared_lookups = sa.Table(
    "keel_cleared_lookup", system,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("root_object_id", sa.Integer, nullable=False),
    sa.Column("root_record_id", sa.BigInteger, nullable=False),
    sa.Column("object_id", sa.Integer, nullable=False),
    sa.Column("record_id", sa.BigInteger, nullable=False),
    sa.Column("field_id", sa.Integer, nullable=False),
    sa.Column("parent_object_id", sa.Integer, nullable=False),
    sa.Column("parent_record_id", sa.BigInteger, nullable=False),
    sa.Index("ix_keel_cleared_lookup_root", "root_object_id", "root_record_id"),
)

credentials = sa.Table(
    "keel_credential", system,
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("changed_at", sa.DateTime, nullable=False),
    sa.Column("failed_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", sa.DateTime),
    sa.Column("totp_secret", sa.Text),
)

audit = sa.Table(
    "keel_audit", system,
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


def create_system_tables(conn: sa.Connection) -> None:
    system.create_all(conn)
    if conn.dialect.name == "postgresql":
        # The audit log is append-only even for the application role's own mistakes.
        conn.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION keel_audit_immutable() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'keel_audit is append-only'; END $$ LANGUAGE plpgsql"
        )
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS keel_audit_no_change ON keel_audit")
        conn.exec_driver_sql(
            "CREATE TRIGGER keel_audit_no_change BEFORE UPDATE OR DELETE ON keel_audit "
            "FOR EACH ROW EXECUTE FUNCTION keel_audit_immutable()"
        )
    else:
        for op in ("UPDATE", "DELETE"):
            conn.exec_driver_sql(
                f"CREATE TRIGGER IF NOT EXISTS keel_audit_no_{op.lower()} BEFORE {op} ON keel_audit "
                "BEGIN SELECT RAISE(ABORT, 'keel_audit is append-only'); END"
            )


def _driver_sql(conn: sa.Connection, qmark: str) -> str:
    """A hot statement's text for the connection's driver (written with ``?`` marks; psycopg wants ``%s``)."""
    return qmark.replace("?", "%s") if conn.dialect.name == "postgresql" else qmark


# Hot statements run on every save or request, as driver SQL: no SQLAlchemy statement construction per call.
_NEXT_VALUES = "UPDATE keel_sequence SET value = value + ? WHERE name = ? RETURNING value"
_GET_META = "SELECT value FROM keel_meta WHERE key = ?"


def next_values(conn: sa.Connection, name: str, count: int = 1) -> int:
    """Reserve ``count`` values of a named sequence inside the caller's transaction; return the first."""
    row = conn.exec_driver_sql(_driver_sql(conn, _NEXT_VALUES), (count, name)).first()
    if row is None:
        conn.execute(sa.insert(sequences).values(name=name, value=count))
        return 1
    return int(row[0]) - count + 1


def get_meta(conn: sa.Connection, key: str) -> str | None:
    value = conn.exec_driver_sql(_driver_sql(conn, _GET_META), (key,)).scalar()
    return None if value is None else str(value)


def set_meta(conn: sa.Connection, key: str, value: str) -> None:
    if key == "schema_version":
        conn.info.pop("keel_snapshot", None)  # the per-transaction snapshot memo of metadata.store
    updated = conn.execute(sa.update(meta).where(meta.c.key == key).values(value=value)).rowcount
    if not updated:
        conn.execute(sa.insert(meta).values(key=key, value=value))
