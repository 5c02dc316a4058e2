"""Setup screens for administrators: users, flows and approval processes (activate / deactivate), the outbox's
dead letters (retry) and the audit log. A user's profile, role and permission sets and the role tree are edited in
``setup_people``; profiles, permission sets and their groups in ``setup_perms``.

Every action is an existing service function (``services.users``, ``services.security``,
``services.automation``), which checks the administrator's permission again: the screen's own check
(``require_admin``) only decides what to show, it is never the only gate.
"""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from starlette.responses import RedirectResponse, Response

from keel.errors import KeelError
from keel.services import automation
from keel.services.query import query
from keel.services.security import kill_sessions, unlock_user
from keel.services.users import create_user, deactivate_user, list_users
from keel.storage import ids
from keel.storage import system as S
from keel.web.base import Web
from keel.web.setup import _require_admin as require_admin

USER_FIELDS = ("Id", "Username", "FirstName", "LastName", "Email", "IsActive", "ProfileId", "UserRoleId")


def _user_id(web: Web) -> str:
    uid = str(web.form.get("user", ""))
    if not uid.isalnum() or not uid.startswith("005"):
        raise KeelError("No such user.", code="NOT_FOUND")
    return uid


def users(web: Web) -> Response:
    """``/setup/users``: list, create, deactivate, unlock, end sessions."""
    require_admin(web)
    message = ""
    if web.request.method == "POST":
        action = str(web.form.get("action", ""))
        if action == "create":
            create_user(web.ctx, username=str(web.form.get("username", "")).strip(),
                        password=str(web.form.get("password", "")) or None,
                        last_name=str(web.form.get("last_name", "")).strip() or "User",
                        first_name=str(web.form.get("first_name", "")).strip() or None,
                        email=str(web.form.get("email", "")).strip(),
                        profile=str(web.form.get("profile", "")) or None, role=str(web.form.get("role", "")) or None)
            message = "User created."
        elif action == "deactivate":
            found = [u for u in list_users(web.ctx) if str(u["Id"]) == _user_id(web)]
            if not found:
                raise KeelError("No such user.", code="NOT_FOUND")
            deactivate_user(web.ctx, str(found[0]["Username"]))
            message = "User deactivated; their sessions ended."
        elif action == "unlock":
            unlock_user(web.ctx, _user_id(web))
            message = "User unlocked."
        elif action == "kill":
            n = kill_sessions(web.ctx, _user_id(web))
            message = f"{n} session{'s' if n != 1 else ''} ended."
        else:
            raise KeelError("Unknown action.", code="INVALID_OPERATION")
        return RedirectResponse("/setup/users?msg=" + {"User created.": "created"}.get(message, "done"),
                                status_code=303)
    rows = [{k: u.get(k) for k in USER_FIELDS} for u in list_users(web.ctx)]
    profiles = query(web.ctx, "SELECT Id, Name FROM Profile ORDER BY Name")["records"]
    roles = query(web.ctx, "SELECT Id, Name FROM UserRole ORDER BY Name")["records"]
    pnames = {str(p["Id"]): p["Name"] for p in profiles}
    rnames = {str(r["Id"]): r["Name"] for r in roles}
    for u in rows:
        u["Profile"] = pnames.get(str(u.get("ProfileId")), "")
        u["Role"] = rnames.get(str(u.get("UserRoleId")), "")
    return web.render("setup_users.html", users=rows, profiles=profiles, roles=roles,
                      msg={"created": "User created.", "done": "Done."}.get(str(web.params.get("msg", "")), ""))


def flows(web: Web) -> Response:
    """``/setup/flows``: deployed flows and approval processes; activate or deactivate one."""
    require_admin(web)
    if web.request.method == "POST":
        kind, name = str(web.form.get("kind", "")), str(web.form.get("name", ""))
        automation.set_definition_active(web.ctx, kind, name, str(web.form.get("active", "")) == "1")
        return RedirectResponse("/setup/flows", status_code=303)
    return web.render("setup_flows.html", defs=automation.list_definitions(web.ctx))


def outbox(web: Web) -> Response:
    """``/setup/outbox``: dead letters (deliveries that ran out of retries), with retry."""
    require_admin(web)
    if web.request.method == "POST":
        chosen = [int(v) for v in web.multi.get("id", []) if v.isdigit()]
        n = automation.retry_dead_letters(web.ctx, chosen)
        return RedirectResponse(f"/setup/outbox?retried={n}", status_code=303)
    retried = str(web.params.get("retried", ""))
    return web.render("setup_outbox.html", dead=automation.list_dead_letters(web.ctx),
                      retried=int(retried) if retried.isdigit() else None)


def audit_log(web: Web) -> Response:
    """``/setup/audit``: the newest 200 entries, filterable by action (the log itself refuses edits)."""
    require_admin(web)
    action = str(web.params.get("action", "")).strip()
    a = S.audit
    q = sa.select(a).order_by(a.c.id.desc()).limit(200)
    if action:
        q = q.where(a.c.action == action)
    with web.ctx.db.read() as conn:
        rows = [dict(r) for r in conn.execute(q).mappings()]
        actions = [r[0] for r in conn.execute(sa.select(a.c.action).distinct().order_by(a.c.action))]
    for r in rows:
        r["actor"] = ids.encode("005", int(r["actor_id"])) if r.get("actor_id") else ""
        try:
            r["detail_text"] = orjson.dumps(orjson.loads(r["detail"])).decode() if r.get("detail") else ""
        except orjson.JSONDecodeError:
            r["detail_text"] = str(r.get("detail") or "")
    return web.render("setup_audit.html", rows=rows, actions=actions, action=action)
