"""Setup: an object's validation rules. Adding, editing, (de)activating and deleting a rule changes the object's
metadata, so it goes through the same plan → apply path as a package: the administrator sees the plan first, and
a condition that does not type-check is refused with its line and column both before the plan is offered and
again when it is applied (the page is never the only gate)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from starlette.responses import RedirectResponse, Response

from keel.errors import KeelError
from keel.formula import FormulaError, check
from keel.metadata.model import ObjectDef, ValidationRule
from keel.metadata.plan import Plan, plan
from keel.services.metadata import check_formulas
from keel.web.base import Web
from keel.web.setup import _apply, _object, _require_customize

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
ACTIONS = ("save", "activate", "deactivate", "delete")


def _find(obj: ObjectDef, name: str) -> ValidationRule | None:
    return next((r for r in obj.validation_rules if r.name.lower() == name.lower()), None)


def check_condition(obj: ObjectDef, web: Web, condition: str) -> None:
    """The rule's condition must be a formula that yields a checkbox on this object; the message carries the
    position the way ``keel formula check`` prints it, so the administrator can find the mistake."""
    try:
        check(condition, obj, web.schema(), context_kind="validation", blank_as="blank", returns="checkbox")
    except FormulaError as e:
        raise KeelError(f"The condition has an error at line {e.line}, column {e.column}: {e.reason}",
                        code="INVALID_FORMULA", fields=["condition"]) from None


def _edited(web: Web, obj: ObjectDef) -> tuple[tuple[ValidationRule, ...], str]:
    """The object's rules after the form's change, and one line saying what changed (shown with the plan, whose
    operation only says that the validation rules changed)."""
    form = web.form
    action = str(form.get("action", "save"))
    if action not in ACTIONS:
        raise KeelError("Unknown change to a validation rule.", code="INVALID_RULE")
    rules = list(obj.validation_rules)
    if action != "save":
        target = _find(obj, str(form.get("target", "")))
        if target is None:
            raise KeelError(f"{obj.label} has no validation rule {str(form.get('target', ''))!r}.", code="NOT_FOUND")
        if action == "delete":
            return tuple(r for r in rules if r is not target), f"delete rule {target.name}"
        want = action == "activate"
        return tuple(replace(r, active=want) if r is target else r for r in rules), f"{action} rule {target.name}"
    name = str(form.get("name", "")).strip()
    condition = str(form.get("condition", "")).strip()
    message = str(form.get("message", "")).strip()
    field = str(form.get("field", "")).strip() or None
    original = str(form.get("original", "")).strip()
    if not NAME.match(name):
        raise KeelError("A rule name starts with a letter and holds only letters, digits and underscores "
                        "(at most 80).", code="INVALID_RULE", fields=["name"])
    if not condition:
        raise KeelError("Write the condition: a formula that is TRUE when the record is invalid.",
                        code="INVALID_RULE", fields=["condition"])
    if not message:
        raise KeelError("Write the error message people see when the rule refuses a save.", code="INVALID_RULE",
                        fields=["message"])
    if field is not None:
        f = obj.find_field(field)
        if f is None:
            raise KeelError(f"{obj.label} has no field {field!r} to show the error on.", code="INVALID_RULE",
                            fields=["field"])
        field = f.api_name
    prior = _find(obj, original) if original else None
    if original and prior is None:
        raise KeelError(f"{obj.label} has no validation rule {original!r} any more; reload the page.",
                        code="NOT_FOUND")
    clash = _find(obj, name)
    if clash is not None and clash is not prior:
        raise KeelError(f"{obj.label} already has a validation rule named {clash.name}.",
                        code="DUPLICATE_DEVELOPER_NAME", fields=["name"])
    check_condition(obj, web, condition)
    rule = ValidationRule(name, condition, message, field, bool(form.get("active")))
    if prior is None:
        return (*rules, rule), f"add rule {name}"
    changed = [k for k in ("name", "condition", "message", "field", "active")
               if getattr(prior, k) != getattr(rule, k)]
    what = f"change rule {prior.name}: {', '.join(changed)}" if changed else f"rule {prior.name} unchanged"
    return tuple(rule if r is prior else r for r in rules), what


def _rules_plan(web: Web, obj: ObjectDef) -> tuple[Plan, str]:
    rules, summary = _edited(web, obj)
    with web.ctx.db.read() as conn:
        p = plan(web.ctx.schema(conn), [replace(obj, validation_rules=rules)])
    check_formulas(p)  # every rule of the object again, as a package deploy does
    return p, summary


def _page(web: Web, obj: ObjectDef, **values: Any) -> Response:
    status = int(values.pop("status", 200))
    edit = _find(obj, web.params.get("edit", "")) if web.request.method == "GET" else None
    form: dict[str, Any] = values.pop("form", None) or (
        {"original": edit.name, "name": edit.name, "condition": edit.condition, "message": edit.message,
         "field": edit.field or "", "active": "on" if edit.active else ""} if edit else {"active": "on"})
    ctx: dict[str, Any] = {"obj": obj, "form": form, "ops": None, "summary": "", "error": "", "pending": None}
    ctx.update(values)
    return web.render("setup_rules.html", status=status, **ctx)


def rules_page(web: Web) -> Response:
    """``/setup/o/{obj}/rules``: the rules with their state, one editor form, and per-rule (de)activate and
    delete; every change is planned first (``step=plan``) and applied only by a second POST (``step=apply``)."""
    _require_customize(web)
    obj = _object(web)
    step = str(web.form.get("step", "")) if web.request.method == "POST" else ""
    if not step:
        return _page(web, obj)
    save = str(web.form.get("action", "save")) == "save"
    keep = dict(web.form) if save else None
    try:
        p, summary = _rules_plan(web, obj)
        if step == "apply" and not p.empty:
            _apply(web, obj, p)
            return RedirectResponse(f"/setup/o/{obj.api_name}/rules", status_code=303)
    except KeelError as e:
        return _page(web, obj, form=keep, error=f"{e.code}: {e.message}", status=400)
    pending = {k: str(v) for k, v in web.form.items() if k not in ("csrf_token", "step")}
    return _page(web, obj, form=keep, ops=[op.describe() for op in p.ops] or ["(no changes)"], summary=summary,
                 pending=pending)
