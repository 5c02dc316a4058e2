"""Setup: an object's page layout (``layouts.<name>`` in the object's YAML: sections with a label, one or two
columns and an ordered field list, plus the related lists). The layout is object metadata, so a change goes
through the plan → apply path like a package deploy.

The editor is one plain form that carries the whole draft layout: every button (move up/down, remove, add) posts
the draft back and gets it re-rendered with that one change, and nothing is stored until "Show plan" and then
"Apply". That keeps it keyboard-only and script-free under the CSP, and a half-finished edit is never saved.
Required and read-only are properties of the field (its definition and its type), not of the layout in Keel's
metadata, so the editor shows them as markers rather than offering to change them here.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from starlette.responses import RedirectResponse, Response

from keel.errors import KeelError
from keel.metadata.model import FieldDef, ObjectDef
from keel.metadata.plan import Plan, plan
from keel.services.metadata import check_formulas
from keel.web.base import Web
from keel.web.records import AUDIT_FIELDS
from keel.web.setup import _apply, _object, _require_customize

LAYOUT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
Section = dict[str, Any]


def read_only(f: FieldDef) -> bool:
    """Fields the record form never offers for editing, whatever the layout says (see ``base.editable``)."""
    return f.system_managed or f.type in ("formula", "rollup", "auto_number", "id") or f.api_name in AUDIT_FIELDS


def _placeable(obj: ObjectDef) -> list[FieldDef]:
    return [f for f in obj.fields if f.type != "id" and f.api_name not in ("IsDeleted", "SystemModstamp")]


def _stored(obj: ObjectDef, name: str) -> tuple[dict[str, Any], list[Section]]:
    """The stored layout and its sections; a missing ``default`` starts from what the record page shows without
    one (every field in one section), so saving it changes nothing visible until the administrator edits it."""
    spec = dict((obj.extra.get("layouts") or {}).get(name) or {})
    if not spec and name.lower() != "default":
        raise KeelError(f"{obj.label} has no page layout {name!r}.", code="NOT_FOUND")
    sections = spec.get("sections") or [{"label": obj.label, "columns": 2, "fields": [
        f.api_name for f in _placeable(obj) if f.api_name not in AUDIT_FIELDS and f.api_name != "OwnerId"]}]
    return spec, [{"label": str(s.get("label", "")), "was": str(s.get("label", "")),
                   "columns": int(s.get("columns", 2)), "fields": [str(n) for n in s.get("fields") or []]}
                  for s in sections]


def _from_form(web: Web) -> list[Section]:
    form, multi = web.form, web.multi
    try:
        n = int(str(form.get("sections", "0")))
    except ValueError:
        raise KeelError("The form is damaged; reload the page.", code="INVALID_LAYOUT") from None
    out: list[Section] = []
    for i in range(min(n, 100)):
        cols = str(form.get(f"s{i}.columns", "2"))
        out.append({"label": str(form.get(f"s{i}.label", "")).strip(), "was": str(form.get(f"s{i}.was", "")),
                    "columns": 1 if cols == "1" else 2,
                    "fields": [str(x) for x in multi.get(f"s{i}.fields", [])]})
    # "Move to section" selects: applied before any button's own change.
    for i, s in enumerate(out):
        for name in list(s["fields"]):
            to = str(form.get(f"to.{name}", i))
            if to.isdigit() and int(to) != i and int(to) < len(out):
                s["fields"].remove(name)
                out[int(to)]["fields"].append(name)
    return out


def _swap(items: list[Any], i: int, j: int) -> None:
    if 0 <= i < len(items) and 0 <= j < len(items):
        items[i], items[j] = items[j], items[i]


def _edit(web: Web, obj: ObjectDef, sections: list[Section]) -> list[Section]:
    """One button's change to the draft: ``su:i``/``sd:i``/``sr:i`` move or remove a section, ``fu:F``/``fd:F``/
    ``fr:F`` a field, ``sa`` adds a section and ``fa`` a field; ``edit``, ``plan`` and ``apply`` change nothing
    beyond the form's own inputs."""
    op = str(web.form.get("op", ""))
    kind, _, arg = op.partition(":")
    if kind in ("su", "sd", "sr") and arg.isdigit():
        i = int(arg)
        if kind == "sr" and i < len(sections):
            sections.pop(i)
        else:
            _swap(sections, i, i - 1 if kind == "su" else i + 1)
    elif kind in ("fu", "fd", "fr"):
        for s in sections:
            if arg in s["fields"]:
                k = s["fields"].index(arg)
                if kind == "fr":
                    s["fields"].pop(k)
                else:
                    _swap(s["fields"], k, k - 1 if kind == "fu" else k + 1)
    elif kind == "sa":
        label = str(web.form.get("new_section", "")).strip()
        if not label:
            raise KeelError("Give the new section a label.", code="INVALID_LAYOUT", fields=["new_section"])
        sections.append({"label": label, "was": "", "columns": 2, "fields": []})
    elif kind == "fa":
        name = str(web.form.get("new_field", ""))
        f = obj.find_field(name)
        to = str(web.form.get("new_field_to", "0"))
        if f is None or not to.isdigit() or int(to) >= len(sections):
            raise KeelError("Choose a field and the section to put it in.", code="INVALID_LAYOUT",
                            fields=["new_field"])
        sections[int(to)]["fields"].append(f.api_name)
    return sections


def _check(obj: ObjectDef, sections: list[Section]) -> None:
    """What the record page needs from a layout: labelled sections and fields that exist, each placed once."""
    seen: set[str] = set()
    if not sections:
        raise KeelError("A layout needs at least one section.", code="INVALID_LAYOUT")
    for s in sections:
        if not s["label"]:
            raise KeelError("Every section needs a label.", code="INVALID_LAYOUT")
        for name in s["fields"]:
            if obj.find_field(name) is None:
                raise KeelError(f"{obj.label} has no field {name!r}.", code="INVALID_LAYOUT")
            if name.lower() in seen:
                raise KeelError(f"{name} is placed twice; a field appears once on a layout.", code="INVALID_LAYOUT")
            seen.add(name.lower())


def _layout_plan(web: Web, obj: ObjectDef, name: str, spec: dict[str, Any], sections: list[Section]) -> Plan:
    _check(obj, sections)
    layouts = dict(obj.extra.get("layouts") or {})
    layouts[name] = {**spec, "sections": [{k: s[k] for k in ("label", "columns", "fields")} for s in sections]}
    desired = replace(obj, extra={**obj.extra, "layouts": layouts})
    with web.ctx.db.read() as conn:
        p = plan(web.ctx.schema(conn), [desired])
    check_formulas(p)
    return p


def describe(old: list[Section], new: list[Section]) -> list[str]:
    """What the draft changes, in words: the plan's operation only says that the object's ``extra`` changed.
    Sections are matched by the label they had when the editor was opened (``was``), so a rename is a rename."""
    by_label = {s["label"]: s for s in old}
    kept = [s for s in new if s["was"] in by_label]
    out = [f"section {s['label']!r} added" for s in new if s["was"] not in by_label]
    out += [f"section {s['was']!r} renamed to {s['label']!r}" for s in kept if s["was"] != s["label"]]
    out += [f"section {lb!r} removed" for lb in by_label if lb not in {s["was"] for s in kept}]
    if [s["was"] for s in kept] != [lb for lb in by_label if lb in {s["was"] for s in kept}]:
        out.append("sections reordered: " + ", ".join(s["label"] for s in new))
    out += [f"section {s['label']!r}: {s['columns']} column(s)" for s in kept
            if by_label[s["was"]]["columns"] != s["columns"]]
    where_old = {n: s["label"] for s in old for n in s["fields"]}
    where_new = {n: (s["was"] or None, s["label"]) for s in new for n in s["fields"]}
    out += [f"field {n} added to {lb!r}" for n, (_, lb) in where_new.items() if n not in where_old]
    out += [f"field {n} removed" for n in where_old if n not in where_new]
    out += [f"field {n} moved to {lb!r}" for n, (was, lb) in where_new.items()
            if n in where_old and where_old[n] != was]
    for s in kept:
        prior = by_label[s["was"]]["fields"]
        if [n for n in prior if n in s["fields"]] != [n for n in s["fields"] if n in prior]:
            out.append(f"fields of {s['label']!r} reordered: " + ", ".join(s["fields"]))
    return out


def _view(obj: ObjectDef, sections: list[Section]) -> list[dict[str, Any]]:
    """Sections as the template draws them: each field with its column (the record page fills a two-column
    section row by row, so even positions are on the left) and its markers."""
    out = []
    for s in sections:
        rows = []
        for k, n in enumerate(s["fields"]):
            f = obj.find_field(n)
            rows.append({"name": n, "label": f.label if f else n, "required": bool(f and f.required),
                         "read_only": bool(f and read_only(f)),
                         "column": "" if s["columns"] == 1 else ("left" if k % 2 == 0 else "right")})
        out.append({**s, "rows": rows})
    return out


def layout_editor(web: Web) -> Response:
    """``/setup/o/{obj}/layouts/{name}``: edit the draft with buttons, then "Show plan", then "Apply"."""
    _require_customize(web)
    obj = _object(web)
    name = str(web.path["name"])
    if not LAYOUT_NAME.match(name):
        raise KeelError("No such page layout.", code="NOT_FOUND")
    spec, sections = _stored(obj, name)
    op = str(web.form.get("op", ""))
    step = "" if web.request.method != "POST" else op if op in ("plan", "apply") else "edit"
    ops: list[str] | None = None
    changes: list[str] = []
    error, status = "", 200
    if step:
        sections = _from_form(web)
        try:
            sections = _edit(web, obj, sections)
            if step in ("plan", "apply"):
                p = _layout_plan(web, obj, name, spec, sections)
                if step == "apply" and not p.empty:
                    _apply(web, obj, p)
                    return RedirectResponse(f"/setup/o/{obj.api_name}/layouts/{name}", status_code=303)
                ops = [op.describe() for op in p.ops] or ["(no changes)"]
                changes = describe(_stored(obj, name)[1], sections) if not p.empty else []
        except KeelError as e:
            error, status = f"{e.code}: {e.message}", 400
    placed = {n.lower() for s in sections for n in s["fields"]}
    unplaced = [f for f in _placeable(obj) if f.key not in placed]
    return web.render("setup_layout.html", status=status, obj=obj, name=name, sections=_view(obj, sections),
                      unplaced=unplaced, ops=ops, changes=changes, error=error)
