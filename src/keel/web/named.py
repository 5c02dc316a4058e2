"""Named reports and dashboards in the UI: run a package or saved report, save one from the builder, and show a
package or saved dashboard (``web/dashboard_builder``) with a short-lived per-user cache.

Dashboard cache: a dashboard over a million rows costs seconds of aggregate SQL, and people reload dashboards all
day. Component results are cached per (report, the viewer's security key, schema version) for ``CACHE_SECONDS``:
the security key is the user's (user, sharing version) pair, so two users never share an entry and a change of the
user's permissions or of sharing misses the cache at once; "Refresh" (``?refresh=1``) recomputes. The cache lives
on the app's state (one per web app, bounded), never in a module global.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.responses import RedirectResponse, Response

from keel.errors import KeelError
from keel.services.query import query
from keel.services.report_summaries import summarise
from keel.web.base import Web, display, nav_objects, require
from keel.web.definitions import (
    PARAM_KEYS,
    Catalog,
    Component,
    DashboardDef,
    ReportDef,
    save_report,
    saved_for,
    with_deployed,
)
from keel.web.reports import run_report
from keel.web.svg import chart, stacked_bar

CACHE_SECONDS = 60.0
CACHE_ENTRIES = 2000


@dataclass
class Col:
    label: str
    api_name: str


@dataclass
class ResultCache:
    entries: OrderedDict[tuple[Any, ...], tuple[float, dict[str, Any]]] = field(default_factory=OrderedDict)

    def get(self, key: tuple[Any, ...], now: float) -> dict[str, Any] | None:
        hit = self.entries.get(key)
        if hit is None or now - hit[0] > CACHE_SECONDS:
            return None
        return hit[1]

    def put(self, key: tuple[Any, ...], now: float, value: dict[str, Any]) -> None:
        self.entries[key] = (now, value)
        self.entries.move_to_end(key)
        while len(self.entries) > CACHE_ENTRIES:
            self.entries.popitem(last=False)


def cache_key(web: Web, dashboard: str, component: str) -> tuple[Any, ...]:
    """(dashboard, component, the viewer's security key, schema version). The security key is (user, access
    version), the key the SOQL plan cache uses; an actor without one gets a key no other request shares."""
    actor = web.ctx.actor
    key_of = getattr(actor.access, "security_key", None)
    who: tuple[Any, ...] = ("system",) if actor.is_system else (
        tuple(key_of) if key_of is not None else (actor.user_id, actor.session_id, time.time()))
    return (dashboard, component, who, web.schema().version)


def catalog_of(web: Web) -> Catalog:
    return with_deployed(web.request.app.state.catalog, web.ctx)


def all_reports(web: Web) -> dict[str, ReportDef]:
    return {**catalog_of(web).reports, **saved_for(web.ctx)}


def _flat(v: Any) -> Any:
    return v if not isinstance(v, dict) else next((x for k, x in v.items() if k != "attributes"), None)


def run_soql_report(web: Web, rdef: ReportDef) -> dict[str, Any]:
    """A package's SOQL report, run as the viewer. Leading text columns are groupings, the first numeric column
    after them is the measure; two groupings chart as a stacked bar."""
    started = time.perf_counter()
    recs, totals = summarise(rdef.summaries, query(web.ctx, str(rdef.soql), surface="report")["records"])
    keys = [k for k in (recs[0] if recs else {}) if k != "attributes"]
    rows = [[_flat(r.get(k)) for k in keys] for r in recs]
    labels = 0
    for i in range(len(keys)):
        if any(isinstance(row[i], int | float) and not isinstance(row[i], bool) for row in rows):
            break
        labels += 1
    svg = None
    if rdef.chart and rdef.chart != "none" and 0 < labels < len(keys) and rows:
        if labels >= 2 and rdef.chart in ("bar", "stacked_bar"):
            order = list(dict.fromkeys(str(r[0]) for r in rows))
            series = list(dict.fromkeys(str(r[1]) for r in rows))
            matrix: dict[str, dict[str, float]] = {}
            for r in rows:
                cell = matrix.setdefault(str(r[0]), {})
                cell[str(r[1])] = cell.get(str(r[1]), 0.0) + float(r[labels] or 0)
            svg = stacked_bar(rdef.label, order, series, matrix)
        else:
            sums: dict[str, float] = {}
            for r in rows:
                sums[str(r[0])] = sums.get(str(r[0]), 0.0) + float(r[labels] or 0)
            svg = chart(rdef.chart, rdef.label, list(sums.items()))
    labels_of = {sm.name: sm.label for sm in rdef.summaries}
    cols = [Col(labels_of.get(k) or k.replace("__c", "").replace("_", " "), k) for k in keys]
    total_line = [display(totals[k]) if k in totals else ("Total" if i == 0 else "") for i, k in enumerate(keys)]
    return {"tabular": True, "columns": cols, "records": [({}, [(display(v), None) for v in row]) for row in rows],
            "title": rdef.label, "label": "Rows", "total": float(len(rows)), "svg": svg, "groups": [], "rows": [],
            "cols": [], "matrix": {}, "subtotals": {}, "soql": rdef.soql, "agg": "COUNT",
            "ms": (time.perf_counter() - started) * 1000, "capped": False, "obj": None,
            "summary_total": total_line if totals and rows else None}


def run_named(web: Web, rdef: ReportDef, part: Component | None = None) -> dict[str, Any]:
    """A named report as the viewer; a dashboard component may draw it as another chart (``metric``: no chart,
    the total alone) under its own title."""
    chart = "none" if part and part.chart == "metric" else (part.chart if part and part.chart else None)
    title = part.title if part and part.title else None
    if rdef.soql:
        return run_soql_report(web, replace(rdef, chart=chart or rdef.chart, label=title or rdef.label))
    obj = web.schema().find_object(str(rdef.params.get("obj", "")))
    if obj is None:
        raise KeelError(f"Report {rdef.name} is about an object that does not exist.", code="NOT_FOUND")
    require(web.ctx, obj, "read")
    params = {**rdef.params, **({"chart": chart} if chart else {}), **({"title": title} if title else {})}
    result = run_report(web, obj, params)
    result["title"] = title or (rdef.label if rdef.source == "saved" or not result.get("svg") else result["title"])
    return result


def named_report(web: Web) -> Response:
    """``/reports/r/{name}``."""
    rdef = all_reports(web).get(str(web.path["name"]))
    if rdef is None:
        raise KeelError("No such report, or it is private to another user.", code="NOT_FOUND")
    result = run_named(web, rdef)
    return web.render("named_report.html", rdef=rdef, result=result, params=dict(rdef.params))


def save(web: Web) -> Response:
    """``POST /reports/save``: the builder's current parameters under a name (checked again on every run)."""
    params = {k: str(web.form.get(k, "")) for k in PARAM_KEYS}
    obj = web.schema().find_object(params["obj"])
    if obj is None or obj not in nav_objects(web.ctx):
        raise KeelError("Choose an object you can read.", code="INVALID_FIELD")
    run_report(web, obj, params)  # refuse to save what would not run for its author
    name = str(web.form.get("name", "")).strip()
    save_report(web.ctx, name, str(web.form.get("label", "")).strip(), params,
                str(web.form.get("shared", "")) in ("on", "true", "1"))
    return RedirectResponse(f"/reports/r/{name}", status_code=303)


def dashboards_index(web: Web) -> list[DashboardDef]:
    """Package dashboards, then the viewer's own and shared saved ones."""
    from keel.web.dashboard_builder import saved_dashboards_for

    return list(catalog_of(web).dashboards.values()) + list(saved_dashboards_for(web.ctx).values())


@dataclass
class Tile:
    part: Component
    label: str
    result: dict[str, Any] | None
    error: str | None
    at: float

    @property
    def metric(self) -> bool:
        return self.part.chart == "metric" or (self.result is not None and not self.result.get("svg"))


def find_dashboard(web: Web, name: str) -> DashboardDef:
    from keel.web.dashboard_builder import saved_dashboards_for

    dash = catalog_of(web).dashboards.get(name) or saved_dashboards_for(web.ctx).get(name)
    if dash is None:
        raise KeelError("No such dashboard, or it is private to another user.", code="NOT_FOUND")
    return dash


def named_dashboard(web: Web) -> Response:
    """``/dashboards/{name}``: each component as the viewer, cached briefly (see the module docstring). A component
    whose report the viewer cannot list or run becomes an error tile; the others still show."""
    dash = find_dashboard(web, str(web.path["name"]))
    reports = all_reports(web)
    started = time.perf_counter()
    cache: ResultCache = web.request.app.state.dashboard_cache
    refresh = web.params.get("refresh") == "1"
    tiles: list[Tile] = []
    hits = 0
    for part in dash.parts():
        rdef = reports.get(part.report)
        label = part.title or (rdef.label if rdef else part.report)
        now = time.time()
        if rdef is None:
            tiles.append(Tile(part, label, None, "This report does not exist or is private to another user.", now))
            continue
        # the component's whole definition is in the key, so an edited dashboard never shows a stale tile
        key = cache_key(web, f"{dash.source}:{dash.name}", f"{part.report}|{part.chart}|{part.title}")
        res = None if refresh else cache.get(key, now)
        if res is not None:
            hits += 1
            tiles.append(Tile(part, label, res, None, cache.entries[key][0]))
            continue
        try:
            res = run_named(web, rdef, part)
        except KeelError as e:
            tiles.append(Tile(part, label, None, e.message, now))
            continue
        cache.put(key, now, res)
        tiles.append(Tile(part, label, res, None, now))
    oldest = min((t.at for t in tiles), default=time.time())
    return web.render("dashboard_named.html", dash=dash, tiles=tiles, hits=hits,
                      editable=dash.source == "saved" and dash.owner_id == web.ctx.actor.user_id,
                      ms=(time.perf_counter() - started) * 1000, as_of=time.strftime("%H:%M:%S", time.gmtime(oldest)))
