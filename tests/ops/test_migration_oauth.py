"""Migration 0003: an organisation made before the JWT bearer and web-server flows gains the connected-app columns
and the code and approval tables, keeping its apps; downgrading removes them again."""

from __future__ import annotations

import sqlalchemy as sa

from keel.context import Context
from keel.security import sessions
from keel.security.tables import connected_apps, oauth_approvals, oauth_codes
from keel.storage import migrate
from keel.storage import system as S


def _shape(ctx: Context) -> tuple[set[str], set[str]]:
    with ctx.db.read() as conn:
        insp = sa.inspect(conn)
        return {c["name"] for c in insp.get_columns(connected_apps.name)}, set(insp.get_table_names())


def test_connected_apps_gain_certificate_and_callbacks(org: Context) -> None:
    with org.db.transaction() as conn:
        client_id, _secret = sessions.create_connected_app(org, conn, "before 0003")
    with org.db.transaction() as conn:
        from alembic import command

        command.downgrade(migrate._config(conn), "0002")
    cols, tables = _shape(org)
    assert "certificate" not in cols and "callback_urls" not in cols
    assert oauth_codes.name not in tables and oauth_approvals.name not in tables
    assert migrate.status(org.db).current == "0002"
    migrate.upgrade(org.db)
    cols, tables = _shape(org)
    assert {"certificate", "callback_urls"} <= cols
    assert {oauth_codes.name, oauth_approvals.name} <= tables
    with org.db.read() as conn:
        assert S.get_meta(conn, "system_schema") == str(S.SCHEMA_VERSION)
        row = conn.execute(sa.select(connected_apps).where(connected_apps.c.client_id == client_id)).first()
    assert row is not None and row.certificate is None and row.callback_urls is None
    assert sessions.verify_client(org, client_id, None) is not None
