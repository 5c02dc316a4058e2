"""Report and dashboard definitions that arrive with a package (``keel apply PATH``), kept for the web app.

``apply_package`` calls ``deploy_report_definitions`` after the metadata and automation: it gathers the package's
``app.yaml`` ``reports:``/``dashboard:``/``dashboards:`` and its ``reports/*.yaml`` and ``dashboards/*.yaml`` into
one document per package, stored as is. The web app parses and checks them (docs/web.md, "Reports and dashboards
in YAML"), so a report format change never needs a change here. A definition carries no access: reports run as
the viewing user.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from keel.context import Context
from keel.yamlio import load_yaml

meta = sa.MetaData()
package_reports = sa.Table(
    "keel_package_reports", meta,
    sa.Column("package", sa.String(80), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),  # {"label", "reports": [...], "dashboards": [...], "dashboard": [...]}
)


def package_document(path: str | Path) -> tuple[str, dict[str, Any]] | None:
    """(package name, its reports and dashboards) or None when the package has none."""
    path = Path(path)
    manifest = path / "app.yaml"
    data: dict[str, Any] = (load_yaml(manifest.read_text()) or {}) if manifest.is_file() else {}
    name = str(data.get("name") or path.resolve().name)
    doc = {"label": str(data.get("label") or name),
           "reports": list(data.get("reports") or [])
           + [load_yaml(p.read_text()) for p in sorted((path / "reports").glob("*.yaml"))],
           "dashboards": list(data.get("dashboards") or [])
           + [load_yaml(p.read_text()) for p in sorted((path / "dashboards").glob("*.yaml"))],
           "dashboard": list(data.get("dashboard") or [])}
    if not doc["reports"] and not doc["dashboards"]:
        return None
    return name, doc


def deploy_report_definitions(ctx: Context, path: str | Path) -> int:
    """Store (replace) the package's report and dashboard definitions; returns how many reports it has."""
    found = package_document(path)
    if found is None:
        return 0
    name, doc = found
    with ctx.db.transaction() as conn:
        meta.create_all(conn, checkfirst=True)
        conn.execute(sa.delete(package_reports).where(package_reports.c.package == name))
        conn.execute(sa.insert(package_reports).values(package=name, body=json.dumps(doc, default=str)))
    return len(doc["reports"])


def deployed_report_definitions(ctx: Context) -> dict[str, dict[str, Any]]:
    """Every deployed package's document, by package name."""
    with ctx.db.read() as conn:
        if not sa.inspect(conn).has_table(package_reports.name):
            return {}
        rows = conn.execute(sa.select(package_reports).order_by(package_reports.c.package)).all()
    return {str(r[0]): json.loads(r[1]) for r in rows}
