"""Alembic environment for Keel's system tables.

Keel runs migrations on a connection it already holds (``keel.storage.migrate`` passes it in
``config.attributes["connection"]``), inside one transaction: both SQLite and PostgreSQL have transactional DDL, so
a failed upgrade leaves the database at its previous revision. On PostgreSQL the connection's ``search_path`` is the
organisation's schema, so the version table lives next to the tables it describes.
"""

from __future__ import annotations

from alembic import context

from keel.storage.migrate import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - keel always passes a connection
    raise RuntimeError("run migrations with `keel migrate`, which passes a connection to Alembic")
context.configure(connection=connection, version_table=VERSION_TABLE, transactional_ddl=True,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
