"""Setup: the object manager. A new field and a picklist's values go through the same validate → plan → apply path
as an app package: the administrator sees the plan's operations first, and apply writes metadata and DDL in one
transaction (and refuses, with row counts, a change that existing data forbids)."""

from __future__ import annotations

import hmac
from dataclasses import replace
from typing import Any

from starlette.responses import RedirectResponse, Response

from keel.errors import KeelError
from keel.metadata.apply import apply_plan
from keel.metadata.model import FieldDef, ObjectDef
from keel.metadata.package import parse_field, picklist_values
from keel.metadata.plan import Plan, plan
from keel.web.base import Web, plan_digest

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


def _require_customize(web: Web) -> None:
    _require_admin(web)
    has = getattr(web.ctx.actor.access, "has", None)
    if not web.ctx.actor.is_system and not (has and has("CustomizeApplication")):
        raise KeelError("Changing metadata needs Customize Application.", code="INSUFFICIENT_ACCESS")


def _apply(web: Web, obj: ObjectDef, p: Plan) -> None:
    shown = str(web.form.get("plan_digest", ""))
    if not hmac.compare_digest(shown, plan_digest([op.describe() for op in p.ops])):
        raise KeelError("The changes differ from the plan that was shown (the form was edited after "
                        "\"Show plan\", or someone else changed this object). Review the new plan, then apply.",
                        code="PLAN_CHANGED")
    apply_plan(web.ctx.db, p, web.ctx.metadata)
    audit = web.ctx.extras.get("audit")
    if audit is not None:
        audit(web.ctx, "metadata_apply", obj.api_name, None, {"ops": [op.describe() for op in p.ops]})


def new_field(web: Web) -> Response:
    _require_customize(web)
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
    _apply(web, obj, p)
    return RedirectResponse(f"/setup/o/{obj.api_name}", status_code=303)


def _picklist_field(web: Web, obj: ObjectDef) -> FieldDef:
    f = obj.find_field(str(web.path["field"]))
    if f is None or f.type not in ("picklist", "multipicklist"):
        raise KeelError("No such picklist field.", code="NOT_FOUND")
    return f


def _values_plan(web: Web, obj: ObjectDef, f: FieldDef) -> Plan:
    """The field with the form's values: existing ones relabelled, (de)activated, reordered or removed (by their
    value, which never changes: records hold it), then the new ones; checked as a package's ``values:`` is."""
    form = web.form
    rows: list[tuple[float, int, dict[str, Any]]] = []
    for i, v in enumerate(f.values):
        if form.get(f"r{i}"):
            continue
        try:
            pos = float(str(form.get(f"o{i}", "")) or i + 1)
        except ValueError:
            raise KeelError(f"The order of {v.value!r} must be a number.", code="INVALID_FIELD") from None
        rows.append((pos, i, {"value": v.value, "label": str(form.get(f"l{i}", "")).strip() or v.value,
                              "active": bool(form.get(f"a{i}")), "valid_for": list(v.valid_for)}))
    raw = [r for _, _, r in sorted(rows, key=lambda t: (t[0], t[1]))]
    raw += [{"value": line.strip(), "label": line.strip()} for line in str(form.get("new", "")).splitlines()
            if line.strip()]
    default = str(form.get("default", ""))
    for r in raw:
        r["default"] = r["value"] == default and r.get("active", True)
    values = picklist_values(raw, f"{obj.api_name}.{f.api_name}")  # a MetadataError is a KeelError: shown
    desired = obj.with_fields(tuple(replace(x, values=values) if x.key == f.key else x for x in obj.fields))
    with web.ctx.db.read() as conn:
        return plan(web.ctx.schema(conn), [desired])


def picklist_editor(web: Web) -> Response:
    """``/setup/o/{obj}/fields/{field}/values``: edit a picklist's values, plan first, then apply."""
    _require_customize(web)
    obj = _object(web)
    f = _picklist_field(web, obj)
    step = str(web.form.get("step", "")) if web.request.method == "POST" else ""
    ctx: dict[str, Any] = {"obj": obj, "field": f, "form": web.form if step else {}, "ops": None, "error": ""}
    if not step:
        return web.render("setup_picklist.html", **ctx)
    try:
        p = _values_plan(web, obj, f)
        if step == "apply" and not p.empty:
            _apply(web, obj, p)
            return RedirectResponse(f"/setup/o/{obj.api_name}/fields/{f.api_name}/values", status_code=303)
    except KeelError as e:
        return web.render("setup_picklist.html", **{**ctx, "error": e.message}, status=400)
    return web.render("setup_picklist.html", **{**ctx, "ops": [op.describe() for op in p.ops] or
                                                ["(no changes)"]})
