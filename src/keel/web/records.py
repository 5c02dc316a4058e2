"""Record pages, create/edit forms, the lookup picker and global search.

The record page is one SOQL statement with child subqueries for its related lists, run as the user: a hidden
record is "not found", hidden fields are absent, and related lists only hold visible children with readable
columns. History comes from ``services.security.read_history``, which drops rows of unreadable fields
(frappe/crm#805).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from starlette.responses import RedirectResponse, Response

from keel.errors import BatchError, KeelError, RowResult
from keel.metadata.model import FieldDef, ObjectDef
from keel.metadata.tables import table_for
from keel.records import save_many
from keel.services.query import query
from keel.services.search import find, loose_terms, searched_fields
from keel.services.security import read_history, system_context
from keel.storage import ids
from keel.web.approvals import approval_for
from keel.web.base import Web, cell_value, display, editable, readable, relation_select, require, soql_literal
from keel.web.files import notes_and_files
from keel.web.sharing import can_share
from keel.web.views import UNSORTABLE, default_columns

AUDIT_FIELDS = ("CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp", "IsDeleted",
                "Id")


def object_for_id(web: Web, rid: str) -> ObjectDef:
    if not rid.isalnum() or len(rid) not in (15, 18):
        raise KeelError("Malformed record id.", code="NOT_FOUND")
    obj = web.schema().find_by_prefix(rid[:3])
    if obj is None:
        raise KeelError("No such record.", code="NOT_FOUND")
    require(web.ctx, obj, "read")
    return obj


def layout(web: Web, obj: ObjectDef) -> tuple[list[dict[str, Any]], list[str]]:
    """Sections of readable fields (``layouts.default`` in YAML) and the related lists to show."""
    spec = (obj.extra.get("layouts") or {}).get("default") or {}
    sections = spec.get("sections") or [{"label": obj.label, "columns": 2, "fields": [
        f.api_name for f in obj.fields if f.api_name not in AUDIT_FIELDS and f.type != "id"
        and f.api_name not in ("OwnerId",)]}]
    out = []
    placed = {n for s in sections for n in s.get("fields") or []}
    rest = [f.api_name for f in obj.fields if f.custom and f.api_name not in placed]
    if rest:  # fields added after the layout was written (e.g. in the object manager) are never hidden
        sections = [*sections, {"label": "More fields", "columns": 2, "fields": rest}]
    for s in sections:
        fields = [obj.get_field(n) for n in s.get("fields") or [] if obj.find_field(n)
                  and readable(web.ctx, obj, n)]
        if fields:
            out.append({"label": s.get("label", ""), "columns": int(s.get("columns", 2)), "fields": fields})
    related = list(spec.get("related") or [c.name for c in web.schema().child_relationships(obj)
                                             if c.child_object not in ("Note", "Attachment", "Task", "Event")][:3])
    return out, related


def _related(web: Web, obj: ObjectDef, names: list[str]) -> list[tuple[str, ObjectDef, list[FieldDef], str]]:
    schema = web.schema()
    out = []
    for name in names:
        rel = schema.find_child_relationship(obj, name)
        if rel is None:
            continue
        child = schema.get_object(rel.child_object)
        if not (web.ctx.actor.is_system or web.ctx.actor.access.can(child.api_name, "read")):
            continue
        cols = [child.get_field(c) for c in default_columns(child)
                if child.find_field(c) and c != rel.field and readable(web.ctx, child, c)][:4]
        names_sql = ["Id", *[c.api_name for c in cols]]
        names_sql += [r for c in cols if (r := relation_select(c, web.ctx))]
        sub = f"(SELECT {', '.join(dict.fromkeys(names_sql))} FROM {rel.name} ORDER BY Name LIMIT 10)"
        out.append((rel.name, child, cols, sub))
    return out


def record_page(web: Web) -> Response:
    rid = str(web.path["id"])
    obj = object_for_id(web, rid)
    sections, related_names = layout(web, obj)
    related = _related(web, obj, related_names)
    names = ["Id", "Name"]
    for s in sections:
        for f in s["fields"]:
            names.append(f.api_name)
            if r := relation_select(f, web.ctx):
                names.append(r)
    for extra in ("OwnerId", "Owner.Name", "CreatedDate", "LastModifiedDate"):
        base = extra.split(".")[0].replace("Owner", "OwnerId") if "." in extra else extra
        if obj.find_field(base) and readable(web.ctx, obj, base):
            names.append(extra)
    subs = [r[3] for r in related]
    soql = f"SELECT {', '.join(dict.fromkeys(names + subs))} FROM {obj.api_name} WHERE Id = {soql_literal(None, rid)}"
    recs = query(web.ctx, soql, surface="record_page")["records"]
    if not recs:
        raise KeelError(f"The {obj.label} does not exist or is not visible to you.", code="NOT_FOUND")
    rec = recs[0]
    rel_rows = []
    for name, child, cols, _sub in related:
        block = rec.get(name) or {"records": []}
        rows = [(r, [cell_value(r, c) for c in cols]) for r in block["records"]]
        rel_rows.append((name, child, cols, rows))
    history = read_history(web.ctx, obj.api_name, rid) if obj.track_history else []
    for h in history:
        f = obj.find_field(str(h["Field"]))
        h["Label"] = f.label if f else h["Field"]
        h["Old"], h["New"] = display(h["OldValue"], f), display(h["NewValue"], f)
    values = {f.api_name: cell_value(rec, f) for s in sections for f in s["fields"]}
    can_edit = web.ctx.actor.is_system or web.ctx.actor.access.can(obj.api_name, "edit")
    # Fields this user can see but not change (computed, system or read-only by field security) are marked, so
    # nobody opens the form expecting to edit them.
    fixed = {f.api_name for s in sections for f in s["fields"] if not editable(web.ctx, obj, f)}
    rid18 = str(rec["Id"])
    # The user has just been shown to read the record: one audited system context reads what hangs off it.
    sys_ctx = system_context(web.ctx, f"record page {rid18}: approvals, notes, files")
    approval = approval_for(web, sys_ctx, obj, rid18, can_edit)
    notes, files = notes_and_files(web, sys_ctx, rid18) if obj.api_name not in ("Note", "Attachment") else ([], [])
    return web.render("record.html", obj=obj, rec=rec, sections=sections, values=values, related=rel_rows,
                      history=history[::-1][:50], can_edit=can_edit, approval=approval, notes=notes, files=files,
                      readonly=fixed,
                      can_share=can_share(web, obj, rid18),
                      can_delete_files=web.ctx.actor.is_system or web.ctx.actor.access.can("Attachment", "delete"))


# -- forms --------------------------------------------------------------------------------------------------

def coerce(f: FieldDef, form: Mapping[str, Any], multi: Mapping[str, list[str]]) -> Any:
    if f.type == "checkbox":
        return str(form.get(f.api_name, "")) in ("on", "true", "1")
    if f.type == "multipicklist":
        return ";".join(multi.get(f.api_name, [])) or None
    raw = str(form.get(f.api_name, "")).strip()
    if raw == "":
        return None
    if f.type == "datetime" and len(raw) == 16:
        return raw + ":00Z"
    return raw


def record_form(web: Web) -> Response:
    """``/o/{obj}/new`` and ``/r/{id}/edit``: the layout's readable fields, editable ones as inputs and the rest
    shown read-only (marked, ``aria-readonly``, and never posted); errors come back from the lifecycle next to the
    field they name. A crafted post of a read-only field is handed to the lifecycle, which refuses it, rather than
    dropped: the form is exactly as strict as the API."""
    rid = web.path.get("id")
    if rid:
        obj = object_for_id(web, str(rid))
        require(web.ctx, obj, "edit")
    else:
        found = web.schema().find_object(str(web.path["obj"]))
        if found is None:
            raise KeelError("No such object.", code="NOT_FOUND")
        obj = found
        require(web.ctx, obj, "create")
    sections, _ = layout(web, obj)
    fields = [f for s in sections for f in s["fields"] if editable(web.ctx, obj, f)]
    fixed = [f for s in sections for f in s["fields"] if not editable(web.ctx, obj, f)]
    values: dict[str, Any] = {}
    labels: dict[str, str] = {}
    shown: dict[str, str] = {}  # read-only fields: their displayed value
    if rid:
        wanted = [*fields, *fixed] if web.request.method == "GET" else fixed
        names = ["Id", *[f.api_name for f in wanted], *[r for f in wanted if (r := relation_select(f, web.ctx))]]
        recs = query(web.ctx, f"SELECT {', '.join(dict.fromkeys(names))} FROM {obj.api_name} "
                              f"WHERE Id = {soql_literal(None, str(rid))}")["records"]
        if not recs:
            raise KeelError("The record does not exist or is not visible.", code="NOT_FOUND")
        shown = {f.api_name: cell_value(recs[0], f)[0] for f in fixed}
        if web.request.method == "GET":
            values = dict(recs[0])
            values["__version__"] = record_version(web, obj, str(recs[0]["Id"]))
            labels = {f.api_name: cell_value(values, f)[0] for f in fields if f.is_reference}
    errors: dict[str, list[str]] = {}
    general: list[str] = []
    conflict = False
    if web.request.method == "POST":
        draft = {f.api_name: coerce(f, web.form, web.multi) for f in fields}
        draft.update({f.api_name: coerce(f, web.form, web.multi) for f in fixed if f.api_name in web.form})
        if not rid:
            draft = {k: v for k, v in draft.items() if v is not None}
        else:
            draft["Id"] = str(rid)
            version = str(web.form.get("__version__", ""))
            if version.isdigit():
                draft["__version__"] = int(version)
        result = _save_one(web, obj, draft)
        if result.success and result.id:
            return RedirectResponse(f"/r/{result.id}", status_code=303)
        for e in result.errors:
            if e.code == "CONCURRENT_MODIFICATION":
                conflict = True
                general.append("Someone else saved this record after you opened it, so your changes were not "
                               "saved. Open the record again to see their changes, then redo yours.")
                continue
            targets = [n for n in e.fields if any(f.api_name == n for f in (*fields, *fixed))]
            for n in targets:
                errors.setdefault(n, []).append(e.message)
            if not targets:
                general.append(e.message)
        values = {**draft, "__version__": draft.get("__version__")}
        labels = {f.api_name: str(web.form.get(f"{f.api_name}__label", "")) for f in fields if f.is_reference}
    return web.render("form.html", obj=obj, sections=sections, values=values, labels=labels, errors=errors,
                      readonly=shown if rid else {f.api_name: "" for f in fixed},
                      general=general, rid=rid, conflict=conflict,
                      status=409 if conflict else 422 if errors or general else 200)


def record_version(web: Web, obj: ObjectDef, rid18: str) -> int:
    """The row's ``version`` (the optimistic-concurrency token, not a field, so not in SOQL) of a record the
    caller has just read through SOQL as the user."""
    table = table_for(web.schema(), obj)
    with web.ctx.db.read() as conn:
        return int(conn.execute(sa.select(table.c.version).where(
            table.c.id == ids.decode(rid18, obj.key_prefix))).scalar_one())


def _save_one(web: Web, obj: ObjectDef, draft: dict[str, Any]) -> RowResult:
    try:
        return save_many(web.ctx, obj.api_name, [draft])[0]
    except BatchError as e:
        return e.results[0]


def lookup(web: Web) -> Response:
    """Search-as-you-type for a lookup field: names of records the user can see, with readable preview
    fields only."""
    found = web.schema().find_object(str(web.path["obj"]))
    if found is None:
        raise KeelError("No such object.", code="NOT_FOUND")
    obj = found
    require(web.ctx, obj, "read")
    q = str(web.params.get("q") or next((v for k, v in web.params.items() if k.endswith("__label")), ""))
    q = q.strip().replace("%", "").replace("_", "")
    target = str(web.params.get("target", ""))
    if not target.replace("_", "").replace("-", "").isalnum():
        target = ""
    preview = [obj.get_field(c) for c in (obj.extra.get("compact_fields") or [])
               if obj.find_field(c) and readable(web.ctx, obj, c)][:2]
    names = ", ".join(dict.fromkeys(["Id", "Name", *[p.api_name for p in preview]]))
    where = f" WHERE Name LIKE {soql_literal(None, q + '%')}" if q else ""
    recs = query(web.ctx, f"SELECT {names} FROM {obj.api_name}{where} ORDER BY Name LIMIT 10")["records"]
    rows = [(r, " · ".join(t for p in preview if (t := cell_value(r, p)[0]))) for r in recs]
    return web.render("lookup.html", rows=rows, target=target, obj=obj)


def search(web: Web) -> Response:
    """Global search through the same service as the API's ``/search``: each object's full-text index, matched
    only on fields the user can read (otherwise a search would reveal hidden values by whether it matched) and
    only on visible records, each word a prefix; results through SOQL as the user, best match first."""
    q = str(web.params.get("q", "")).strip()
    groups = []
    expr = loose_terms(q) if len(q) >= 2 else None
    if expr is not None:
        from keel.web.base import nav_objects

        with web.ctx.db.read() as conn:
            for obj in nav_objects(web.ctx):
                if not searched_fields(web.ctx, obj):
                    continue
                shown = [obj.get_field(n) for n in (obj.extra.get("search_fields") or ["Name"])
                         if n != "Name" and obj.find_field(n) and readable(web.ctx, obj, n)
                         and obj.get_field(n).type in ("text", "email", "phone", "url", "textarea", "picklist")
                         and obj.get_field(n).type not in UNSORTABLE]
                names = ", ".join(dict.fromkeys(["Id", "Name", *[f.api_name for f in shown]]))
                recs = find(web.ctx, conn, obj, expr, fields=names, limit=10)
                if recs:
                    groups.append((obj, shown, [(r, [display(r.get(f.api_name), f) for f in shown]) for r in recs]))
    return web.render("search.html", q=q, groups=groups)
