"""User administration: users are ordinary ``User`` records saved through the lifecycle; credentials live in a
system table no API can read."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from keel.context import Context
from keel.errors import KeelError
from keel.metadata.tables import table_for
from keel.records import save_many
from keel.records.validate import row_to_values
from keel.security.passwords import check_policy, hash_password
from keel.storage import ids
from keel.storage import system as S


def create_user(ctx: Context, *, username: str, password: str | None, last_name: str, email: str,
                first_name: str | None = None, profile: str | None = None, role: str | None = None,
                time_zone: str = "UTC", extra: dict[str, Any] | None = None) -> str:
    """Create a user (and its password) in one transaction; return the new user's id."""
    if password is not None:
        check_policy(password, username=username)
    with ctx.db.transaction() as conn:
        draft: dict[str, Any] = {"Username": username, "LastName": last_name, "FirstName": first_name,
                                 "Email": email, "TimeZoneSidKey": time_zone, "IsActive": True,
                                 "Alias": (first_name or "")[:1].lower() + last_name[:4].lower()}
        draft.update(extra or {})
        result = save_many(ctx, "User", [draft], conn=conn)[0]
        assert result.id is not None
        if password is not None:
            set_password(ctx, conn, result.id, password, check=False)
        assign = ctx.extras.get("assign_profile")
        if assign is not None:
            assign(ctx, conn, result.id, profile, role)
        return result.id


def set_password(ctx: Context, conn: sa.Connection, user_id: str, password: str, *, check: bool = True) -> None:
    pk = ids.decode(user_id, "005")
    if check:
        check_policy(password)
    now = ctx.clock()
    updated = conn.execute(sa.update(S.credentials).where(S.credentials.c.user_id == pk).values(
        password_hash=hash_password(password), changed_at=now, failed_attempts=0, locked_until=None)).rowcount
    if not updated:
        conn.execute(sa.insert(S.credentials).values(user_id=pk, password_hash=hash_password(password),
                                                     changed_at=now, failed_attempts=0))
    revoke = ctx.extras.get("revoke_sessions")
    if revoke is not None:
        revoke(ctx, conn, pk)


def list_users(ctx: Context) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        schema = ctx.schema(conn)
        obj = schema.get_object("User")
        t = table_for(schema, obj)
        rows = conn.execute(sa.select(t).where(t.c.is_deleted == sa.false()).order_by(t.c.id)).mappings().all()
        return [row_to_values(schema, obj, dict(r)) for r in rows]


def find_user_id(ctx: Context, username: str) -> str:
    for u in list_users(ctx):
        if str(u.get("Username", "")).lower() == username.lower():
            return str(u["Id"])
    raise KeelError(f"No user named {username!r}.", code="NOT_FOUND")


def administrator_id(ctx: Context) -> str:
    """The first active System Administrator (the one ``keel init`` made, unless it was deactivated): whom the
    command line acts as when no user is named, so CLI reads obey the same security as any other user's."""
    from keel.services.query import query

    soql = ("SELECT Id FROM User WHERE IsActive = true AND Profile.Name = 'System Administrator' "
            "ORDER BY CreatedDate, Id LIMIT 1")
    records = query(ctx, soql)["records"]
    if not records:
        raise KeelError("There is no active administrator; name the user to act as.", code="NOT_FOUND")
    return str(records[0]["Id"])


def deactivate_user(ctx: Context, username: str) -> str:
    user_id = find_user_id(ctx, username)
    with ctx.db.transaction() as conn:
        save_many(ctx, "User", [{"Id": user_id, "IsActive": False}], conn=conn)
        revoke = ctx.extras.get("revoke_sessions")
        if revoke is not None:
            revoke(ctx, conn, ids.decode(user_id, "005"))
    return user_id
