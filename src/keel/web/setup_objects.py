"""Setup: create a custom object, edit an object's properties, and edit an existing field.

All three build the desired ``ObjectDef`` and go through the same validate → plan → apply path as an app package
(``setup._apply``): the administrator sees the operations first, and Apply stores only the plan that was shown.
Mistakes a person can make in the form (an API name that is not one, a name already taken, an auto-number
format without digits) are checked here first and carry the form field they belong to, so the page can show them
next to it; everything else is left to ``parse_object``/``plan``, whose messages are shown at the top. A field
change that existing rows forbid is refused at plan time with the row counts ``data_problems`` computes, and
``apply_plan`` refuses it again, so the page is never the only gate.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from starlette.responses import RedirectResponse, Response

from keel.errors import KeelError
from keel.metadata.apply import data_problems
from keel.metadata.model import FieldDef, ObjectDef
from keel.metadata.package import parse_object
from keel.metadata.plan import Plan, plan
from keel.metadata.types import TYPES
from keel.web.base import Web
from keel.web.setup import _apply, _object, _require_customize
from keel.web.setup_security import OWD_LABELS

_BASE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*$")
NEW_SHARING = ("private", "public_read", "public_read_write")  # controlled-by-parent needs a master-detail field
LENGTH_TYPES = ("text", "textarea", "longtext")
NUMBER_TYPES = ("number", "currency", "percent")
UNIQUE_TYPES = ("text", "email", "phone", "url", "number", "currency", "percent")
NO_REQUIRED = ("checkbox", "formula", "rollup", "auto_number")


def _invalid(message: str, field: str, code: str = "INVALID_FIELD") -> KeelError:
    return KeelError(message, code=code, fields=[field])


def derive_api_name(label: str, given: str) -> str:
    """The typed API name, or one derived from the label ("Badge Request" → ``Badge_Request__c``), always with
    ``__c``; refused (on the ``name`` field) unless it is a name Salesforce would accept."""
    base = given.strip() or re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")
    base = base.removesuffix("__c")
    if not base:
        raise _invalid("Give the object an API name, or a label to derive one from.", "name", "INVALID_API_NAME")
    if not _BASE_NAME.match(base) or len(base) > 40:
        raise _invalid(f"{base!r} is not an API name: start with a letter, then letters, digits and single "
                       "underscores (at most 40), such as Badge_Request.", "name", "INVALID_API_NAME")
    return base + "__c"


def _object_doc(web: Web) -> dict[str, Any]:
    """The package document the form describes, checked field by field."""
    form = web.form
    label = str(form.get("label", "")).strip()
    if not label:
        raise _invalid("Give the object a label, such as Badge Request.", "label")
    name = derive_api_name(label, str(form.get("name", "")))
    if web.schema().find_object(name) is not None:
        raise _invalid(f"An object named {name} already exists.", "name", "DUPLICATE_DEVELOPER_NAME")
    sharing = str(form.get("sharing", "private"))
    if sharing not in NEW_SHARING:
        raise _invalid("Choose Private, Public Read Only or Public Read/Write.", "sharing", "INVALID_SHARING")
    name_label = str(form.get("name_label", "")).strip() or "Name"
    if str(form.get("name_type", "text")) == "auto_number":
        fmt = str(form.get("name_format", "")).strip()
        if not re.search(r"\{0+\}", fmt):
            raise _invalid("An auto-number format needs a run of zeros in braces, such as BR-{0000}.",
                           "name_format")
        name_field: dict[str, Any] = {"type": "auto_number", "format": fmt, "label": name_label}
    else:
        name_field = {"type": "text", "label": name_label}
    return {"object": name, "label": label,
            "plural_label": str(form.get("plural_label", "")).strip() or label + "s",
            "sharing": sharing, "track_history": bool(form.get("track_history")), "name_field": name_field}


def _planned(web: Web, desired: ObjectDef) -> Plan:
    with web.ctx.db.read() as conn:
        return plan(web.ctx.schema(conn), [desired])


def _form_page(web: Web, template: str, status: int = 200, **values: Any) -> Response:
    ctx: dict[str, Any] = {"form": {}, "ops": None, "error": "", "error_fields": (), "refused": (),
                           "sharing": {k: OWD_LABELS[k] for k in NEW_SHARING}}
    ctx.update(values)
    return web.render(template, status=status, **ctx)


def _step(web: Web) -> str:
    return str(web.form.get("step", "")) if web.request.method == "POST" else ""


def new_object(web: Web) -> Response:
    """``/setup/objects/new``: a custom object with its Name field; plan first, then apply."""
    _require_customize(web)
    step = _step(web)
    if not step:
        return _form_page(web, "setup_object_form.html", obj=None,
                          form={"sharing": "private", "name_type": "text", "name_label": "Name"})
    form = dict(web.form)
    try:
        doc = _object_doc(web)
        form["name"] = doc["object"]  # the derived name, shown so it can be edited before applying
        desired = parse_object(doc, source="setup")
        p = _planned(web, desired)
        if step == "apply":
            _apply(web, desired, p)
            return RedirectResponse(f"/setup/o/{desired.api_name}", status_code=303)
    except KeelError as e:
        return _form_page(web, "setup_object_form.html", obj=None, form=form, error=e.message,
                          error_fields=e.fields, status=400)
    return _form_page(web, "setup_object_form.html", obj=None, form=form, ops=[op.describe() for op in p.ops])


def _edited_object(web: Web, obj: ObjectDef) -> ObjectDef:
    form = web.form
    label = str(form.get("label", "")).strip()
    plural = str(form.get("plural_label", "")).strip()
    if not label:
        raise _invalid("An object needs a label.", "label")
    if not plural:
        raise _invalid("An object needs a plural label (the tab and list title).", "plural_label")
    sharing = str(form.get("sharing", obj.sharing))
    allowed = _sharing_choices(obj)
    if sharing not in allowed:
        raise _invalid(f"Sharing must be one of: {', '.join(allowed.values())}.", "sharing", "INVALID_SHARING")
    return replace(obj, label=label, plural_label=plural, sharing=sharing,
                   track_history=bool(form.get("track_history")))


def _sharing_choices(obj: ObjectDef) -> dict[str, str]:
    detail = any(f.type == "master_detail" for f in obj.fields)
    keys = (*NEW_SHARING, "controlled_by_parent") if detail else NEW_SHARING
    return {k: OWD_LABELS[k] for k in keys}


def edit_object(web: Web) -> Response:
    """``/setup/o/{obj}/edit``: a custom object's labels, sharing model and history tracking."""
    _require_customize(web)
    obj = _object(web)
    if not obj.custom:
        raise KeelError(f"{obj.label} is a standard object; its properties are fixed.", code="INVALID_OPERATION")
    page: dict[str, Any] = {"obj": obj, "sharing": _sharing_choices(obj)}
    step = _step(web)
    if not step:
        return _form_page(web, "setup_object_form.html", **page, form={
            "label": obj.label, "plural_label": obj.plural_label, "sharing": obj.sharing,
            "track_history": "on" if obj.track_history else ""})
    try:
        p = _planned(web, _edited_object(web, obj))
        if step == "apply" and not p.empty:
            _apply(web, obj, p)
            return RedirectResponse(f"/setup/o/{obj.api_name}", status_code=303)
    except KeelError as e:
        return _form_page(web, "setup_object_form.html", **page, form=web.form, error=e.message,
                          error_fields=e.fields, status=400)
    return _form_page(web, "setup_object_form.html", **page, form=web.form,
                      ops=[op.describe() for op in p.ops] or ["(no changes)"])


def _int(web: Web, name: str, low: int, high: int, what: str) -> int:
    raw = str(web.form.get(name, "")).strip()
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise _invalid(f"{what} must be a whole number from {low} to {high}.", name)
    return int(raw)


def _edited_field(web: Web, f: FieldDef) -> FieldDef:
    """The field with the form's label, help text, flags and size; options the type has no use for are refused
    rather than ignored, so the administrator never believes a change was made that was not."""
    form = web.form
    label = str(form.get("label", "")).strip()
    if not label:
        raise _invalid("A field needs a label.", "label")
    required, unique = bool(form.get("required")), bool(form.get("unique"))
    if required and f.type in NO_REQUIRED:
        raise _invalid(f"A {f.type} field cannot be required.", "required")
    if unique and f.type not in UNIQUE_TYPES:
        raise _invalid(f"A {f.type} field cannot be unique.", "unique")
    changes: dict[str, Any] = {"label": label, "help_text": str(form.get("help_text", "")).strip() or None,
                               "required": required, "unique": unique,
                               "track_history": bool(form.get("track_history"))}
    if f.type in LENGTH_TYPES:
        changes["length"] = _int(web, "length", 1, TYPES[f.type].max_length or 255, "The length")
    if f.type in NUMBER_TYPES:
        precision = _int(web, "precision", 1, 18, "The precision")
        changes.update(precision=precision, scale=_int(web, "scale", 0, precision, "The scale (decimal places)"))
    return replace(f, **changes)


def _editable_field(web: Web, obj: ObjectDef) -> FieldDef:
    f = obj.find_field(str(web.path["field"]))
    if f is None:
        raise KeelError("No such field.", code="NOT_FOUND")
    if f.standard:
        raise KeelError(f"{f.label} is a standard field; it cannot be changed here.", code="INVALID_OPERATION")
    return f


def edit_field(web: Web) -> Response:
    """``/setup/o/{obj}/fields/{field}/edit``: plan the change and, before offering Apply, count the rows that
    would forbid it (values too long, blanks for a required field, duplicates for a unique one)."""
    _require_customize(web)
    obj = _object(web)
    f = _editable_field(web, obj)
    page: dict[str, Any] = {"obj": obj, "field": f, "length_types": LENGTH_TYPES, "number_types": NUMBER_TYPES}
    step = _step(web)
    if not step:
        return _form_page(web, "setup_field_edit.html", **page, form={
            "label": f.label, "help_text": f.help_text or "", "required": f.required, "unique": f.unique,
            "track_history": f.track_history, "length": f.length or "", "precision": f.precision or "",
            "scale": f.scale if f.scale is not None else ""})
    try:
        desired = obj.with_fields(tuple(_edited_field(web, f) if x.key == f.key else x for x in obj.fields))
        with web.ctx.db.read() as conn:
            p = plan(web.ctx.schema(conn), [desired])
            refused = data_problems(conn, p)
        if refused:
            return _form_page(web, "setup_field_edit.html", **page, form=web.form, status=400,
                              refused=refused, planned=[op.describe() for op in p.ops])
        if step == "apply" and not p.empty:
            _apply(web, obj, p)
            return RedirectResponse(f"/setup/o/{obj.api_name}", status_code=303)
    except KeelError as e:
        return _form_page(web, "setup_field_edit.html", **page, form=web.form, error=e.message,
                          error_fields=e.fields, status=400)
    return _form_page(web, "setup_field_edit.html", **page, form=web.form,
                      ops=[op.describe() for op in p.ops] or ["(no changes)"])
