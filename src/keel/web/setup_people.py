"""Setup: a user's access (profile, role, permission sets) and the role tree (add, rename, move).

These are records, not metadata: ``User``, ``PermissionSetAssignment`` and ``UserRole`` rows written through
``save_many`` / ``delete_many``, so the lifecycle checks the administrator's object permissions and ``SecurityHooks``
bumps the security version in the same transaction (a user's cached access goes stale at commit and their next
request sees the change) and rebuilds the role closures when a role moves, exactly as an API write would. A move
that would make a role its own ancestor is refused there (``CIRCULAR_DEPENDENCY``). This module only turns the
form into valid drafts: ids must be ones the page offered, so a tampered form fails with a clear message rather
than a lookup error.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import RedirectResponse, Response

from keel.errors import KeelError
from keel.records import delete_many, save_many
from keel.services.query import query
from keel.web.base import Web
from keel.web.setup import _require_admin as require_admin

_ID = re.compile(r"^[A-Za-z0-9]{15,18}$")
USER_MESSAGES = {"access": "Profile and role saved; they apply from the user's next request.",
                 "assigned": "Permission set assigned; it applies from the user's next request.",
                 "removed": "Permission set removed; it stops applying from the user's next request."}
ROLE_MESSAGES = {"added": "Role added.", "renamed": "Role renamed.", "moved": "Role moved; sharing through the "
                 "hierarchy was recalculated."}


def _choice(web: Web, name: str, known: dict[str, str], what: str, *, blank: bool = False) -> str | None:
    value = str(web.form.get(name, ""))
    if blank and not value:
        return None
    if value not in known:
        raise KeelError(f"Choose {what} from the list.", code="INVALID_CROSS_REFERENCE_KEY", fields=[name])
    return value


def _options(web: Web) -> dict[str, dict[str, str]]:
    """Id → label of every profile, role and assignable permission set (profile-owned sets come with their
    profile and are never assigned directly)."""
    def ids_to(soql: str, label: str) -> dict[str, str]:
        return {str(r["Id"]): str(r[label]) for r in query(web.ctx, soql)["records"]}

    return {"profiles": ids_to("SELECT Id, Name FROM Profile ORDER BY Name", "Name"),
            "roles": ids_to("SELECT Id, Name FROM UserRole ORDER BY Name", "Name"),
            "psets": ids_to("SELECT Id, Label FROM PermissionSet WHERE IsOwnedByProfile = false ORDER BY Label",
                            "Label")}


def _user(web: Web) -> dict[str, Any]:
    uid = str(web.path["user"])
    found = query(web.ctx, "SELECT Id, Username, FirstName, LastName, IsActive, ProfileId, UserRoleId FROM User "
                           f"WHERE Id = '{uid}'")["records"] if _ID.match(uid) and uid.startswith("005") else []
    if not found:
        raise KeelError("No such user.", code="NOT_FOUND")
    return dict(found[0])


def _assignments(web: Web, uid: str) -> list[dict[str, Any]]:
    return list(query(web.ctx, "SELECT Id, PermissionSetId, PermissionSet.Label FROM PermissionSetAssignment "
                               f"WHERE AssigneeId = '{uid}' AND PermissionSetId != null "
                               "ORDER BY PermissionSet.Label")["records"])


def _change_user(web: Web, user: dict[str, Any], opts: dict[str, dict[str, str]]) -> str:
    action = str(web.form.get("action", ""))
    uid = str(user["Id"])
    if action == "access":
        profile = _choice(web, "profile", opts["profiles"], "a profile")
        role = _choice(web, "role", opts["roles"], "a role", blank=True)
        save_many(web.ctx, "User", [{"Id": uid, "ProfileId": profile, "UserRoleId": role}])
        return "access"
    if action == "assign":
        pset = _choice(web, "permission_set", opts["psets"], "a permission set")
        if any(str(a["PermissionSetId"]) == pset for a in _assignments(web, uid)):
            raise KeelError(f"{user['Username']} already has {opts['psets'][str(pset)]}.", code="DUPLICATE_VALUE")
        save_many(web.ctx, "PermissionSetAssignment", [{"AssigneeId": uid, "PermissionSetId": pset}])
        return "assigned"
    if action == "remove":
        held = {str(a["Id"]) for a in _assignments(web, uid)}
        assignment = str(web.form.get("assignment", ""))
        if assignment not in held:
            raise KeelError("That permission set is not assigned to this user.", code="NOT_FOUND")
        delete_many(web.ctx, "PermissionSetAssignment", [assignment])
        return "removed"
    raise KeelError("Unknown action.", code="INVALID_OPERATION")


def user_access(web: Web) -> Response:
    """``/setup/users/{user}``: change the profile and role, assign and remove permission sets."""
    require_admin(web)
    user = _user(web)
    opts = _options(web)
    error, fields = "", tuple[str, ...]()
    if web.request.method == "POST":
        try:
            done = _change_user(web, user, opts)
            return RedirectResponse(f"/setup/users/{user['Id']}?msg={done}", status_code=303)
        except KeelError as e:
            if e.code in ("INSUFFICIENT_ACCESS", "INSUFFICIENT_ACCESS_OR_READONLY"):
                raise
            error, fields = f"{e.code}: {e.message}", e.fields
    held = _assignments(web, str(user["Id"]))
    have = {str(a["PermissionSetId"]) for a in held}
    return web.render("setup_user.html", status=400 if error else 200, u=user, opts=opts, assignments=held,
                      assignable={k: v for k, v in opts["psets"].items() if k not in have}, error=error,
                      error_fields=fields, msg=USER_MESSAGES.get(str(web.params.get("msg", "")), ""))


def _role_name(web: Web) -> str:
    name = str(web.form.get("name", "")).strip()
    if not name or len(name) > 80:
        raise KeelError("A role needs a name of at most 80 characters.", code="REQUIRED_FIELD_MISSING",
                        fields=["name"])
    return name


def _developer_name(name: str) -> str:
    base = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "Role"
    return ("R_" + base if not base[0].isalpha() else base)[:80]


def _change_role(web: Web, known: dict[str, str]) -> str:
    action = str(web.form.get("action", ""))
    if action == "add":
        name = _role_name(web)
        parent = _choice(web, "parent", known, "the parent role", blank=True)
        save_many(web.ctx, "UserRole", [{"Name": name, "DeveloperName": _developer_name(name),
                                         "ParentRoleId": parent}])
        return "added"
    role = _choice(web, "role", known, "a role")
    if action == "rename":
        save_many(web.ctx, "UserRole", [{"Id": role, "Name": _role_name(web)}])
        return "renamed"
    if action == "move":
        parent = _choice(web, "parent", known, "the new parent role", blank=True)
        if parent == role:
            raise KeelError("A role cannot be its own parent.", code="CIRCULAR_DEPENDENCY", fields=["parent"])
        save_many(web.ctx, "UserRole", [{"Id": role, "ParentRoleId": parent}])
        return "moved"
    raise KeelError("Unknown action.", code="INVALID_OPERATION")


def roles(web: Web) -> Response:
    """``/setup/roles``: the hierarchy as a nested list (a tree with ARIA roles), with forms to add a role under a
    parent, rename one and move one under another parent (or to the top)."""
    require_admin(web)
    recs = query(web.ctx, "SELECT Id, Name, ParentRoleId FROM UserRole ORDER BY Name")["records"]
    known = {str(r["Id"]): str(r["Name"]) for r in recs}
    error, fields, action = "", tuple[str, ...](), ""
    if web.request.method == "POST":
        action = str(web.form.get("action", ""))
        try:
            done = _change_role(web, known)
            return RedirectResponse(f"/setup/roles?msg={done}", status_code=303)
        except KeelError as e:
            if e.code in ("INSUFFICIENT_ACCESS", "INSUFFICIENT_ACCESS_OR_READONLY"):
                raise
            error, fields = f"{e.code}: {e.message}", e.fields
    children: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        children.setdefault(str(r.get("ParentRoleId") or ""), []).append(r)
    roots = [r for r in recs if str(r.get("ParentRoleId") or "") not in known]
    return web.render("setup_roles.html", status=400 if error else 200, roots=roots, children=children,
                      roles=known, error=error, error_fields=fields, failed=action, form=web.form,
                      msg=ROLE_MESSAGES.get(str(web.params.get("msg", "")), ""))
