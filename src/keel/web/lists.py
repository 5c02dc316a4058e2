"""List views, capped counts, inline edit, mass actions, CSV export and kanban.

Every write here is ``save_many``/``delete_many``: an inline edit, a mass update and a kanban drag are ordinary
updates, so validation rules, required fields, permissions and automation all apply (krayin#2303, frappe/crm#103).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from starlette.responses import HTMLResponse, Response, StreamingResponse

from keel.errors import BatchError, KeelError, RowResult
from keel.metadata.model import FieldDef, ObjectDef
from keel.records import delete_many, save_many
from keel.services.export import cell as csv_cell
from keel.services.query import query, query_all_records
from keel.web.base import Web, cell_value, editable, readable, relation_select, require
from keel.web.saved_views import MAX_COLUMNS, column_choices, delete_view, save_view, user_views
from keel.web.views import COUNT_CAP, OPS, PAGE, build_query, views_for


def get_object(web: Web) -> ObjectDef:
    obj = web.schema().find_object(str(web.path["obj"]))
    if obj is None:
        raise KeelError("No such object.", code="NOT_FOUND")
    require(web.ctx, obj, "read")
    return obj


def views_post(web: Web) -> Response:
    """``POST /o/{obj}/views`` (save) and ``/o/{obj}/views/delete``."""
    obj = get_object(web)
    if web.request.url.path.endswith("/delete"):
        return delete_view(web, obj)
    return save_view(web, obj)


def list_view(web: Web) -> Response:
    obj = get_object(web)
    mine = user_views(web.ctx, obj)
    lq = build_query(web.ctx, obj, web.params, mine)
    result = query(web.ctx, lq.page_soql(web.params.get("after")), surface="list_view")
    records = result["records"]
    more = len(records) > PAGE
    records = records[:PAGE]
    keep = {k: v for k, v in web.params.items() if k in ("view", "sort", "dir", "q", "ff", "fo", "fv")}
    next_url = f"?{urlencode({**keep, 'after': lq.next_token(records)})}" if more else None
    rows = [(r, [cell_value(r, f) for f in lq.columns]) for r in records]
    filterable = [f for f in obj.fields if readable(web.ctx, obj, f.api_name) and f.type not in ("longtext",)]
    ctx: dict[str, Any] = dict(obj=obj, lq=lq, rows=rows, next_url=next_url, views=views_for(obj, mine), params=keep,
               count_qs=urlencode(keep), ops=OPS, filterable=filterable,
               can_edit=web.ctx.actor.is_system or web.ctx.actor.access.can(obj.api_name, "edit"),
               can_delete=web.ctx.actor.is_system or web.ctx.actor.access.can(obj.api_name, "delete"),
               editable_cols={f.api_name for f in lq.columns if editable(web.ctx, obj, f)},
               mass_fields=[f for f in obj.fields if editable(web.ctx, obj, f) and f.type in
                            ("picklist", "checkbox", "text", "number", "date", "currency")],
               kanban_fields=[f for f in obj.fields if f.type == "picklist" and readable(web.ctx, obj, f.api_name)],
               column_choices=column_choices(web.ctx, obj), max_columns=MAX_COLUMNS)
    if web.htmx and web.request.headers.get("hx-target") == "list-rows":
        return web.render("list_rows.html", **ctx)
    return web.render("list.html", **ctx)


def list_count(web: Web) -> Response:
    """The capped count: at most 2,000 ids are read, never a full scan (frappe PR#25348); exact on demand."""
    obj = get_object(web)
    lq = build_query(web.ctx, obj, web.params, user_views(web.ctx, obj))
    if web.params.get("exact") == "1":
        n = int(query(web.ctx, lq.exact_count_soql())["totalSize"])
        return HTMLResponse(f"{n:,} items")
    n = len(query(web.ctx, lq.count_soql(), batch_size=COUNT_CAP)["records"])
    if n >= COUNT_CAP:
        return web.render("count_capped.html", cap=COUNT_CAP, obj=obj, count_qs=urlencode(dict(web.params)))
    return HTMLResponse(f"{n:,} item{'s' if n != 1 else ''}")


def _field(web: Web, obj: ObjectDef, name: str) -> FieldDef:
    f = obj.find_field(name)
    if f is None or not readable(web.ctx, obj, f.api_name):
        raise KeelError("No such field.", code="NOT_FOUND")
    return f


def _one(web: Web, obj: ObjectDef, rid: str, f: FieldDef) -> dict[str, Any]:
    cols = ["Id", f.api_name] + ([f"{f.relationship_name}.Name"] if f.is_reference and f.relationship_name else [])
    recs = query(web.ctx, f"SELECT {', '.join(cols)} FROM {obj.api_name} WHERE Id = '{_safe_id(rid)}'")["records"]
    if not recs:
        raise KeelError("The record does not exist or is not visible.", code="NOT_FOUND")
    return dict(recs[0])


def _safe_id(rid: str) -> str:
    if not rid.isalnum() or len(rid) not in (15, 18):
        raise KeelError("Malformed id.", code="NOT_FOUND")
    return rid


def cell_edit(web: Web) -> Response:
    obj = get_object(web)
    f = _field(web, obj, str(web.path["field"]))
    rid = _safe_id(str(web.path["id"]))
    rec = _one(web, obj, rid, f)
    if web.request.method == "GET":
        if not editable(web.ctx, obj, f):
            raise KeelError("You cannot edit this field.", code="INSUFFICIENT_ACCESS")
        return web.render("cell_edit.html", obj=obj, f=f, rec=rec, value=rec.get(f.api_name), error="")
    raw = web.form.get("value", "")
    value: Any = (raw == "on" or raw == "true") if f.type == "checkbox" else (raw if raw != "" else None)
    results = _save(web, obj, [{"Id": rid, f.api_name: value}])
    if results[0].errors:
        return web.render("cell_edit.html", obj=obj, f=f, rec=rec, value=raw, status=422,
                          error="; ".join(e.message for e in results[0].errors))
    rec = _one(web, obj, rid, f)
    text, link = cell_value(rec, f)
    return web.render("cell.html", obj=obj, f=f, rec=rec, text=text, link=link, can_edit=True)


def _save(web: Web, obj: ObjectDef, drafts: list[dict[str, Any]]) -> list[RowResult]:
    try:
        return save_many(web.ctx, obj.api_name, drafts, all_or_none=False)
    except BatchError as e:
        return e.results


def mass_action(web: Web) -> Response:
    """Acts on exactly the ids the user ticked (OpenCATS#655 added ALL candidates instead of the selection)."""
    obj = get_object(web)
    ids = [_safe_id(i) for i in web.multi.get("ids", [])]
    action = str(web.form.get("action", ""))
    if not ids:
        raise KeelError("Select at least one record first.", code="INVALID_FIELD")
    if action == "delete":
        try:
            results = delete_many(web.ctx, obj.api_name, ids, all_or_none=False)
        except BatchError as e:
            results = e.results
    elif action == "update":
        f = _field(web, obj, str(web.form.get("field", "")))
        raw = str(web.form.get("mass_value", ""))
        value: Any = raw.lower() in ("true", "on", "1", "yes") if f.type == "checkbox" else (raw or None)
        results = _save(web, obj, [{"Id": i, f.api_name: value} for i in ids])
    else:
        raise KeelError("Unknown action.", code="INVALID_FIELD")
    ok = sum(1 for r in results if r.success)
    failures = [(ids[r.index], e.message) for r in results for e in r.errors]
    return web.render("mass_result.html", obj=obj, ok=ok, failures=failures, action=action)


def export_list(web: Web) -> Response:
    """The list as CSV: same filters, same columns the user can read, formula triggers neutralised."""
    obj = get_object(web)
    if not web.ctx.actor.is_system and not web.ctx.actor.access.can(obj.api_name, "read"):
        raise KeelError("No access.", code="INSUFFICIENT_ACCESS")
    lq = build_query(web.ctx, obj, web.params, user_views(web.ctx, obj))
    soql = lq.page_soql(None, limit=50_000_000).rsplit(" LIMIT ", 1)[0]
    names = ["Id"] + [f.api_name for f in lq.columns]
    ctx = web.ctx

    def rows() -> Iterator[str]:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(names)
        n = 0
        for rec in query_all_records(ctx, soql, surface="export"):
            w.writerow([csv_cell(rec.get(c)) for c in names])
            n += 1
            if buf.tell() > 64_000:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()
        audit = ctx.extras.get("audit")
        if audit is not None:
            audit(ctx, "export", obj.api_name, n)

    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{obj.api_name}.csv"'})


# -- kanban -------------------------------------------------------------------------------------------------

def kanban(web: Web) -> Response:
    obj = get_object(web)
    choices = [f for f in obj.fields if f.type == "picklist" and readable(web.ctx, obj, f.api_name)]
    if not choices:
        raise KeelError(f"{obj.label} has no picklist to group a board by.", code="INVALID_FIELD")
    f = next((c for c in choices if c.api_name == web.params.get("field")), choices[0])
    compact = [obj.get_field(c) for c in (obj.extra.get("compact_fields") or [])
               if obj.find_field(c) and c != f.api_name and readable(web.ctx, obj, c)]
    names = ", ".join(dict.fromkeys(["Id", "Name", f.api_name, *[c.api_name for c in compact],
                                     *[r for c in compact if (r := relation_select(c, web.ctx))]]))
    recs = query(web.ctx, f"SELECT {names} FROM {obj.api_name} ORDER BY {f.api_name}, Name LIMIT 1000",
                 batch_size=1000)["records"]
    columns: dict[str | None, list[dict[str, Any]]] = {v.value: [] for v in f.values if v.active}
    for r in recs:
        columns.setdefault(r.get(f.api_name), []).append(r)
    lanes = [(k, f.picklist_value(k).label if k and f.picklist_value(k) else (k or "None"), v)  # type: ignore[union-attr]
             for k, v in columns.items()]
    cards = {r["Id"]: [(c, cell_value(r, c)[0]) for c in compact] for r in recs}
    return web.render("kanban.html", obj=obj, f=f, choices=choices, lanes=lanes, cards=cards,
                      can_move=editable(web.ctx, obj, f))


def kanban_move(web: Web) -> Response:
    """One drag = one ordinary update. A refusal returns 422 and the message; the browser puts the card back."""
    obj = get_object(web)
    f = _field(web, obj, str(web.form.get("field", "")))
    rid = _safe_id(str(web.form.get("id", "")))
    value = str(web.form.get("value", "")) or None
    results = _save(web, obj, [{"Id": rid, f.api_name: value}])
    if results[0].errors:
        msg = "; ".join(e.message for e in results[0].errors)
        return HTMLResponse(msg, status_code=422)
    return HTMLResponse("Moved.", status_code=200)
