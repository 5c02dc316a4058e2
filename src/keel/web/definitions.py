"""Named reports and dashboards: from app packages (YAML) and saved from the report builder.

Where they come from (docs/web.md, "Reports and dashboards in YAML", is the contract):
- each app package under ``keel/apps/*/``: the ``reports:`` list and ``dashboard:``/``dashboards:`` of
  ``app.yaml``, and any ``reports/*.yaml`` / ``dashboards/*.yaml`` files (one definition per file);
- the builder's "Save report", stored in ``keel_web_report`` (one row per name; private to its owner unless shared);
- the dashboard builder's "Save dashboard", stored the same way in ``keel_web_dashboard`` (``web/dashboard_builder``).

A definition never carries access: every report runs as the viewing user through SOQL, so a package or a colleague
cannot widen what anyone sees. Package reports are named ``<app>.<name>``; saved ones ``<name>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from keel.context import Context
from keel.errors import KeelError
from keel.services.package_reports import deployed_report_definitions, package_document
from keel.services.report_summaries import Summary, parse_summaries
from keel.yamlio import load_yaml

APPS_DIR = Path(__file__).resolve().parents[1] / "apps"
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
PARAM_KEYS = ("obj", "type", "g1", "g2", "g3", "agg", "field", "chart", "ff", "fo", "fv", "cols",
              "ff2", "fo2", "fv2", "ff3", "fo3", "fv3")

meta = sa.MetaData()
saved_reports = sa.Table(
    "keel_web_report", meta,
    sa.Column("name", sa.String(80), primary_key=True),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("owner_id", sa.BigInteger, nullable=False),
    sa.Column("shared", sa.Boolean, nullable=False, default=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("updated", sa.DateTime, nullable=False),
)

saved_dashboards = sa.Table(
    "keel_web_dashboard", meta,
    sa.Column("name", sa.String(80), primary_key=True),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("owner_id", sa.BigInteger, nullable=False),
    sa.Column("shared", sa.Boolean, nullable=False, default=False),
    sa.Column("body", sa.Text, nullable=False),  # {"components": [{"report", "chart", "title"}, ...]} in order
    sa.Column("updated", sa.DateTime, nullable=False),
)

saved_views = sa.Table(
    "keel_web_list_view", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("object", sa.String(80), nullable=False),
    sa.Column("owner_id", sa.BigInteger, nullable=False),
    sa.Column("label", sa.String(120), nullable=False),
    sa.Column("visibility", sa.String(10), nullable=False),  # private | shared
    sa.Column("body", sa.Text, nullable=False),  # columns, filters, sort, desc
    sa.Index("ix_keel_web_list_view", "object", "owner_id"),
)


@dataclass(frozen=True)
class ReportDef:
    name: str
    label: str
    params: Mapping[str, str] = field(default_factory=dict)  # builder parameters (structured reports)
    soql: str | None = None  # a raw SOQL report (the apps' format), run as the viewing user
    chart: str | None = None
    source: str = "package"
    owner_id: int | None = None
    summaries: tuple[Summary, ...] = ()  # summary formulas over a SOQL report's rows (services/report_summaries.py)


@dataclass(frozen=True)
class Component:
    """One tile: a report, optionally drawn as another chart (or ``metric``, its total) under another title."""

    report: str
    chart: str = ""
    title: str = ""


@dataclass(frozen=True)
class DashboardDef:
    name: str
    label: str
    reports: tuple[str, ...]
    components: tuple[Component, ...] = ()  # the builder's tiles; a package dashboard has only ``reports``
    source: str = "package"
    owner_id: int | None = None
    shared: bool = True

    def parts(self) -> tuple[Component, ...]:
        return self.components or tuple(Component(r) for r in self.reports)


@dataclass
class Catalog:
    """Package definitions, read once when the web app starts (packages change with a deploy, not a click)."""

    reports: dict[str, ReportDef] = field(default_factory=dict)
    dashboards: dict[str, DashboardDef] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # a bad package definition is reported, never fatal


def report_from_yaml(raw: Mapping[str, Any], prefix: str = "", source: str = "package") -> ReportDef:
    name = str(raw.get("report") or raw.get("name") or "")
    if not NAME.match(name):
        raise KeelError(f"Report name {name!r} must be letters, digits and underscores.", code="INVALID_FIELD")
    label = str(raw.get("label") or name)
    chart = str(raw["chart"]) if raw.get("chart") else None
    if raw.get("soql"):
        return ReportDef(prefix + name, label, {}, str(raw["soql"]), chart, source,
                         summaries=parse_summaries(raw.get("summaries")))
    groups = [str(g) for g in raw.get("groupings") or []][:3]
    params: dict[str, str] = {"obj": str(raw.get("object") or ""),
                              "type": str(raw.get("type") or ("tabular" if not groups else "summary")),
                              "agg": str(raw.get("aggregate") or "COUNT").upper(), "field": str(raw.get("field") or ""),
                              "chart": chart or ("bar" if groups else "none"),
                              "cols": ",".join(str(c) for c in raw.get("columns") or [])}
    for i, g in enumerate(groups):
        params[f"g{i + 1}"] = g
    # ``filter:`` (one) or ``filters:`` (up to three, ANDed), as the builder's ff/fo/fv, ff2/… and ff3/…
    flts = ([raw["filter"]] if raw.get("filter") else []) + list(raw.get("filters") or [])
    for flt, suffix in zip(flts, ("", "2", "3"), strict=False):
        params.update({f"ff{suffix}": str(flt.get("field", "")), f"fo{suffix}": str(flt.get("op", "=")),
                       f"fv{suffix}": str(flt.get("value", ""))})
    return ReportDef(prefix + name, label, params, None, chart, source)


def load_package(app_dir: Path, catalog: Catalog) -> None:
    found = package_document(app_dir)
    if found is not None:
        load_document(found[0], found[1], catalog)


def load_document(app: str, data: Mapping[str, Any], catalog: Catalog) -> None:
    """One package's reports and dashboards (``services.package_reports.package_document``'s shape)."""
    for raw in data.get("reports") or []:
        r = report_from_yaml(raw, f"{app}.")
        catalog.reports[r.name] = r
    dashboards = list(data.get("dashboards") or [])
    if data.get("dashboard"):
        dashboards.insert(0, {"name": app, "label": str(data.get("label") or app), "components": data["dashboard"]})
    for raw in dashboards:
        name = str(raw.get("dashboard") or raw.get("name") or "")
        comps = [str(c.get("report") if isinstance(c, Mapping) else c) for c in raw.get("components") or []]
        full = [c if "." in c else f"{app}.{c}" for c in comps]
        missing = [c for c in full if c not in catalog.reports]
        if missing:
            raise KeelError(f"Dashboard {name} names unknown reports: {', '.join(missing)}.", code="INVALID_FIELD")
        catalog.dashboards[f"{app}.{name}" if name != app else app] = DashboardDef(
            f"{app}.{name}" if name != app else app, str(raw.get("label") or name), tuple(full))


def load_catalog(apps_dir: Path = APPS_DIR) -> Catalog:
    catalog = Catalog()
    for d in sorted(p for p in apps_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        try:
            load_package(d, catalog)
        except (KeelError, yaml.YAMLError, AttributeError, TypeError) as e:
            catalog.errors.append(f"{d.name}: {getattr(e, 'message', e)}")
    return catalog


def with_deployed(base: Catalog, ctx: Context) -> Catalog:
    """The startup catalog plus packages deployed with ``keel apply`` (read per request: a deploy shows at once)."""
    deployed = deployed_report_definitions(ctx)
    if not deployed:
        return base
    out = Catalog(dict(base.reports), dict(base.dashboards), list(base.errors))
    for name, doc in deployed.items():
        try:
            load_document(name, doc, out)
        except (KeelError, AttributeError, TypeError) as e:
            out.errors.append(f"{name}: {getattr(e, 'message', e)}")
    return out


def load_launcher(apps_dir: Path = APPS_DIR) -> dict[str, tuple[str, ...]]:
    """The app launcher from the app packages: each app's label and its tabs, which are ``tabs:`` in
    ``app.yaml`` when given (ordered object API names), else the package's ``objects/`` then ``extends/`` files.
    Standard CRM objects keep a built-in "Sales" app. Apps whose objects are not installed show no tabs."""
    out: dict[str, tuple[str, ...]] = {}
    for d in sorted(p for p in apps_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        manifest = d / "app.yaml"
        try:
            data = (load_yaml(manifest.read_text()) or {}) if manifest.is_file() else {}
        except yaml.YAMLError:
            continue
        tabs = [str(t) for t in data.get("tabs") or []]
        if not tabs:
            tabs = [f.stem for sub in ("objects", "extends") for f in sorted((d / sub).glob("*.yaml"))]
        if tabs:
            out[str(data.get("label") or d.name.title())] = tuple(dict.fromkeys(tabs))
    out["Sales"] = ("Account", "Contact", "Lead", "Opportunity", "Case")
    return out


def install_tables(ctx: Context) -> None:
    with ctx.db.transaction() as conn:
        meta.create_all(conn, checkfirst=True)


def saved_for(ctx: Context) -> dict[str, ReportDef]:
    """The builder's saved reports this user may list: their own and shared ones."""
    me = ctx.actor.user_id
    with ctx.db.read() as conn:
        rows = conn.execute(sa.select(saved_reports).where(sa.or_(
            saved_reports.c.owner_id == me, saved_reports.c.shared == sa.true()))
            .order_by(saved_reports.c.label)).mappings().all()
    out = {}
    for r in rows:
        params = {k: str(v) for k, v in json.loads(r["params"]).items() if k in PARAM_KEYS}
        out[str(r["name"])] = ReportDef(str(r["name"]), str(r["label"]), params, None, params.get("chart"), "saved",
                                        int(r["owner_id"]))
    return out


def save_report(ctx: Context, name: str, label: str, params: Mapping[str, str], shared: bool) -> None:
    """Create or overwrite a saved report; only its owner may overwrite it."""
    if not NAME.match(name):
        raise KeelError("A report name is letters, digits and underscores, starting with a letter.",
                        code="INVALID_FIELD")
    body = json.dumps({k: str(v) for k, v in params.items() if k in PARAM_KEYS and v})
    with ctx.db.transaction() as conn:
        row = conn.execute(sa.select(saved_reports.c.owner_id).where(saved_reports.c.name == name)).first()
        values = {"label": (label or name)[:200], "shared": shared, "params": body, "updated": ctx.clock()}
        if row is None:
            conn.execute(sa.insert(saved_reports).values(name=name, owner_id=ctx.actor.user_id, **values))
        elif int(row[0]) == ctx.actor.user_id:
            conn.execute(sa.update(saved_reports).where(saved_reports.c.name == name).values(**values))
        else:
            raise KeelError(f"Another user already saved a report named {name}.", code="DUPLICATE_VALUE")
