"""OAuth2 JWT bearer and web-server flows: a certificate and callback URLs on connected apps, authorization codes
and user approvals.

Security tables are created by ``keel init`` (``security.tables.create_security_tables``), not by the baseline, so
an organisation may lack them entirely; then there is nothing to alter and ``keel init``'s ``create_all`` makes the
current shape later. The two new tables are created here for organisations that already have the others.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NEW_COLUMNS = ("certificate", "callback_urls")


def upgrade() -> None:
    bind = op.get_bind()
    insp = sa.inspect(bind)
    if not insp.has_table("keel_connected_app"):
        op.execute("UPDATE keel_meta SET value = '3' WHERE key = 'system_schema'")
        return
    have = {c["name"] for c in insp.get_columns("keel_connected_app")}
    for name in NEW_COLUMNS:
        if name not in have:
            op.add_column("keel_connected_app", sa.Column(name, sa.Text))
    md = sa.MetaData()
    sa.Table(
        "keel_oauth_code", md,
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(80), nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("redirect_uri", sa.Text, nullable=False),
        sa.Column("challenge", sa.String(128)),
        sa.Column("challenge_method", sa.String(8)),
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("created_date", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("used_at", sa.DateTime),
    )
    sa.Table(
        "keel_oauth_approval", md,
        sa.Column("client_id", sa.String(80), primary_key=True),
        sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("created_date", sa.DateTime, nullable=False),
        sa.Column("approved_by_id", sa.BigInteger),
    )
    md.create_all(bind, checkfirst=True)
    op.execute("UPDATE keel_meta SET value = '3' WHERE key = 'system_schema'")


def downgrade() -> None:
    bind = op.get_bind()
    insp = sa.inspect(bind)
    for table in ("keel_oauth_code", "keel_oauth_approval"):
        if insp.has_table(table):
            op.drop_table(table)
    if insp.has_table("keel_connected_app"):
        have = {c["name"] for c in insp.get_columns("keel_connected_app")}
        for name in NEW_COLUMNS:
            if name in have:
                op.drop_column("keel_connected_app", name)
    op.execute("UPDATE keel_meta SET value = '2' WHERE key = 'system_schema'")
