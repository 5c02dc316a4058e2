"""Setup: the object manager. A new field goes through the same validate → plan → apply path as an app package:
the administrator sees the plan's operations first, and apply writes metadata and DDL in one transaction."""

from __future__ import annotations

from typing import Any

from starlette.responses import RedirectResponse, Response

from keel.errors import KeelError
from keel.metadata.apply import apply_plan
from keel.metadata.model import ObjectDef
from keel.metadata.package import parse_field
from keel.metadata.plan import Plan, plan
from keel.web.base import Web

FIELD_TYPES = ("text", "textarea", "number", "currency", "percent", "checkbox", "date", "datetime", "email", "phone",
               "url", "picklist")


def _require_admin(web: Web) -> None:
    access: Any = web.ctx.actor.access
    if web.ctx.actor.is_system:
        return
    has = getattr(access, "has", None)
    if has is None or not (has("CustomizeApplication") or has("ViewSetup")):
        raise KeelError("Setup is for administrators.", code="INSUFFICIENT_ACCESS")


def _object(web: Web) -> ObjectDef:
    obj = web.schema().find_object(str(web.path["obj"]))
    if obj is None:
        raise KeelError("No such object.", code="NOT_FOUND")
    return obj


def objects(web: Web) -> Response:
    _require_admin(web)
    return web.render("setup_objects.html", objects=sorted(web.schema(), key=lambda o: o.label))


def object_detail(web: Web) -> Response:
    _require_admin(web)
    return web.render("setup_object.html", obj=_object(web))


def _field_plan(web: Web, obj: ObjectDef) -> Plan:
    name = str(web.form.get("name", "")).strip()
    if name and not name.endswith("__c"):
        name += "__c"
    kind = str(web.form.get("type", "text"))
    if kind not in FIELD_TYPES:
        raise KeelError("Unknown field type.", code="INVALID_FIELD")
    raw: dict[str, Any] = {"name": name, "type": kind, "label": str(web.form.get("label", "")).strip() or None}
    if kind == "picklist":
        raw["values"] = [v.strip() for v in str(web.form.get("values", "")).splitlines() if v.strip()]
    if kind in ("number", "currency", "percent"):
        raw.update(precision=18, scale=2 if kind != "number" else 0)
    if kind == "text":
        raw["length"] = 255
    if web.form.get("required"):
        raw["required"] = True
    raw = {k: v for k, v in raw.items() if v is not None}
    f = parse_field(raw, where=obj.api_name, custom_object=obj.custom, standard=False, object_name=obj.api_name,
                    plural_label=obj.plural_label)
    if obj.find_field(f.api_name):
        raise KeelError(f"{obj.label} already has a field {f.api_name}.", code="DUPLICATE_DEVELOPER_NAME")
    desired = obj.with_fields((*obj.fields, f))
    with web.ctx.db.read() as conn:
        before = web.ctx.schema(conn)
    return plan(before, [desired])


def new_field(web: Web) -> Response:
    _require_admin(web)
    has = getattr(web.ctx.actor.access, "has", None)
    if not web.ctx.actor.is_system and not (has and has("CustomizeApplication")):
        raise KeelError("Changing metadata needs Customize Application.", code="INSUFFICIENT_ACCESS")
    obj = _object(web)
    step = str(web.form.get("step", "")) if web.request.method == "POST" else ""
    if not step:
        return web.render("setup_field.html", obj=obj, types=FIELD_TYPES, form={}, ops=None, error="")
    try:
        p = _field_plan(web, obj)
    except KeelError as e:
        return web.render("setup_field.html", obj=obj, types=FIELD_TYPES, form=web.form, ops=None, error=e.message,
                          status=400)
    if step == "plan":
        return web.render("setup_field.html", obj=obj, types=FIELD_TYPES, form=web.form,
                          ops=[op.describe() for op in p.ops], error="")
    apply_plan(web.ctx.db, p, web.ctx.metadata)
    audit = web.ctx.extras.get("audit")
    if audit is not None:
        audit(web.ctx, "metadata_apply", obj.api_name, None, {"ops": [op.describe() for op in p.ops]})
    return RedirectResponse(f"/setup/o/{obj.api_name}", status_code=303)
