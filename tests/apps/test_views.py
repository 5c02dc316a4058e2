"""Every list view, layout and compact field the apps declare names real fields and compiles to SOQL that runs;
re-installing an installed app is a no-op plan (upgrade path)."""

from __future__ import annotations

from keel.context import Context
from keel.errors import KeelError
from keel.metadata.model import ObjectDef, SchemaSnapshot
from keel.services.apps import APP_NAMES, desired_objects, plan_app
from keel.services.query import query
from keel.web.views import build_query, resolve_path, views_for


def _resolves(schema: SchemaSnapshot, obj: ObjectDef, path: str) -> bool:
    """A field of ``obj``, or a parent path such as ``RecordType.DeveloperName`` (list view filters allow them)."""
    try:
        resolve_path(schema, obj, path)
    except KeelError:
        return False
    return True


def test_views_layouts_and_upgrade(apps: Context) -> None:
    schema = apps.schema()
    checked = 0
    for app in APP_NAMES:
        for declared in desired_objects(app, schema):
            obj = schema.get_object(declared.api_name)
            extra = declared.extra
            names = list(extra.get("compact_fields") or [])
            for section in ((extra.get("layouts") or {}).get("default") or {}).get("sections") or []:
                names += section.get("fields") or []
            for raw in extra.get("list_views") or []:
                names += [*(raw.get("columns") or []), *(f["field"] for f in raw.get("filters") or []),
                          str(raw.get("sort") or "Name").split()[0]]
            assert [n for n in names if not _resolves(schema, obj, n)] == [], obj.api_name
            children = {c.name for c in schema.child_relationships(obj)}
            related = ((extra.get("layouts") or {}).get("default") or {}).get("related") or []
            assert set(related) <= children, (obj.api_name, set(related) - children)
            for view in views_for(obj) if extra.get("list_views") else []:
                q = build_query(apps, obj, {"view": view.name})
                query(apps, q.page_soql(None))
                query(apps, q.exact_count_soql())
                checked += 1
        again = plan_app(apps, app)
        assert again.plan.empty and not again.problems, again.describe()
    assert checked >= 30


def test_web_catalog_and_launcher_read_the_apps() -> None:
    """The web app reads the apps' reports, dashboards and tabs from app.yaml (docs/web.md)."""
    from keel.services.apps import app_reports
    from keel.web.definitions import load_catalog, load_launcher

    catalog = load_catalog()
    assert catalog.errors == []
    for app in APP_NAMES:
        assert {f"{app}.{r.name}" for r in app_reports(app)} <= set(catalog.reports)
        assert app in catalog.dashboards
    launcher = load_launcher()
    assert launcher["Recruiting"][:2] == ("Position__c", "Job_Application__c")
    assert launcher["Philanthropy"][0] == "Pledge__c"
