"""The "Sharing" screen of a record: who it is manually shared with, and adding or removing a share.

Only users with full access may see it (the owner, users above the owner in the role hierarchy, and those with
Modify All): the same test ``services.security.share_record`` applies, the record passing the user's *delete*
predicate. Grants and revocations go through ``share_record``/``unshare_record`` (audited); the list reads the
share table of that one record, which only the same full-access users reach.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from starlette.responses import RedirectResponse, Response

from keel.errors import KeelError
from keel.metadata.model import ObjectDef
from keel.metadata.tables import table_for
from keel.security.principals import GROUP, ROLE, ROLE_SUB
from keel.security.tables import shares
from keel.services.query import query
from keel.services.security import share_record, unshare_record
from keel.storage import ids
from keel.web.base import Web, soql_literal
from keel.web.files import visible_parent

LEVELS = {1: "Read", 2: "Read/Write", 3: "Full"}
LOW = (1 << 40) - 1


def can_share(web: Web, obj: ObjectDef, rid18: str) -> bool:
    if obj.sharing in ("controlled_by_parent", "public_read_write") or obj.api_name in ("Note", "Attachment"):
        return False
    if web.ctx.actor.is_system:
        return True
    t = table_for(web.schema(), obj)
    pred = web.ctx.actor.access.record_filter(obj, t, "delete")
    q = sa.select(t.c.id).where(t.c.id == ids.decode(rid18, obj.key_prefix), t.c.is_deleted == sa.false())
    with web.ctx.db.read() as conn:
        return conn.execute(q.where(pred) if pred is not None else q).first() is not None


def _grantee(principal: int) -> tuple[str, str]:
    """(public id, kind) of a share's principal."""
    kind, pk = principal & ~LOW, principal & LOW
    if kind == GROUP:
        return ids.encode("00G", pk), "Group"
    if kind in (ROLE, ROLE_SUB):
        return ids.encode("00E", pk), "Role and subordinates" if kind == ROLE_SUB else "Role"
    return ids.encode("005", pk), "User"


def _checked(web: Web) -> tuple[ObjectDef, str]:
    obj, rid18 = visible_parent(web, str(web.path["id"]))
    if not can_share(web, obj, rid18):
        raise KeelError("Only the owner, their managers and administrators can share this record.",
                        code="INSUFFICIENT_ACCESS")
    return obj, rid18


def sharing_page(web: Web) -> Response:
    obj, rid18 = _checked(web)
    with web.ctx.db.read() as conn:
        rows = conn.execute(sa.select(shares).where(
            shares.c.object_id == obj.id, shares.c.record_id == ids.decode(rid18, obj.key_prefix))
            .order_by(shares.c.id)).mappings().all()
    users = query(web.ctx, "SELECT Id, Name FROM User WHERE IsActive = true ORDER BY Name LIMIT 500")["records"]
    groups = query(web.ctx, "SELECT Id, Name FROM Group ORDER BY Name LIMIT 200")["records"]
    names = {str(r["Id"]): str(r.get("Name") or r["Id"]) for r in [*users, *groups]}
    listed: list[dict[str, Any]] = []
    for r in rows:
        gid, kind = _grantee(int(r["principal"]))
        listed.append({"id": gid, "kind": kind, "name": names.get(gid, gid), "level": LEVELS.get(
            int(r["access_level"]), str(r["access_level"])), "cause": r["row_cause"]})
    rec = query(web.ctx, f"SELECT Id, Name FROM {obj.api_name} WHERE Id = {soql_literal(None, rid18)}")["records"][0]
    return web.render("sharing.html", obj=obj, rec=rec, shares=listed, users=users, groups=groups)


def add_share(web: Web) -> Response:
    obj, rid18 = _checked(web)
    who = str(web.form.get("grantee", ""))
    level = {"Read": "Read", "Edit": "Edit"}.get(str(web.form.get("level", "")))
    if not who.isalnum() or level is None:
        raise KeelError("Choose a user or group and Read or Read/Write.", code="INVALID_FIELD")
    share_record(web.ctx, obj.api_name, rid18, who, level)
    return RedirectResponse(f"/r/{rid18}/sharing", status_code=303)


def remove_share(web: Web) -> Response:
    obj, rid18 = _checked(web)
    who = str(web.form.get("grantee", ""))
    if not who.isalnum():
        raise KeelError("No such share.", code="INVALID_FIELD")
    unshare_record(web.ctx, obj.api_name, rid18, who)
    return RedirectResponse(f"/r/{rid18}/sharing", status_code=303)
