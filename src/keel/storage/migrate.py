"""Versioned migrations of Keel's own system tables, run through Alembic.

Why Alembic only for system tables: data tables are described by metadata rows and changed by the metadata
plan/apply path, so they are never part of a migration. System tables (``keel_*`` in ``storage.system``) are fixed
code, and an organisation's database must follow the code across years of upgrades.

Life cycle of a database:
- ``keel init`` creates the current tables with ``create_all`` and stamps the newest revision (``stamp_head``);
- a newer Keel finds an older revision and refuses to serve (``require_current``) until ``keel migrate`` runs;
- a database made before Alembic was introduced has ``keel_meta`` but no version table: it is at the baseline
  revision ``0001`` by construction, so ``upgrade`` stamps that first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.errors import KeelError
from keel.storage.engine import Database

if TYPE_CHECKING:
    from alembic.config import Config

VERSION_TABLE = "keel_alembic_version"
BASELINE = "0001"
# The newest revision in ``migrations/versions``, so that checking a database at start-up needs no Alembic (whose
# import costs a noticeable part of a cold start). A test checks it against Alembic's script directory.
HEAD = "0007"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _config(conn: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    return HEAD


def script_head() -> str:
    """The newest revision according to Alembic's script directory (what ``HEAD`` must say)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(conn: Connection) -> str | None:
    """The database's revision; ``BASELINE`` for a pre-Alembic organisation, None for an empty database."""
    inspector = sa.inspect(conn)
    if inspector.has_table(VERSION_TABLE):
        rows = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
        if len(rows) > 1:
            raise KeelError(f"The database records several system-table revisions ({', '.join(rows)}).",
                            code="MIGRATION_REQUIRED")
        return rows[0] if rows else None
    return BASELINE if inspector.has_table("keel_meta") else None


@dataclass(frozen=True, slots=True)
class Status:
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def status(db: Database) -> Status:
    with db.read() as conn:
        return Status(current_revision(conn), head_revision())


def stamp_head(conn: Connection) -> None:
    """Record that freshly created system tables are at the newest revision (``keel init``)."""
    from alembic import command

    command.stamp(_config(conn), "head")


def upgrade(db: Database, target: str = "head") -> Status:
    """Run pending migrations in one transaction; a failure leaves the previous revision intact."""
    from alembic import command

    with db.transaction() as conn:
        inspector = sa.inspect(conn)
        if not inspector.has_table("keel_meta"):
            raise KeelError("This database is not initialised; run `keel init` first.", code="NOT_INITIALISED")
        if not inspector.has_table(VERSION_TABLE):
            command.stamp(_config(conn), BASELINE)
        command.upgrade(_config(conn), target)
    return status(db)


def upgrade_empty_to(db: Database, target: str) -> None:
    """Build system tables on an empty database by running migrations up to ``target`` (tests use the baseline
    to make an oldest-supported database)."""
    from alembic import command

    with db.transaction() as conn:
        command.upgrade(_config(conn), target)


def require_current(db: Database) -> None:
    """Refuse to serve a database whose system tables are older (or newer) than this Keel."""
    s = status(db)
    if s.current is None or s.up_to_date:
        return
    raise KeelError(
        f"The database's system tables are at revision {s.current}, but this Keel needs {s.head}. "
        "Back it up (`keel backup -o FILE`), then run `keel migrate`.", code="MIGRATION_REQUIRED")
