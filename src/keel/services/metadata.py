"""Metadata deploys: plan and apply a package directory, the same path for apps and administrators."""

from __future__ import annotations

from pathlib import Path

from keel.context import Context
from keel.errors import MetadataError
from keel.formula import FormulaError, check_object
from keel.metadata.apply import apply_plan, data_problems, ensure_initialised
from keel.metadata.plan import Plan, plan
from keel.metadata.store import load_snapshot
from keel.services.report_indexes import load_package_objects
from keel.yamlio import load_yaml


def _deletions(path: Path) -> list[str]:
    manifest = path / "package.yaml"
    if not manifest.is_file():
        return []
    doc = load_yaml(manifest.read_text(encoding="utf-8")) or {}
    return [str(x) for x in doc.get("delete_objects") or []]


def check_formulas(p: Plan) -> None:
    """Type-check every formula of every object the plan touches (formula fields, defaults, validation rules,
    roll-ups) and refuse formula cycles, before anything is applied."""
    touched = {op.object.lower() for op in p.ops}
    for obj in p.after:
        if obj.key in touched:
            try:
                check_object(obj, p.after)
            except FormulaError as e:
                raise MetadataError(f"object {obj.api_name!r}: {e.message}") from None


def plan_package(ctx: Context, path: str | Path) -> tuple[Plan, list[str]]:
    path = Path(path)
    ensure_initialised(ctx.db)
    with ctx.db.read() as conn:
        before = load_snapshot(conn)
        p = plan(before, load_package_objects(path), delete=_deletions(path))
        check_formulas(p)
        return p, data_problems(conn, p)


def apply_package(ctx: Context, path: str | Path) -> Plan:
    path = Path(path)
    ensure_initialised(ctx.db)
    with ctx.db.read() as conn:
        before = load_snapshot(conn)
    p = plan(before, load_package_objects(path), delete=_deletions(path))
    check_formulas(p)
    from keel.services.recordtypes import sync_record_types

    apply_plan(ctx.db, p, ctx.metadata, then=lambda conn: sync_record_types(ctx, conn))
    from keel.services.automation import deploy_automation

    deploy_automation(ctx, path)  # flows/*.yaml and approvals/*.yaml, checked against the applied schema
    from keel.services.package_reports import deploy_report_definitions

    deploy_report_definitions(ctx, path)  # reports and dashboards, for the web app (docs/web.md)
    return p
