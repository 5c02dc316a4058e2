"""Opening an organisation's database and initialising a new one (`keel init`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from keel.context import SYSTEM_ACTOR, Actor, Context
from keel.errors import KeelError
from keel.formula.sqlite_functions import register as register_sqlite_functions
from keel.metadata.apply import apply_plan, ensure_initialised
from keel.metadata.package import load_package
from keel.metadata.plan import plan
from keel.metadata.store import SnapshotCache, load_snapshot
from keel.query import create_cursor_tables
from keel.records import save_many
from keel.settings import Settings
from keel.storage import ids
from keel.storage import system as S
from keel.storage.engine import Database

STANDARD_PACKAGE = Path(__file__).resolve().parent.parent / "metadata" / "standard"
SYSTEM_USERNAME = "system@keel.local"


@dataclass(frozen=True)
class InitResult:
    created: bool
    admin_id: str | None


def open_context(url: str | None = None, *, settings: Settings | None = None, actor: Actor = SYSTEM_ACTOR) -> Context:
    settings = settings or Settings.load()
    from keel.services.security import wire_security

    db = Database(url or settings.database_url, sqlite_functions=(register_sqlite_functions,))
    return wire_security(Context(db=db, actor=actor, settings=settings, metadata=SnapshotCache()))


def is_initialised(db: Database) -> bool:
    import sqlalchemy as sa

    with db.read() as conn:
        if not sa.inspect(conn).has_table("keel_meta"):
            return False
        return S.get_meta(conn, "org_id") is not None


def missing_standard_objects(ctx: Context) -> list[str]:
    """Standard objects this Keel ships that the organisation lacks (one created by an older Keel)."""
    with ctx.db.read() as conn:
        have = {o.key for o in load_snapshot(conn)}
    return [o.api_name for o in load_package(STANDARD_PACKAGE, standard=True) if o.key not in have]


def add_missing_standard_objects(ctx: Context) -> list[str]:
    """Create the standard objects a newer Keel added (``QueueSobject``, say) in an existing organisation, in one
    transaction; objects it has are left as they are. ``keel migrate`` runs it after the system migrations."""
    with ctx.db.read() as conn:
        before = load_snapshot(conn)
    have = {o.key for o in before}
    new = [o for o in load_package(STANDARD_PACKAGE, standard=True) if o.key not in have]
    if new:
        apply_plan(ctx.db, plan(before, new), ctx.metadata)
    return [o.api_name for o in new]


def init_org(ctx: Context, *, admin_username: str, admin_password: str, admin_email: str | None = None,
             org_name: str = "Keel") -> InitResult:
    """Create system tables, standard objects, the organisation, the system user and an administrator.

    Idempotent: on an initialised database it changes nothing and reports ``created=False``.
    """
    from keel.services.users import create_user

    db = ctx.db
    if is_initialised(db):
        return InitResult(False, None)
    ensure_initialised(db)
    with db.transaction() as conn:
        create_cursor_tables(conn)
    with db.read() as conn:
        before = load_snapshot(conn)
    apply_plan(db, plan(before, load_package(STANDARD_PACKAGE, standard=True)), ctx.metadata)
    from keel.services.security import install_security, install_security_tables, wire_security

    ctx = wire_security(ctx)
    install_security_tables(ctx)
    with db.transaction() as conn:
        results = save_many(ctx, "User", [{
            "Username": SYSTEM_USERNAME, "LastName": "Automated Process", "FirstName": "Keel", "Email":
            SYSTEM_USERNAME, "Alias": "system", "IsActive": True, "UserType": "Integration",
        }], conn=conn)
        if results[0].id != ids.encode("005", SYSTEM_ACTOR.user_id):
            raise KeelError("The system user must be the first user of a new organisation.", code="NOT_INITIALISED")
        org = save_many(ctx, "Organization", [{"Name": org_name}], conn=conn)[0].id
        assert org is not None
        S.set_meta(conn, "org_id", org)
        S.set_meta(conn, "org_name", org_name)
    install_security(ctx)
    email = admin_email or (admin_username if "@" in admin_username else f"{admin_username}@keel.local")
    admin = create_user(ctx, username=admin_username, password=admin_password, last_name="Administrator", email=email,
                        profile="System Administrator")
    return InitResult(True, admin)


def org_id(ctx: Context) -> str:
    with ctx.db.read() as conn:
        value = S.get_meta(conn, "org_id")
    if value is None:
        raise KeelError("This database is not initialised; run `keel init` first.", code="NOT_INITIALISED")
    return value
