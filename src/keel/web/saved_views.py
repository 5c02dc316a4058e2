"""List views users save for themselves (private) or for everyone (shared).

Package list views (``list_views`` in YAML) are shared by definition. A saved view stores the columns, filters and
sort of the list the user is looking at; it never stores access: it runs as whoever opens it, and a shared view
whose filter names a field the viewer cannot read is refused for them (``views.build_query``), so a colleague's
view cannot become a probe for hidden values.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from starlette.responses import RedirectResponse, Response

from keel.context import Context
from keel.errors import KeelError
from keel.metadata.model import FieldDef, ObjectDef
from keel.web.base import Web, readable
from keel.web.definitions import saved_views
from keel.web.views import OPS, ListView, build_query

MAX_COLUMNS = 10
NOT_COLUMNS = ("Id", "IsDeleted", "SystemModstamp")


def column_choices(ctx: Context, obj: ObjectDef) -> list[FieldDef]:
    """The fields a view's column picker offers: those this user can read (a picker listing hidden fields would
    reveal that they exist, and a saved column the viewer cannot read is dropped when the view runs anyway)."""
    return [f for f in obj.fields if f.api_name not in NOT_COLUMNS and f.type != "longtext"
            and readable(ctx, obj, f.api_name)]


def _picked_columns(web: Web, obj: ObjectDef) -> list[str] | None:
    """``c1``…``c10`` in order, blanks skipped and repeats kept once; None when the form has no picker. A field
    the user cannot read is refused, never silently left out."""
    if not any(f"c{i}" in web.form for i in range(1, MAX_COLUMNS + 1)):
        return None
    offered = {f.api_name for f in column_choices(web.ctx, obj)}
    picked: list[str] = []
    for i in range(1, MAX_COLUMNS + 1):
        name = str(web.form.get(f"c{i}", "")).strip()
        if not name:
            continue
        if name not in offered:
            raise KeelError(f"{name} is not a field you can show as a column.", code="INVALID_FIELD")
        if name not in picked:
            picked.append(name)
    if not picked:
        raise KeelError("Choose at least one column.", code="INVALID_FIELD")
    return picked


def user_views(ctx: Context, obj: ObjectDef) -> list[ListView]:
    me = ctx.actor.user_id
    with ctx.db.read() as conn:
        rows = conn.execute(sa.select(saved_views).where(
            saved_views.c.object == obj.api_name,
            sa.or_(saved_views.c.owner_id == me, saved_views.c.visibility == "shared"))
            .order_by(saved_views.c.label, saved_views.c.id)).mappings().all()
    out = []
    for r in rows:
        body = json.loads(r["body"])
        mine = int(r["owner_id"]) == me
        label = str(r["label"]) + ("" if mine else " (shared)") + (" (private)" if r["visibility"] == "private" else "")
        out.append(ListView(f"my_{r['id']}", label, [str(c) for c in body.get("columns") or []],
                            [dict(f) for f in body.get("filters") or []], str(body.get("sort") or "Name"),
                            bool(body.get("desc")), str(r["visibility"]), int(r["owner_id"])))
    return out


def save_view(web: Web, obj: ObjectDef) -> Response:
    """``POST /o/{obj}/views``: the list as it is now (base view, ad-hoc filter, name search, sort) with the
    columns chosen in the picker, in their order. With ``update`` the user's own current view is changed in place
    instead of a new one being added."""
    label = str(web.form.get("label", "")).strip()[:120]
    if not label:
        raise KeelError("Give the view a name.", code="REQUIRED_FIELD_MISSING")
    visibility = "shared" if str(web.form.get("visibility", "")) == "shared" else "private"
    params = {k: str(web.form.get(k, "")) for k in ("view", "q", "ff", "fo", "fv", "sort", "dir")}
    lq = build_query(web.ctx, obj, params, user_views(web.ctx, obj))  # validates every name as this user
    filters = list(lq.view.filters)
    if params["ff"] and params["fv"]:
        if params["fo"] not in OPS:
            raise KeelError("Unknown operator.", code="INVALID_FIELD")
        filters.append({"field": params["ff"], "op": params["fo"] or "=", "value": params["fv"]})
    if params["q"]:
        filters.append({"field": "Name", "op": "contains", "value": params["q"]})
    columns = _picked_columns(web, obj) or [f.api_name for f in lq.columns]
    body = {"columns": columns, "filters": filters, "sort": lq.sort.api_name, "desc": lq.desc}
    if str(web.form.get("update", "")) == "1":
        vid = params["view"].removeprefix("my_")
        if lq.view.owner_id != web.ctx.actor.user_id or not vid.isdigit():
            raise KeelError("You can only change your own views.", code="INSUFFICIENT_ACCESS")
        with web.ctx.db.transaction() as conn:
            conn.execute(sa.update(saved_views).where(
                saved_views.c.id == int(vid), saved_views.c.owner_id == web.ctx.actor.user_id).values(
                label=label, visibility=visibility, body=json.dumps(body)))
        return RedirectResponse(f"/o/{obj.api_name}?view=my_{vid}", status_code=303)
    with web.ctx.db.transaction() as conn:
        new_id = conn.execute(sa.insert(saved_views).values(
            object=obj.api_name, owner_id=web.ctx.actor.user_id, label=label, visibility=visibility,
            body=json.dumps(body))).inserted_primary_key
    assert new_id is not None
    return RedirectResponse(f"/o/{obj.api_name}?view=my_{new_id[0]}", status_code=303)


def delete_view(web: Web, obj: ObjectDef) -> Response:
    """``POST /o/{obj}/views/delete``: only the owner's own views."""
    name = str(web.form.get("view", ""))
    vid = name.removeprefix("my_")
    if not vid.isdigit():
        raise KeelError("No such view.", code="NOT_FOUND")
    with web.ctx.db.transaction() as conn:
        n = conn.execute(sa.delete(saved_views).where(saved_views.c.id == int(vid), saved_views.c.object ==
                                                      obj.api_name, saved_views.c.owner_id ==
                                                      web.ctx.actor.user_id)).rowcount
    if not n:
        raise KeelError("You can only delete your own views.", code="INSUFFICIENT_ACCESS")
    return RedirectResponse(f"/o/{obj.api_name}", status_code=303)
