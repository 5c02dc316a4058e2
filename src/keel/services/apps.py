"""Installing and upgrading the bundled apps (``src/keel/apps/<name>/``), which are nothing but metadata.

An app folder holds ``app.yaml`` (name, label, version, roles), ``objects/*.yaml`` (its own objects),
``extends/*.yaml`` (custom fields, validation rules, record types and list views it adds to standard objects
such as Account), ``permission_sets/*.yaml``, ``flows/*.yaml`` and ``approvals/*.yaml``, and an optional
``sample.py`` that makes sample data through the record lifecycle. Nothing here runs in the request path: once
installed, an app is rows of metadata that the platform interprets.

Install and upgrade are the same operation: the app is diffed against the database (``plan_app`` shows the
operations), then the schema change, the permission sets, the roles, the flows and the approval processes are
applied in ONE transaction, so an upgrade never half-applies.

Extensions exist because a package file for a standard object replaces that object's custom fields; several
apps add fields to Account, so each app's extension is merged with the Account the database already has.

Permission sets may write ``Obj.*: [read]`` or ``Obj.*: [edit]`` for "every field this app defines on Obj,
except sensitive ones" (computed fields are granted read). Sensitive fields must be granted by name, so a
wildcard can never expose an SSN.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from keel.context import SYSTEM_ACTOR, Context
from keel.errors import KeelError, MetadataError
from keel.metadata.apply import _lock_schema, data_problems, ensure_initialised, execute
from keel.metadata.model import ObjectDef, SchemaSnapshot
from keel.metadata.package import _rule, parse_field
from keel.metadata.plan import Plan, plan
from keel.metadata.recordtypes import with_record_types
from keel.metadata.store import current_version, load_snapshot
from keel.security.package import PermissionSetSpec, parse_permission_set
from keel.services.metadata import check_formulas
from keel.services.recordtypes import sync_record_types
from keel.services.report_indexes import load_package_objects
from keel.services.report_summaries import Summary, parse_summaries, summarise
from keel.services.security import _find_by_name, create_role, deploy_permission_set, ensure_queue
from keel.storage import system as S
from keel.yamlio import load_yaml

APPS_ROOT = Path(__file__).resolve().parent.parent / "apps"
APP_NAMES = ("recruiting", "vendors", "philanthropy")
COMPUTED = ("formula", "rollup", "auto_number")


@dataclass(frozen=True)
class AppPlan:
    name: str
    version: str
    installed_version: str | None
    plan: Plan
    problems: list[str]
    permission_sets: list[str]
    flows: list[str]
    approvals: list[str]

    def describe(self) -> list[str]:
        lines = [op.describe() for op in self.plan.ops]
        lines += [f"permission set {n}" for n in self.permission_sets]
        lines += [f"flow           {n}" for n in self.flows]
        lines += [f"approval       {n}" for n in self.approvals]
        return lines


@dataclass(frozen=True)
class InstallResult:
    app: AppPlan
    sample: dict[str, int]


def app_dir(name: str) -> Path:
    """A bundled app by name, or a package directory holding one of them (a newer or customised copy, kept in
    an organisation's own repository), so an upgrade can be planned and applied from reviewed metadata."""
    if name not in APP_NAMES and (Path(name) / "app.yaml").is_file():
        path = Path(name)
        real = str((load_yaml((path / "app.yaml").read_text(encoding="utf-8")) or {}).get("name") or "")
        if real not in APP_NAMES:
            raise KeelError(f"{name} holds app {real!r}; the apps are {', '.join(APP_NAMES)}.", code="NOT_FOUND")
        return path
    path = APPS_ROOT / name
    if name not in APP_NAMES or not (path / "app.yaml").is_file():
        raise KeelError(f"No app named {name!r}; the apps are {', '.join(APP_NAMES)}.", code="NOT_FOUND")
    return path


def app_name(name: str) -> str:
    """The app a name or package directory installs: what its installed version is recorded under."""
    return name if name in APP_NAMES else str(manifest(name)["name"])


def manifest(name: str) -> dict[str, Any]:
    doc = load_yaml((app_dir(name) / "app.yaml").read_text(encoding="utf-8")) or {}
    return dict(doc)


def installed_version(ctx: Context, name: str) -> str | None:
    ensure_initialised(ctx.db)
    with ctx.db.read() as conn:
        return S.get_meta(conn, f"app:{app_name(name)}")


# -- desired schema ------------------------------------------------------------------------------------------
def _extension(path: Path, current: SchemaSnapshot) -> ObjectDef:
    """A standard object as it is now, plus (or with replaced) the fields and rules this app declares."""
    doc = load_yaml(path.read_text(encoding="utf-8")) or {}
    name = str(doc.get("object") or "")
    base = current.find_object(name)
    if base is None:
        raise MetadataError(f"{path.name}: extends unknown object {name!r}")
    where = f"{path.name}: object {name!r}"
    added = [parse_field(raw, where=where, custom_object=False, standard=False, object_name=base.api_name,
                         plural_label=base.plural_label) for raw in doc.get("fields") or []]
    keys = {f.key for f in added}
    fields = tuple(f for f in base.fields if f.key not in keys) + tuple(added)
    rules = tuple(_rule(r, where) for r in doc.get("validation_rules") or [])
    names = {r.name for r in rules}
    merged_rules = tuple(r for r in base.validation_rules if r.name not in names) + rules
    views = doc.get("list_views") or []
    named = {str(v.get("name")) for v in views}
    kept = [v for v in base.extra.get("list_views") or [] if str(v.get("name")) not in named]
    extra = {**base.extra, "list_views": kept + list(views)} if views else base.extra
    merged = replace(base, fields=fields, validation_rules=merged_rules, extra=extra)
    return with_record_types(merged, doc.get("record_types"), where, merge=True)


def desired_objects(name: str, current: SchemaSnapshot) -> list[ObjectDef]:
    root = app_dir(name)
    objects = load_package_objects(root / "objects") if (root / "objects").is_dir() else []
    ext = root / "extends"
    if ext.is_dir():
        objects += [_extension(p, current) for p in sorted(ext.glob("*.yaml"))]
    return objects


def _app_fields(name: str) -> dict[str, list[dict[str, Any]]]:
    """Raw field documents per object that this app declares (objects and extensions), for wildcards."""
    out: dict[str, list[dict[str, Any]]] = {}
    root = app_dir(name)
    for folder in ("objects", "extends"):
        for p in sorted((root / folder).glob("*.yaml")) if (root / folder).is_dir() else []:
            doc = load_yaml(p.read_text(encoding="utf-8")) or {}
            out.setdefault(str(doc["object"]).lower(), []).extend(doc.get("fields") or [])
    return out


def permission_sets(name: str) -> list[PermissionSetSpec]:
    folder = app_dir(name) / "permission_sets"
    fields_by_obj = _app_fields(name)
    specs = []
    for p in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        doc = dict(load_yaml(p.read_text(encoding="utf-8")) or {})
        expanded: dict[str, list[str]] = {}
        for key, perms in (doc.get("fields") or {}).items():
            obj, _, fname = str(key).partition(".")
            if fname != "*":
                expanded[str(key)] = list(perms or [])
                continue
            for raw in fields_by_obj.get(obj.lower(), []):
                if raw.get("sensitive"):
                    continue
                computed = raw.get("type") in COMPUTED
                expanded.setdefault(f"{obj}.{raw['name']}", ["read"] if computed else list(perms or []))
        doc["fields"] = expanded
        specs.append(parse_permission_set(doc, source=p.name))
    return specs


def _definitions(name: str) -> tuple[list[Any], list[Any]]:
    from keel.automation.definitions import load_definitions

    return load_definitions(app_dir(name))


# -- plan and apply ------------------------------------------------------------------------------------------
def plan_app(ctx: Context, name: str) -> AppPlan:
    """What installing (or upgrading) the app would change, with any data the change would break."""
    ensure_initialised(ctx.db)
    with ctx.db.read() as conn:
        before = load_snapshot(conn)
        p = plan(before, desired_objects(name, before))
        check_formulas(p)
        problems = data_problems(conn, p)
        version = S.get_meta(conn, f"app:{app_name(name)}")
    flows, procs = _definitions(name)
    return AppPlan(name, str(manifest(name).get("version", 1)), version, p, problems,
                   [s.name for s in permission_sets(name)], [f.name for f in flows], [a.name for a in procs])


def apply_app(ctx: Context, name: str) -> AppPlan:
    """Install or upgrade one app in one transaction: schema, roles, queues, permission sets, flows, approvals."""
    from keel.automation.definitions import check_approval, check_flow
    from keel.automation.registry import store
    from keel.automation.tables import create_automation_tables

    ap = plan_app(ctx, name)
    if ap.problems:
        raise MetadataError("The change would lose or break data:\n  " + "\n  ".join(ap.problems))
    sysctx = ctx.as_actor(SYSTEM_ACTOR)
    flows, procs = _definitions(name)
    specs = permission_sets(name)
    with ctx.db.transaction() as conn:
        S.create_system_tables(conn)
        _lock_schema(conn)
        if current_version(conn) != ap.plan.before.version:
            raise KeelError("The schema changed while the app was being planned; run the install again.",
                            code="CONFLICT")
        if not ap.plan.empty:
            execute(conn, ap.plan)
            S.set_meta(conn, "schema_version", str(ap.plan.after.version))
            sync_record_types(ctx, conn)
        _roles(sysctx, conn, manifest(name).get("roles") or [])
        for q in manifest(name).get("queues") or []:  # ``queues: [{name, objects, members: [role names]}]``
            ensure_queue(sysctx, conn, str(q["name"]), [str(o) for o in q.get("objects") or []],
                         member_roles=[str(r) for r in q.get("members") or []])
        for spec in specs:
            deploy_permission_set(sysctx, conn, spec)
        if flows or procs:
            create_automation_tables(conn)
            schema = ctx.schema(conn)
            for f in flows:
                check_flow(f, schema)
            for a in procs:
                check_approval(a, schema)
            store(conn, flows, procs)
        S.set_meta(conn, f"app:{app_name(name)}", ap.version)
    ctx.metadata.replace(ap.plan.after)
    return ap


def _roles(ctx: Context, conn: Connection, roles: list[Any]) -> None:
    """``roles: [{name, parent}]`` in app.yaml: created when missing (approval steps route to roles)."""
    schema = ctx.schema(conn)
    for r in roles:
        if _find_by_name(conn, schema, "UserRole", str(r["name"])) is None:
            create_role(ctx, conn, str(r["name"]), r.get("parent"))


def sample_generator(name: str) -> Callable[..., dict[str, int]] | None:
    try:
        mod = importlib.import_module(f"keel.apps.{name}.sample")
    except ModuleNotFoundError:
        return None
    fn: Callable[..., dict[str, int]] = mod.generate
    return fn


def install_app(ctx: Context, name: str, sample: int | None = None) -> InstallResult:
    """Install or upgrade ``name``; with ``sample`` make that much sample data (the app decides the unit)."""
    ap = apply_app(ctx, name)
    counts: dict[str, int] = {}
    if sample is not None:
        gen = sample_generator(app_name(name))
        if gen is not None:
            from keel.services.automation import wire_automation

            # Sample data goes through the app's flows, exactly as users' changes would.
            counts = gen(wire_automation(ctx).as_actor(SYSTEM_ACTOR), sample)
    return InstallResult(ap, counts)


def install_all(ctx: Context, *, sample: bool = True, size: int | None = None) -> dict[str, InstallResult]:
    """Every bundled app, with each app's default sample size, or ``size`` (``keel up`` on first run; a small
    size keeps a first start, or a test of it, short)."""
    out = {}
    for name in APP_NAMES:
        default = manifest(name).get("default_sample")
        n = size if size is not None else default
        out[name] = install_app(ctx, name, int(n) if sample and n is not None else None)
    return out


@dataclass(frozen=True)
class AppReport:
    name: str
    label: str
    soql: str
    chart: str | None
    summaries: tuple[Summary, ...] = ()


def app_reports(name: str) -> list[AppReport]:
    """The reports an app declares in ``app.yaml`` (``reports: [{name, label, soql, chart}]``)."""
    return [AppReport(str(r["name"]), str(r.get("label") or r["name"]), str(r["soql"]), r.get("chart"),
                      parse_summaries(r.get("summaries")))
            for r in manifest(name).get("reports") or []]


def run_app_report(ctx: Context, name: str, report: str) -> tuple[AppReport, list[dict[str, Any]]]:
    """Run one of an app's reports as ``ctx.actor``: an ordinary SOQL query, so sharing and field-level
    security decide what it counts. Each row carries the report's summary formulas too."""
    found, rows, _total = run_app_report_totals(ctx, name, report)
    return found, rows


def run_app_report_totals(ctx: Context, name: str,
                          report: str) -> tuple[AppReport, list[dict[str, Any]], dict[str, float | None]]:
    """``run_app_report`` and the summary formulas' grand totals (services/report_summaries.py)."""
    from keel.services.query import query

    found = next((r for r in app_reports(name) if r.name == report), None)
    if found is None:
        names = ", ".join(r.name for r in app_reports(name))
        raise KeelError(f"{name} has no report {report!r}; its reports are {names}.", code="NOT_FOUND")
    rows = [{k: v for k, v in r.items() if k != "attributes"} for r in query(ctx, found.soql)["records"]]
    rows, total = summarise(found.summaries, rows)
    return found, rows, total


def list_apps(ctx: Context) -> list[dict[str, Any]]:
    return [{"name": n, "label": manifest(n).get("label", n), "version": str(manifest(n).get("version", 1)),
             "installed": installed_version(ctx, n)} for n in APP_NAMES]


__all__ = ["APP_NAMES", "AppPlan", "AppReport", "InstallResult", "app_reports", "apply_app", "install_all",
           "install_app", "list_apps", "plan_app", "run_app_report", "run_app_report_totals"]
