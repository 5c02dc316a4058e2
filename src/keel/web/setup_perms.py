"""Setup: edit permission sets (and a profile's own set), create and delete them, and permission set groups.

A permission set's object and field rights are ``ObjectPermissions`` / ``FieldPermissions`` records. Saving the
grid writes only the differences (a row per object or field that gained, lost or changed a right; a row left
with no right is deleted) through ``save_many`` / ``delete_many`` in one transaction, so either every change
lands or none does, the lifecycle checks the administrator's Customize Application, and ``SecurityHooks`` bumps
the security version at commit: every affected user's next request is evaluated with the new rights. Before
anything is written the whole grid is checked against Salesforce's dependencies (``security.permdeps``) and an
inconsistent row refuses the save with every problem named, instead of silently adding or dropping a right.
Rows of objects the grid does not show (setup objects) are never touched.

Ids in forms must be ones the page offered (as in ``setup_people``), so a tampered form fails with a message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.responses import RedirectResponse, Response

from keel.errors import KeelError
from keel.metadata.model import FieldDef, ObjectDef
from keel.records import delete_many, save_many
from keel.security.permdeps import LABELS, OBJECT_PERMISSIONS, field_problems, object_problems
from keel.services.query import query
from keel.web.base import Web
from keel.web.setup import _require_admin as require_admin
from keel.web.setup_people import _choice
from keel.web.setup_security import _objects

_ID = re.compile(r"^[A-Za-z0-9]{15,18}$")
_API_NAME = re.compile(r"^(?!.*__)[A-Za-z](?:[A-Za-z0-9_]{0,78}[A-Za-z0-9])?$")
OBJ_COLS = tuple(f"Permissions{p}" for p in OBJECT_PERMISSIONS)
MESSAGES = {"saved": "Permissions saved; they apply from each affected user's next request.",
            "created": "Permission set created.", "deleted": "Permission set deleted.",
            "unchanged": "Nothing changed.", "group": "Permission set group created.",
            "added": "Permission set added to the group; it applies from its users' next request.",
            "removed": "Permission set removed from the group; it stops applying from its users' next request."}
Rows = dict[str, list[dict[str, Any]]]


def _rethrow_access(e: KeelError) -> None:
    if e.code in ("INSUFFICIENT_ACCESS", "INSUFFICIENT_ACCESS_OR_READONLY"):
        raise e


def _pset(web: Web) -> dict[str, Any]:
    pid = str(web.path["pset"])
    found = query(web.ctx, "SELECT Id, Name, Label, IsOwnedByProfile, ProfileId, Profile.Name FROM PermissionSet "
                           f"WHERE Id = '{pid}'")["records"] if _ID.match(pid) and pid.startswith("0PS") else []
    if not found:
        raise KeelError("No such permission set.", code="NOT_FOUND")
    return dict(found[0])


def _existing(web: Web, child: str, pid: str, cols: tuple[str, ...], key: str, where: str = "") -> Rows:
    rows = query(web.ctx, f"SELECT Id, {key}, {', '.join(cols)} FROM {child} WHERE ParentId = '{pid}'{where} "
                          "LIMIT 50000")["records"]
    out: Rows = {}
    for r in rows:
        out.setdefault(str(r[key]).lower(), []).append(r)
    return out


def _write(web: Web, child: str, existing: Rows, desired: dict[str, dict[str, bool]],
           new: Callable[[str], dict[str, Any]]) -> int:
    """Save the differences between ``existing`` rows and ``desired`` flags (both keyed by lower-case name) in
    one transaction; returns how many rows changed."""
    creates: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    deletes: list[str] = []
    for key, flags in desired.items():
        have = existing.get(key.lower(), [])
        if not any(flags.values()):
            deletes += [str(r["Id"]) for r in have]
            continue
        if not have:
            creates.append({**new(key), **flags})
            continue
        first, *extra = have
        deletes += [str(r["Id"]) for r in extra]  # duplicates from an old deploy: one row is the truth
        if any(bool(first.get(c)) != v for c, v in flags.items()):
            updates.append({"Id": first["Id"], **flags})
    with web.ctx.db.transaction() as conn:
        if deletes:
            delete_many(web.ctx, child, deletes, conn=conn)
        if updates:
            save_many(web.ctx, child, updates, conn=conn)
        if creates:
            save_many(web.ctx, child, creates, conn=conn)
    return len(creates) + len(updates) + len(deletes)


def _object_grid(web: Web, objects: list[ObjectDef]) -> dict[str, dict[str, bool]]:
    desired = {o.api_name: {c: bool(web.form.get(f"o.{o.api_name}.{p}")) for p, c in zip(OBJECT_PERMISSIONS,
                                                                                          OBJ_COLS, strict=True)}
               for o in objects}
    problems = [msg for o in objects for msg in object_problems(
        o.label, {p: desired[o.api_name][c] for p, c in zip(OBJECT_PERMISSIONS, OBJ_COLS, strict=True)})]
    if problems:
        raise KeelError("Not saved: " + " ".join(problems), code="INVALID_PERMISSION_DEPENDENCY")
    return desired


def pset_editor(web: Web) -> Response:
    """``/setup/permission-sets/{pset}``: objects × Read/Create/Edit/Delete/View All/Modify All."""
    require_admin(web)
    ps = _pset(web)
    objects = _objects(web)
    existing = _existing(web, "ObjectPermissions", str(ps["Id"]), OBJ_COLS, "SobjectType")
    error = ""
    shown = {o.api_name: {c: any(bool(r.get(c)) for r in existing.get(o.api_name.lower(), [])) for c in OBJ_COLS}
             for o in objects}
    if web.request.method == "POST":
        try:
            desired = _object_grid(web, objects)
            n = _write(web, "ObjectPermissions", existing, desired,
                       lambda name: {"ParentId": ps["Id"], "SobjectType": name})
            return RedirectResponse(f"/setup/permission-sets/{ps['Id']}?msg={'saved' if n else 'unchanged'}",
                                    status_code=303)
        except KeelError as e:
            _rethrow_access(e)
            error = f"{e.code}: {e.message}"
            shown = {o.api_name: {c: bool(web.form.get(f"o.{o.api_name}.{p}"))
                                  for p, c in zip(OBJECT_PERMISSIONS, OBJ_COLS, strict=True)} for o in objects}
    return web.render("setup_pset.html", status=400 if error else 200, ps=ps, objects=objects, shown=shown,
                      perms=list(zip(OBJECT_PERMISSIONS, OBJ_COLS, strict=True)), labels=LABELS, error=error,
                      error_fields=(), msg=MESSAGES.get(str(web.params.get("msg", "")), ""))


def _fls_fields(obj: ObjectDef) -> list[FieldDef]:
    """The fields field-level security governs: custom, optional ones (standard and required fields follow the
    object permission, as in ``UserAccess``)."""
    return [f for f in obj.fields if not f.standard and not f.required and f.type not in ("id", "composite")]


def pset_fields(web: Web) -> Response:
    """``/setup/permission-sets/{pset}/o/{obj}``: Read/Edit per field of one object (calculated fields: Read)."""
    require_admin(web)
    ps = _pset(web)
    obj = next((o for o in _objects(web) if o.api_name.lower() == str(web.path["obj"]).lower()), None)
    if obj is None:
        raise KeelError("No such object.", code="NOT_FOUND")
    fields = _fls_fields(obj)
    existing = _existing(web, "FieldPermissions", str(ps["Id"]), ("PermissionsRead", "PermissionsEdit"), "Field",
                         f" AND SobjectType = '{obj.api_name}'")

    def flags(read: bool, edit: bool) -> dict[str, bool]:
        return {"PermissionsRead": read, "PermissionsEdit": edit}

    shown = {f.api_name: flags(*(any(bool(r.get(c)) for r in existing.get(f"{obj.api_name}.{f.api_name}".lower(),
                                                                        [])) for c in ("PermissionsRead",
                                                                                       "PermissionsEdit")))
             for f in fields}
    error = ""
    if web.request.method == "POST":
        shown = {f.api_name: flags(bool(web.form.get(f"f.{f.api_name}.Read")),
                                   bool(web.form.get(f"f.{f.api_name}.Edit"))) for f in fields}
        try:
            problems = [m for f in fields for m in field_problems(f.label, *shown[f.api_name].values())]
            problems += [f"{f.label}: a calculated field is read-only; grant Read only." for f in fields
                         if f.system_managed and shown[f.api_name]["PermissionsEdit"]]
            if problems:
                raise KeelError("Not saved: " + " ".join(problems), code="INVALID_PERMISSION_DEPENDENCY")
            desired = {f"{obj.api_name}.{f.api_name}": shown[f.api_name] for f in fields}
            n = _write(web, "FieldPermissions", existing, desired,
                       lambda name: {"ParentId": ps["Id"], "SobjectType": obj.api_name, "Field": name})
            return RedirectResponse(f"/setup/permission-sets/{ps['Id']}/o/{obj.api_name}?msg="
                                    f"{'saved' if n else 'unchanged'}", status_code=303)
        except KeelError as e:
            _rethrow_access(e)
            error = f"{e.code}: {e.message}"
    readable = any(bool(r.get("PermissionsRead")) for r in query(
        web.ctx, f"SELECT PermissionsRead FROM ObjectPermissions WHERE ParentId = '{ps['Id']}' "
                 f"AND SobjectType = '{obj.api_name}'")["records"])
    return web.render("setup_pset_fields.html", status=400 if error else 200, ps=ps, obj=obj, fields=fields,
                      shown=shown, readable=readable, error=error, error_fields=(),
                      msg=MESSAGES.get(str(web.params.get("msg", "")), ""))


def _new_names(web: Web, taken: set[str]) -> tuple[str, str]:
    label = str(web.form.get("label", "")).strip()
    name = str(web.form.get("name", "")).strip()
    if not label or len(label) > 80:
        raise KeelError("A label of at most 80 characters is required.", code="REQUIRED_FIELD_MISSING",
                        fields=["label"])
    if not _API_NAME.match(name):
        raise KeelError("The API name must start with a letter and use only letters, digits and single "
                        "underscores (at most 80 characters, not ending in an underscore).",
                        code="INVALID_API_NAME", fields=["name"])
    if name.lower() in taken:
        raise KeelError(f"The API name {name} is already used.", code="DUPLICATE_DEVELOPER_NAME", fields=["name"])
    return label, name


def _count(web: Web, soql: str) -> int:
    return int(query(web.ctx, soql)["totalSize"])


def _delete_pset(web: Web, sets: dict[str, str]) -> None:
    pid = _choice(web, "pset", sets, "a permission set")
    users = _count(web, f"SELECT Id FROM PermissionSetAssignment WHERE PermissionSetId = '{pid}'")
    groups = _count(web, f"SELECT Id FROM PermissionSetGroupComponent WHERE PermissionSetId = '{pid}'")
    if users or groups:
        raise KeelError(f"{sets[str(pid)]} is assigned to {users} user(s) and in {groups} group(s); remove those "
                        "first.", code="DELETE_FAILED")
    kids = {c: [str(r["Id"]) for r in query(web.ctx, f"SELECT Id FROM {c} WHERE ParentId = '{pid}' LIMIT 50000")[
        "records"]] for c in ("ObjectPermissions", "FieldPermissions")}
    with web.ctx.db.transaction() as conn:
        for child, rows in kids.items():
            if rows:
                delete_many(web.ctx, child, rows, conn=conn)
        delete_many(web.ctx, "PermissionSet", [str(pid)], conn=conn)


def permission_sets(web: Web) -> Response:
    """``/setup/profiles``: profiles and permission sets, each with a link to its editor; create a permission set
    and delete one no user or group holds."""
    require_admin(web)
    psets = query(web.ctx, "SELECT Id, Name, Label, IsOwnedByProfile, ProfileId, Profile.Name FROM PermissionSet "
                           "ORDER BY Label")["records"]
    own = {str(p["Id"]): str(p["Label"] or p["Name"]) for p in psets if not p["IsOwnedByProfile"]}
    error, fields = "", tuple[str, ...]()
    if web.request.method == "POST":
        action = str(web.form.get("action", ""))
        try:
            if action == "create":
                label, name = _new_names(web, {str(p["Name"]).lower() for p in psets})
                made = save_many(web.ctx, "PermissionSet", [{"Name": name, "Label": label,
                                                             "IsOwnedByProfile": False}])[0].id
                return RedirectResponse(f"/setup/permission-sets/{made}?msg=created", status_code=303)
            if action == "delete":
                _delete_pset(web, own)
                return RedirectResponse("/setup/profiles?msg=deleted", status_code=303)
            raise KeelError("Unknown action.", code="INVALID_OPERATION")
        except KeelError as e:
            _rethrow_access(e)
            error, fields = f"{e.code}: {e.message}", e.fields
    return web.render("setup_profiles.html", status=400 if error else 200,
                      profiles=[p for p in psets if p["IsOwnedByProfile"]],
                      psets=[p for p in psets if not p["IsOwnedByProfile"]], error=error, error_fields=fields,
                      form=web.form, msg=MESSAGES.get(str(web.params.get("msg", "")), ""))


def _change_group(web: Web, groups: dict[str, str], sets: dict[str, str],
                  members: dict[str, list[dict[str, Any]]]) -> str:
    action = str(web.form.get("action", ""))
    if action == "create":
        taken = {str(r["DeveloperName"]).lower() for r in query(
            web.ctx, "SELECT DeveloperName FROM PermissionSetGroup")["records"] if r["DeveloperName"]}
        label, name = _new_names(web, taken)
        save_many(web.ctx, "PermissionSetGroup", [{"Name": label, "DeveloperName": name}])
        return "group"
    group = str(_choice(web, "group", groups, "a permission set group"))
    if action == "add":
        pset = _choice(web, "permission_set", sets, "a permission set")
        if any(str(m["PermissionSetId"]) == pset for m in members.get(group, [])):
            raise KeelError(f"{groups[group]} already includes {sets[str(pset)]}.", code="DUPLICATE_VALUE")
        save_many(web.ctx, "PermissionSetGroupComponent", [{"PermissionSetGroupId": group, "PermissionSetId": pset}])
        return "added"
    if action == "remove":
        component = str(web.form.get("component", ""))
        if component not in {str(m["Id"]) for m in members.get(group, [])}:
            raise KeelError("That permission set is not in this group.", code="NOT_FOUND")
        delete_many(web.ctx, "PermissionSetGroupComponent", [component])
        return "removed"
    raise KeelError("Unknown action.", code="INVALID_OPERATION")


def groups(web: Web) -> Response:
    """``/setup/permission-set-groups``: create a group, add and remove its member permission sets."""
    require_admin(web)
    recs = query(web.ctx, "SELECT Id, Name, DeveloperName FROM PermissionSetGroup ORDER BY Name")["records"]
    known = {str(r["Id"]): str(r["Name"]) for r in recs}
    sets = {str(r["Id"]): str(r["Label"] or r["Name"]) for r in query(
        web.ctx, "SELECT Id, Name, Label FROM PermissionSet WHERE IsOwnedByProfile = false ORDER BY Label")[
        "records"]}
    members: dict[str, list[dict[str, Any]]] = {}
    for m in query(web.ctx, "SELECT Id, PermissionSetGroupId, PermissionSetId, PermissionSet.Label "
                            "FROM PermissionSetGroupComponent LIMIT 50000")["records"]:
        members.setdefault(str(m["PermissionSetGroupId"]), []).append(m)
    error, fields = "", tuple[str, ...]()
    if web.request.method == "POST":
        try:
            done = _change_group(web, known, sets, members)
            return RedirectResponse(f"/setup/permission-set-groups?msg={done}", status_code=303)
        except KeelError as e:
            _rethrow_access(e)
            error, fields = f"{e.code}: {e.message}", e.fields
    return web.render("setup_pset_groups.html", status=400 if error else 200, groups=recs, members=members,
                      sets=sets, error=error, error_fields=fields, form=web.form,
                      msg=MESSAGES.get(str(web.params.get("msg", "")), ""))
