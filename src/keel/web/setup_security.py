"""Setup screens for sharing rules (with the org-wide defaults, read-only) and OAuth2 connected apps.

Sharing rules are ``SharingRule`` records, so creating or deleting one goes through ``save_many`` /
``delete_many`` like any permission sObject: the lifecycle checks Customize Application, and ``SecurityHooks``
bumps the security version in the same transaction, which is the whole "recalculation" (rules are evaluated in
the visibility predicate, never materialised as share rows, so there is no count of records that changed to
report). This module only turns form fields into a valid draft: the object must take rules, the principals must
exist and a criterion must name a real field with values of its type, because the predicate silently ignores a
rule it cannot compile and an administrator would never learn why it grants nothing.

Connected apps go through ``services.security`` (``register_connected_app`` and friends), which check the
permission again; a secret is rendered in the response to the request that made it and stored nowhere else.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import RedirectResponse, Response

from keel.errors import KeelError
from keel.metadata.model import ObjectDef
from keel.records import delete_many, save_many
from keel.security.predicate import parse_value
from keel.services import oauth_apps, security
from keel.services.query import query
from keel.web.base import SYSTEM_OBJECTS, Web
from keel.web.setup import _require_admin as require_admin

OWD_LABELS = {"private": "Private", "public_read": "Public Read Only", "public_read_write": "Public Read/Write",
              "controlled_by_parent": "Controlled by Parent"}
RULE_OWDS = ("private", "public_read")  # public read/write leaves nothing to grant; controlled-by-parent follows
ACCESS = {"Read": "Read Only", "Edit": "Read/Write"}
RULE_FIELDS = ("Id", "Name", "SobjectType", "RuleType", "SourceId", "SourceIncludeSubordinates", "CriteriaField",
               "CriteriaOperator", "CriteriaValue", "TargetId", "TargetIncludeSubordinates", "AccessLevel",
               "IsActive")
MESSAGES = {"created": "Sharing rule created; access changes from the next request.",
            "deleted": "Sharing rule deleted; access it granted ends from the next request."}


def _objects(web: Web) -> list[ObjectDef]:
    return sorted((o for o in web.schema() if o.queryable and o.api_name not in SYSTEM_OBJECTS
                   and not o.api_name.endswith(("Share", "History", "Feed"))), key=lambda o: o.label)


def _principals(web: Web) -> list[tuple[str, str]]:
    """(form value, label) for every role, role and subordinates, and group: what a rule can name."""
    roles = query(web.ctx, "SELECT Id, Name FROM UserRole ORDER BY Name")["records"]
    groups = query(web.ctx, "SELECT Id, Name FROM Group ORDER BY Name")["records"]
    out = [(str(r["Id"]), f"Role: {r['Name']}") for r in roles]
    out += [(f"{r['Id']}:sub", f"Role and subordinates: {r['Name']}") for r in roles]
    out += [(str(g["Id"]), f"Group: {g['Name']}") for g in groups]
    return out


def _principal(web: Web, name: str, known: dict[str, str]) -> tuple[str, bool]:
    value = str(web.form.get(name, ""))
    if value not in known:
        raise KeelError(f"Choose a role or group for the rule's {name}.", code="INVALID_CROSS_REFERENCE_KEY",
                        fields=[name])
    pid, _, sub = value.partition(":")
    return pid, sub == "sub"


def _draft(web: Web, known: dict[str, str]) -> dict[str, Any]:
    obj = web.schema().find_object(str(web.form.get("object", "")))
    if obj is None or obj not in _objects(web):
        raise KeelError("No such object.", code="NOT_FOUND")
    if obj.sharing not in RULE_OWDS:
        raise KeelError(f"{obj.label} is {OWD_LABELS.get(obj.sharing, obj.sharing)}: sharing rules only apply to "
                        "private and public read-only objects.", code="INVALID_OPERATION")
    level = str(web.form.get("access", ""))
    if level not in ACCESS:
        raise KeelError("Access must be Read Only or Read/Write.", code="INVALID_ACCESS_LEVEL", fields=["access"])
    target, target_sub = _principal(web, "target", known)
    kind = str(web.form.get("rule_type", "Owner"))
    name = str(web.form.get("name", "")).strip()
    draft: dict[str, Any] = {"Name": name[:80] or f"{obj.label} rule", "SobjectType": obj.api_name,
                             "TargetId": target, "TargetIncludeSubordinates": target_sub, "AccessLevel": level}
    if kind == "Owner":
        source, source_sub = _principal(web, "source", known)
        draft.update(RuleType="Owner", SourceId=source, SourceIncludeSubordinates=source_sub)
    elif kind == "Criteria":
        draft.update(RuleType="Criteria", **_criterion(web, obj))
    else:
        raise KeelError("A rule is owner-based or criteria-based.", code="INVALID_OPERATION", fields=["rule_type"])
    return draft


def _criterion(web: Web, obj: ObjectDef) -> dict[str, str]:
    f = obj.find_field(str(web.form.get("field", "")).strip())
    if f is None or not f.column or f.type in ("formula", "rollup", "textarea", "long_textarea", "rich_textarea"):
        raise KeelError(f"{obj.label} has no field by that name that a rule can test.", code="INVALID_FIELD",
                        fields=["field"])
    ops = [v.value for v in web.schema().get_object("SharingRule").get_field("CriteriaOperator").values]
    op = str(web.form.get("operator", ""))
    if op not in ops:
        raise KeelError("Unknown operator.", code="INVALID_OPERATOR", fields=["operator"])
    raw = str(web.form.get("value", "")).strip()
    values = [v.strip() for v in raw.split(";")]
    if not raw or (len(values) > 1 and op not in ("in", "not_in")):
        raise KeelError("Give one value (or several separated by ';' for in / not in).", code="INVALID_CRITERIA",
                        fields=["value"])
    try:
        for v in values:
            parse_value(f, v)
    except ValueError:
        raise KeelError(f"'{raw}' is not a valid value for {f.label}.", code="INVALID_CRITERIA",
                        fields=["value"]) from None
    return {"CriteriaField": f.api_name, "CriteriaOperator": op, "CriteriaValue": raw}


def sharing(web: Web) -> Response:
    """``/setup/sharing``: org-wide defaults (read-only) and each object's sharing rules; create and delete."""
    require_admin(web)
    principals = _principals(web)
    known = dict(principals)
    if web.request.method == "POST":
        action = str(web.form.get("action", ""))
        if action == "create":
            save_many(web.ctx, "SharingRule", [_draft(web, known)])
        elif action == "delete":
            rid = str(web.form.get("rule", ""))
            if not rid.isalnum() or not rid.startswith("02S"):
                raise KeelError("No such sharing rule.", code="NOT_FOUND")
            delete_many(web.ctx, "SharingRule", [rid])
        else:
            raise KeelError("Unknown action.", code="INVALID_OPERATION")
        return RedirectResponse(f"/setup/sharing?msg={action}d", status_code=303)
    names = {k.partition(":")[0]: v.partition(": ")[2] for k, v in principals}
    rules = query(web.ctx, f"SELECT {', '.join(RULE_FIELDS)} FROM SharingRule ORDER BY SobjectType, Name "
                           "LIMIT 2000")["records"]
    by_object: dict[str, list[dict[str, Any]]] = {}
    for r in rules:
        r["source"] = _who(names, r.get("SourceId"), r.get("SourceIncludeSubordinates"))
        r["target"] = _who(names, r.get("TargetId"), r.get("TargetIncludeSubordinates"))
        by_object.setdefault(str(r["SobjectType"]).lower(), []).append(r)
    objects = _objects(web)
    ops = [v.value for v in web.schema().get_object("SharingRule").get_field("CriteriaOperator").values]
    return web.render("setup_sharing.html", objects=objects, rules=by_object, owd=OWD_LABELS, access=ACCESS,
                      principals=principals, operators=ops,
                      rule_objects=[o for o in objects if o.sharing in RULE_OWDS],
                      msg=MESSAGES.get(str(web.params.get("msg", "")), ""))


def _who(names: dict[str, str], pid: Any, sub: Any) -> str:
    if not pid:
        return ""
    name = names.get(str(pid), str(pid))
    if str(pid).startswith("00G"):
        return f"Group: {name}"
    return f"Role and subordinates: {name}" if sub else f"Role: {name}"


def connected_apps(web: Web) -> Response:
    """``/setup/connected-apps``: list, create (the secret is shown in this response only), rotate the secret,
    deactivate or activate, delete."""
    require_admin(web)
    revealed: dict[str, str] | None = None
    message = ""
    if web.request.method == "POST":
        action = str(web.form.get("action", ""))
        client_id = str(web.form.get("client_id", ""))
        if action == "create":
            name = str(web.form.get("name", ""))
            cid, secret = security.register_connected_app(web.ctx, name, str(web.form.get("run_as", "")) or None)
            revealed = {"name": name.strip(), "client_id": cid, "secret": secret}
        elif action == "rotate":
            secret = security.rotate_connected_app_secret(web.ctx, client_id)
            name = next((a["name"] for a in security.list_connected_apps(web.ctx) if a["client_id"] == client_id),
                        "")
            revealed = {"name": name, "client_id": client_id, "secret": secret}
        elif action in ("deactivate", "activate"):
            n = security.set_connected_app_active(web.ctx, client_id, action == "activate")
            return RedirectResponse(f"/setup/connected-apps?msg={action}d&revoked={n}", status_code=303)
        elif action == "delete":
            n = security.delete_connected_app(web.ctx, client_id)
            return RedirectResponse(f"/setup/connected-apps?msg=deleted&revoked={n}", status_code=303)
        elif action in OAUTH_ACTIONS:
            _oauth_action(web, action, client_id)
            return RedirectResponse(f"/setup/connected-apps?msg={OAUTH_ACTIONS[action]}", status_code=303)
        else:
            raise KeelError("Unknown action.", code="INVALID_OPERATION")
    else:
        msg = str(web.params.get("msg", ""))
        revoked = str(web.params.get("revoked", ""))
        if msg in OAUTH_ACTIONS.values():
            message = f"Connected app: {msg.replace('-', ' ')}."
        if msg in ("activated", "deactivated", "deleted"):
            message = f"Connected app {msg}."
            if revoked.isdigit() and msg != "activated":
                message += f" {int(revoked)} token{'s' if revoked != '1' else ''} revoked."
    apps = security.list_connected_apps(web.ctx)
    users = query(web.ctx, "SELECT Id, Username FROM User WHERE IsActive = true ORDER BY Username")["records"]
    unames = {str(u["Id"]): u["Username"] for u in users}
    for a in apps:
        a["run_as"] = unames.get(str(a["run_as_user_id"]), "") if a["run_as_user_id"] else ""
        a.update(oauth_apps.app_details(web.ctx, a["client_id"]))
        a["approved"] = [unames.get(u, u) for u in a["approved_user_ids"]]
    return web.render("setup_connected_apps.html", apps=apps, users=users, revealed=revealed, msg=message)


OAUTH_ACTIONS = {"certificate": "certificate-saved", "callbacks": "callback-urls-saved",
                 "preauthorize": "user-pre-authorized", "unauthorize": "user-authorization-removed"}


def _oauth_action(web: Web, action: str, client_id: str) -> None:
    """The JWT bearer and web-server flow settings of one app (``services.oauth_apps`` checks permissions)."""
    if action == "certificate":
        upload = web.files.get("certificate_file")
        pem = str(web.form.get("certificate", ""))
        if upload is not None and upload.filename:
            pem = upload.file.read(65536).decode("utf-8", "replace")
        oauth_apps.set_certificate(web.ctx, client_id, pem)
    elif action == "callbacks":
        oauth_apps.set_callback_urls(web.ctx, client_id, str(web.form.get("callback_urls", "")).splitlines())
    else:
        oauth_apps.preauthorize_user(web.ctx, client_id, str(web.form.get("user_id", "")),
                                     allowed=action == "preauthorize")
