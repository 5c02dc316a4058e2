"""The dashboard builder: a named dashboard of saved or package reports, each drawn as a chart or a key metric,
private to its owner or shared, stored like saved reports (``keel_web_dashboard``, one row per name).

The builder is one plain form whose buttons (add, move up/down, remove, save) post the whole draft back: the page
is re-rendered with the change and nothing is stored until "Save dashboard", so it needs no script and an
abandoned draft leaves nothing behind. A dashboard stores report names, never results or access: every component
runs as whoever opens it (``named.named_dashboard``), so sharing a dashboard cannot widen what anyone sees.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import sqlalchemy as sa
from starlette.responses import RedirectResponse, Response

from keel.context import Context
from keel.errors import KeelError
from keel.web.base import Web
from keel.web.definitions import NAME, Component, DashboardDef, ReportDef, saved_dashboards, saved_reports
from keel.web.named import all_reports, catalog_of

KINDS = ("bar", "stacked_bar", "line", "pie", "donut", "funnel", "metric")
KIND_LABELS = {"bar": "Bar", "stacked_bar": "Stacked bar", "line": "Line", "pie": "Pie", "donut": "Donut",
               "funnel": "Funnel", "metric": "Key metric"}
MAX_COMPONENTS = 12
RESERVED = ("build",)  # path segments under /dashboards/ that are not dashboards


@dataclass
class Draft:
    name: str = ""
    label: str = ""
    shared: bool = False
    parts: list[Component] = field(default_factory=list)


def _row_to_def(r: sa.RowMapping) -> DashboardDef:
    body = json.loads(r["body"])
    parts = tuple(Component(str(c.get("report", "")), str(c.get("chart") or ""), str(c.get("title") or ""))
                  for c in body.get("components") or [])
    return DashboardDef(str(r["name"]), str(r["label"]), tuple(p.report for p in parts), parts, "saved",
                        int(r["owner_id"]), bool(r["shared"]))


def saved_dashboards_for(ctx: Context) -> dict[str, DashboardDef]:
    """The saved dashboards this user may open: their own and shared ones."""
    me = ctx.actor.user_id
    with ctx.db.read() as conn:
        rows = conn.execute(sa.select(saved_dashboards).where(sa.or_(
            saved_dashboards.c.owner_id == me, saved_dashboards.c.shared == sa.true()))
            .order_by(saved_dashboards.c.label)).mappings().all()
    return {str(r["name"]): _row_to_def(r) for r in rows}


def _draft_from_form(web: Web) -> Draft:
    f = web.form
    parts = [Component(str(f.get(f"report{i}", "")), str(f.get(f"chart{i}", "")),
                       str(f.get(f"title{i}", "")).strip()[:200])
             for i in range(MAX_COMPONENTS) if f.get(f"report{i}")]
    return Draft(str(f.get("name", "")).strip(), str(f.get("label", "")).strip()[:200],
                 str(f.get("shared", "")) in ("on", "true", "1"), parts)


def _check_part(part: Component, reports: dict[str, ReportDef]) -> None:
    if part.report not in reports:
        raise KeelError(f"{part.report or 'That'} is not a report you can use.", code="INVALID_FIELD")
    if part.chart and part.chart not in KINDS:
        raise KeelError(f"Unknown chart type {part.chart}.", code="INVALID_FIELD")


def _apply(web: Web, draft: Draft, op: str, reports: dict[str, ReportDef]) -> Draft:
    """One button of the builder, on the draft it posted."""
    verb, _, arg = op.partition(":")
    parts = list(draft.parts)
    i = int(arg) if arg.isdigit() else -1
    if verb == "add":
        if len(parts) >= MAX_COMPONENTS:
            raise KeelError(f"A dashboard has at most {MAX_COMPONENTS} components.", code="INVALID_FIELD")
        new = Component(str(web.form.get("new_report", "")), str(web.form.get("new_chart", "")),
                        str(web.form.get("new_title", "")).strip()[:200])
        _check_part(new, reports)
        parts.append(new)
    elif verb in ("up", "down") and 0 <= i < len(parts):
        j = i - 1 if verb == "up" else i + 1
        if 0 <= j < len(parts):
            parts[i], parts[j] = parts[j], parts[i]
    elif verb == "remove" and 0 <= i < len(parts):
        del parts[i]
    draft.parts = parts
    return draft


def _save(web: Web, draft: Draft, reports: dict[str, ReportDef]) -> None:
    """Create or overwrite; only the owner overwrites. A shared dashboard may not show a private report: everyone
    else would see an error tile where its owner sees numbers."""
    if not NAME.match(draft.name) or draft.name in RESERVED:
        raise KeelError("A dashboard name is letters, digits and underscores, starting with a letter.",
                        code="INVALID_FIELD")
    if draft.name in catalog_of(web).dashboards:
        raise KeelError(f"A package dashboard is already named {draft.name}.", code="DUPLICATE_VALUE")
    if not draft.parts:
        raise KeelError("Add at least one component.", code="REQUIRED_FIELD_MISSING")
    for part in draft.parts:
        _check_part(part, reports)
        rdef = reports[part.report]
        if draft.shared and rdef.source == "saved" and rdef.owner_id == web.ctx.actor.user_id \
                and not _report_shared(web.ctx, rdef.name):
            raise KeelError(f"Share the report {rdef.label} before sharing a dashboard that shows it.",
                            code="INVALID_FIELD")
    body = json.dumps({"components": [{"report": p.report, "chart": p.chart, "title": p.title}
                                      for p in draft.parts]})
    values = {"label": draft.label or draft.name, "shared": draft.shared, "body": body, "updated": web.ctx.clock()}
    with web.ctx.db.transaction() as conn:
        row = conn.execute(sa.select(saved_dashboards.c.owner_id)
                           .where(saved_dashboards.c.name == draft.name)).first()
        if row is None:
            conn.execute(sa.insert(saved_dashboards).values(name=draft.name, owner_id=web.ctx.actor.user_id,
                                                            **values))
        elif int(row[0]) == web.ctx.actor.user_id:
            conn.execute(sa.update(saved_dashboards).where(saved_dashboards.c.name == draft.name).values(**values))
        else:
            raise KeelError(f"Another user already saved a dashboard named {draft.name}.", code="DUPLICATE_VALUE")


def _report_shared(ctx: Context, name: str) -> bool:
    with ctx.db.read() as conn:
        return bool(conn.execute(sa.select(saved_reports.c.shared).where(saved_reports.c.name == name)).scalar())


def _own(web: Web, name: str) -> DashboardDef:
    dash = saved_dashboards_for(web.ctx).get(name)
    if dash is None or dash.owner_id != web.ctx.actor.user_id:
        raise KeelError("You can only edit your own dashboards.", code="NOT_FOUND")
    return dash


def builder(web: Web) -> Response:
    """``GET/POST /dashboards/build``: a new draft, ``?from=<name>`` to edit one's own, or a button's change."""
    reports = all_reports(web)
    if web.request.method == "GET":
        draft = Draft()
        if web.params.get("from"):
            dash = _own(web, str(web.params["from"]))
            draft = Draft(dash.name, dash.label, dash.shared, list(dash.parts()))
        return _render(web, draft, reports, None)
    draft = _draft_from_form(web)
    op = str(web.form.get("op", ""))
    try:
        if op == "delete":
            _own(web, draft.name)
            with web.ctx.db.transaction() as conn:
                conn.execute(sa.delete(saved_dashboards).where(
                    saved_dashboards.c.name == draft.name, saved_dashboards.c.owner_id == web.ctx.actor.user_id))
            return RedirectResponse("/dashboards", status_code=303)
        if op == "save":
            _save(web, draft, reports)
            return RedirectResponse(f"/dashboards/{draft.name}", status_code=303)
        draft = _apply(web, draft, op, reports)
    except KeelError as e:
        return _render(web, draft, reports, e.message, status=400)
    return _render(web, draft, reports, None)


def _render(web: Web, draft: Draft, reports: dict[str, ReportDef], error: str | None, status: int = 200) -> Response:
    choices = sorted(reports.values(), key=lambda r: (r.source != "saved", r.label.lower()))
    return web.render("dashboard_build.html", status=status, draft=draft, choices=choices, kinds=KIND_LABELS,
                      error=error, max_components=MAX_COMPONENTS)
