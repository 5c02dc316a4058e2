"""Summary and matrix reports, and a dashboard of report charts.

A report is an aggregate SOQL statement (GROUP BY up to three fields, one aggregate) run as the viewing user, so
report columns obey field-level security and rows obey sharing exactly as lists do. The builder is the query
string: a report's URL is its saved definition.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from keel.errors import KeelError
from keel.metadata.model import FieldDef, ObjectDef
from keel.services.export import cell as csv_cell
from keel.services.query import query
from keel.web.base import Web, cell_value, display, nav_objects, readable, relation_select, require
from keel.web.svg import chart, stacked_bar
from keel.web.views import UNSORTABLE, condition, default_columns

AGGS = ("COUNT", "SUM", "AVG", "MIN", "MAX", "MEDIAN", "P90")
PERCENTILES = {"MEDIAN": "MEDIAN({})", "P90": "PERCENTILE({}, 0.9)"}  # SOQL's percentile aggregates (docs/soql.md)
CHARTS = ("bar", "stacked_bar", "pie", "donut", "line", "funnel", "none")
TYPES = ("summary", "matrix", "tabular")
TABULAR_LIMIT = 2000
GROUPABLE = ("picklist", "text", "checkbox", "date", "lookup", "master_detail", "email", "number")
NUMERIC = ("number", "currency", "percent")
GROUP_KEYS = ("g1", "g2", "g3")
FILTER_SUFFIXES = ("", "2", "3")


def _where(web: Web, obj: ObjectDef, params: Mapping[str, str]) -> str:
    """The builder's filters (``ff``/``fo``/``fv``, then ``ff2``… and ``ff3``…), ANDed: "open positions in
    Patrol opened in the last 90 days" is one report, not three. Each goes through the list views' ``condition``,
    so a relative date such as ``LAST_N_DAYS:90`` is a SOQL date literal and a field the user cannot read is
    refused by the compiler."""
    parts = [condition(web.schema(), obj, {"field": params[f"ff{s}"], "op": params.get(f"fo{s}") or "=",
                                           "value": params[f"fv{s}"]})
             for s in FILTER_SUFFIXES if params.get(f"ff{s}") and params.get(f"fv{s}")]
    return " WHERE " + " AND ".join(parts) if parts else ""


def _groupable(web: Web, obj: ObjectDef) -> list[FieldDef]:
    return [f for f in obj.fields if f.type in GROUPABLE and readable(web.ctx, obj, f.api_name)
            and f.api_name not in ("Id",)]


def run_tabular(web: Web, obj: ObjectDef, params: Mapping[str, str]) -> dict[str, Any]:
    """Rows, not groups: the chosen readable columns, filtered, first 2,000 by the first column."""
    names = [c for c in str(params.get("cols") or "").split(",") if c]
    cols = [obj.get_field(c) for c in names or default_columns(obj) if obj.find_field(c)
            and readable(web.ctx, obj, c) and obj.get_field(c).type not in ("longtext",)]
    if not cols:
        raise KeelError("Choose at least one column you can read.", code="INVALID_FIELD")
    select = ["Id"] + [c.api_name for c in cols] + [r for c in cols if (r := relation_select(c, web.ctx))]
    where = _where(web, obj, params)
    soql = (f"SELECT {', '.join(dict.fromkeys(select))} FROM {obj.api_name}{where} "
            f"ORDER BY {cols[0].api_name if cols[0].type not in UNSORTABLE else 'Id'} LIMIT {TABULAR_LIMIT}")
    started = time.perf_counter()
    recs = query(web.ctx, soql, surface="report")["records"]
    return {"obj": obj, "tabular": True, "columns": cols, "records": [(r, [cell_value(r, c) for c in cols])
                                                                        for r in recs],
            "title": f"{obj.plural_label}", "label": "Rows", "total": float(len(recs)), "svg": None, "groups": [],
            "rows": [], "cols": [], "matrix": {}, "subtotals": {}, "soql": soql, "agg": "COUNT",
            "ms": (time.perf_counter() - started) * 1000, "capped": len(recs) >= TABULAR_LIMIT}


def run_report(web: Web, obj: ObjectDef, params: Mapping[str, str]) -> dict[str, Any]:
    require(web.ctx, obj, "read")
    if params.get("type") == "tabular":
        return run_tabular(web, obj, params)
    names = [params.get(k) for k in GROUP_KEYS]
    groups = [obj.get_field(g) for g in names if g and obj.find_field(g)]
    for g in groups:
        if not readable(web.ctx, obj, g.api_name) or g.type not in GROUPABLE:
            raise KeelError(f"You cannot group by {g.label}.", code="INVALID_FIELD")
    if len({g.key for g in groups}) != len(groups):
        raise KeelError("Group by each field once.", code="INVALID_FIELD")
    agg = params.get("agg", "COUNT").upper()
    if agg not in AGGS:
        raise KeelError("Unknown aggregate.", code="INVALID_FIELD")
    measure: FieldDef | None = None
    if agg != "COUNT":
        m = obj.find_field(params.get("field", ""))
        if m is None or m.type not in NUMERIC or not readable(web.ctx, obj, m.api_name):
            raise KeelError("Choose a number field you can read to aggregate.", code="INVALID_FIELD")
        measure = m
    # An average of averages is wrong as soon as groups differ in size, so AVG is read as a sum and a count, from
    # which every row, subtotal and the grand total are divided out.
    if measure and agg == "AVG":
        expr = f"SUM({measure.api_name}) v, COUNT({measure.api_name}) n"
    elif measure and agg in PERCENTILES:
        return _run_percentile(web, obj, params, groups, agg, measure)
    else:
        expr = (f"{agg}({measure.api_name})" if measure else "COUNT(Id)") + " v"
    where = _where(web, obj, params)
    gsql = ", ".join(g.api_name for g in groups)
    soql = f"SELECT {gsql + ', ' if gsql else ''}{expr} FROM {obj.api_name}{where}"
    if groups:
        soql += f" GROUP BY {gsql} ORDER BY {gsql}"
    started = time.perf_counter()
    recs = query(web.ctx, soql, surface="report")["records"]
    elapsed = time.perf_counter() - started
    leaves = [(tuple(display(r.get(g.api_name), g) or "(blank)" for g in groups), _acc(agg, r)) for r in recs]
    return _result(obj, params, groups, agg, measure, soql, elapsed, leaves, _roll_up(agg, leaves, len(groups)))


def _run_percentile(web: Web, obj: ObjectDef, params: Mapping[str, str], groups: list[FieldDef], agg: str,
                    measure: FieldDef) -> dict[str, Any]:
    """A median or p90 cannot be merged from its groups' values, so the database computes every level: GROUP BY
    ROLLUP gives the rows, each subtotal and the grand total in one query, told apart by their GROUPING flags."""
    expr = PERCENTILES[agg].format(measure.api_name) + " v"
    gsql = ", ".join(g.api_name for g in groups)
    flags = "".join(f", GROUPING({g.api_name}) r{i}" for i, g in enumerate(groups))
    soql = f"SELECT {gsql + ', ' if gsql else ''}{expr}{flags} FROM {obj.api_name}{_where(web, obj, params)}"
    if groups:
        soql += f" GROUP BY ROLLUP({gsql}) ORDER BY {gsql}"
    started = time.perf_counter()
    recs = query(web.ctx, soql, surface="report")["records"]
    elapsed = time.perf_counter() - started
    levels: list[dict[tuple[str, ...], Acc]] = [{} for _ in range(len(groups) + 1)]
    for r in recs:
        depth = sum(1 for i in range(len(groups)) if not r.get(f"r{i}"))
        keys = tuple(display(r.get(g.api_name), g) or "(blank)" for g in groups[:depth])
        levels[depth][keys] = None if r.get("v") is None else float(r["v"])
    leaves = list(levels[-1].items())
    return _result(obj, params, groups, agg, measure, soql, elapsed, leaves, levels)


def _result(obj: ObjectDef, params: Mapping[str, str], groups: list[FieldDef], agg: str, measure: FieldDef | None,
            soql: str, elapsed: float, leaves: list[tuple[tuple[str, ...], Acc]],
            levels: list[dict[tuple[str, ...], Acc]]) -> dict[str, Any]:
    rows = [(list(k), _value(agg, a)) for k, a in leaves]
    subtotals = {(k[0] if k else "Total"): _value(agg, a) for k, a in levels[1].items()} if groups \
        else {"Total": _value(agg, levels[0].get((), None))}
    total = _value(agg, levels[0].get((), None))
    matrix: dict[str, dict[str, float]] = {}
    for k, a in (levels[2] if len(groups) >= 2 else {}).items():
        matrix.setdefault(k[0], {})[k[1]] = _value(agg, a)
    series = sorted({c for cells in matrix.values() for c in cells})
    cols = series if len(groups) == 2 else []  # two groupings show as a matrix; three as nested subtotals
    label = f"{agg.title()} of {measure.label}" if measure else "Record count"
    title = params.get("title") or (f"{label} by {groups[0].label}" if groups else label)
    kind = params.get("chart", "bar")
    svg = None
    if groups and kind == "stacked_bar" and len(groups) >= 2:
        svg = stacked_bar(f"{title} and {groups[1].label}", list(subtotals), series, matrix)
    elif groups and kind != "none":
        svg = chart(kind, title, list(subtotals.items()))
    return {"tabular": False, "obj": obj, "groups": groups, "rows": rows, "subtotals": subtotals, "total": total,
            "svg": svg, "label": label, "title": title, "cols": cols, "matrix": matrix, "soql": soql,
            "ms": elapsed * 1000, "agg": agg, "lines": _lines(agg, leaves, levels) if len(groups) == 3 else []}


Acc = float | tuple[float, float] | None  # AVG carries (sum, count) until it is displayed


def _acc(agg: str, rec: Mapping[str, Any]) -> Acc:
    v = rec.get("v")
    if agg == "AVG":
        return (float(v or 0), float(rec.get("n") or 0))
    return None if v is None else float(v)


def _merge(agg: str, a: Acc, b: Acc) -> Acc:
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, tuple) and isinstance(b, tuple):
        return (a[0] + b[0], a[1] + b[1])
    assert isinstance(a, float) and isinstance(b, float)
    return min(a, b) if agg == "MIN" else max(a, b) if agg == "MAX" else a + b


def _value(agg: str, a: Acc) -> float:
    if isinstance(a, tuple):
        return a[0] / a[1] if a[1] else 0.0
    return a or 0.0


def _roll_up(agg: str, leaves: list[tuple[tuple[str, ...], Acc]], depth: int) -> list[dict[tuple[str, ...], Acc]]:
    """Accumulators for every prefix of the grouping keys: level 0 is the grand total, level ``depth`` the rows."""
    levels: list[dict[tuple[str, ...], Acc]] = [{} for _ in range(depth + 1)]
    for keys, a in leaves:
        for n in range(depth + 1):
            prefix = keys[:n]
            levels[n][prefix] = _merge(agg, levels[n].get(prefix), a)
    return levels


def _lines(agg: str, leaves: list[tuple[tuple[str, ...], Acc]],
           levels: list[dict[tuple[str, ...], Acc]]) -> list[dict[str, Any]]:
    """Rows of a three-level summary in order, with a subtotal line closing each second- and first-level group."""
    out: list[dict[str, Any]] = []
    for i, (keys, a) in enumerate(leaves):
        out.append({"keys": list(keys), "value": _value(agg, a), "level": 0})
        after = leaves[i + 1][0] if i + 1 < len(leaves) else None
        for n in (2, 1):
            if after is None or after[:n] != keys[:n]:
                out.append({"keys": list(keys[:n]), "value": _value(agg, levels[n][keys[:n]]), "level": n})
    return out


def report_page(web: Web) -> Response:
    objs = nav_objects(web.ctx)
    name = web.params.get("obj")
    obj = next((o for o in objs if o.api_name == name), None)
    result = run_report(web, obj, web.params) if obj is not None and web.params.get("run") else None
    from keel.web.named import all_reports

    named = sorted(all_reports(web).values(), key=lambda r: (r.source != "saved", r.label))
    return web.render("report.html", objs=objs, obj=obj, result=result, params=dict(web.params), aggs=AGGS,
                      charts=CHARTS, types=TYPES, named=named, groupable=_groupable(web, obj) if obj else [],
                      numeric=[f for f in obj.fields if f.type in NUMERIC and readable(web.ctx, obj, f.api_name)]
                      if obj else [])


def report_xlsx(web: Web) -> Response:
    from openpyxl import Workbook  # type: ignore[import-untyped]

    obj = web.schema().find_object(web.params.get("obj", ""))
    if obj is None:
        raise KeelError("No such object.", code="NOT_FOUND")
    result = run_report(web, obj, web.params)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Report"
    ws.append([g.label for g in result["groups"]] + [result["label"]])
    for keys, v in result["rows"]:
        ws.append([_safe_cell(k) for k in keys] + [v])
    ws.append(["Total"] + [""] * max(0, len(result["groups"]) - 1) + [result["total"]])
    buf = io.BytesIO()
    wb.save(buf)
    return Response(buf.getvalue(), media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f'attachment; filename="{obj.api_name}-report.xlsx"'})


def report_csv(web: Web) -> Response:
    """The report as CSV: the same run as the page (as the user, readable fields only, the same filters), every
    text cell formula-neutralised as the list export does, so a hostile record name is inert in a spreadsheet."""
    obj = web.schema().find_object(web.params.get("obj", ""))
    if obj is None:
        raise KeelError("No such object.", code="NOT_FOUND")
    result = run_report(web, obj, web.params)
    buf = io.StringIO()
    w = csv.writer(buf)
    if result["tabular"]:
        cols: list[FieldDef] = result["columns"]
        w.writerow([c.label for c in cols])
        for rec, cells in result["records"]:
            w.writerow([csv_cell(text) if c.is_reference else csv_cell(rec.get(c.api_name))
                        for c, (text, _link) in zip(cols, cells, strict=True)])
    else:
        w.writerow([g.label for g in result["groups"]] + [result["label"]])
        for keys, v in result["rows"]:
            w.writerow([csv_cell(k) for k in keys] + [csv_cell(v)])
        w.writerow(["Total"] + [""] * max(0, len(result["groups"]) - 1) + [csv_cell(result["total"])])
    audit = web.ctx.extras.get("audit")
    if audit is not None:
        audit(web.ctx, "export", obj.api_name, len(result["records"] if result["tabular"] else result["rows"]))
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{obj.api_name}-report.csv"'})


def _safe_cell(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def dashboard(web: Web) -> Response:
    """Up to six components: a count by the first picklist of each object the user can read, run as the user;
    results are cached briefly per user (``named.ResultCache``), and Refresh (``?refresh=1``) reruns them."""
    from keel.web.named import cache_key, dashboards_index

    started = time.perf_counter()
    components: list[tuple[ObjectDef, FieldDef, dict[str, Any]]] = []
    kinds = ("bar", "donut", "funnel", "bar", "pie", "line")
    cache = web.request.app.state.dashboard_cache
    refresh, hits = web.params.get("refresh") == "1", 0
    oldest = time.time()
    for obj in nav_objects(web.ctx):
        pick = next((f for f in obj.fields if f.type == "picklist" and readable(web.ctx, obj, f.api_name)), None)
        if pick is None:
            continue
        kind = kinds[len(components) % len(kinds)]
        key = cache_key(web, "(default)", f"{obj.api_name}.{pick.api_name}")
        now = time.time()
        res = None if refresh else cache.get(key, now)
        if res is None:
            res = run_report(web, obj, {"g1": pick.api_name, "agg": "COUNT", "chart": kind})
            cache.put(key, now, res)
        else:
            hits += 1
            oldest = min(oldest, cache.entries[key][0])
        components.append((obj, pick, res))
        if len(components) == 6:
            break
    return web.render("dashboard.html", components=components, ms=(time.perf_counter() - started) * 1000,
                      named=dashboards_index(web), hits=hits, as_of=time.strftime("%H:%M:%S", time.gmtime(oldest)))
