"""Running SOQL as the acting user. Every read surface (CLI, REST, export, UI) comes through here, so the row
filter and field mask from the actor's access are always compiled in."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, FromClause

from keel.context import Context
from keel.formula import field_sql
from keel.metadata.model import FieldDef, ObjectDef
from keel.query import fetch_more, run_soql

API_VERSION = "59.0"


def formula_sql(ctx: Context) -> Any:
    """The hook that lets SOQL select, filter, sort and group by formula fields, computed in the database."""
    dialect = ctx.db.dialect

    def compile_formula(obj: ObjectDef, f: FieldDef, alias: FromClause) -> ColumnElement[Any]:
        return field_sql(f, obj, ctx.schema(), dialect, table_alias=alias)

    return compile_formula


def _security(ctx: Context) -> dict[str, Any]:
    access = ctx.actor.access
    if ctx.actor.is_system:
        return {"row_filter": None, "field_mask": None, "security_key": ("system",), "formula_sql": formula_sql(ctx)}

    def row_filter(obj: ObjectDef, table: FromClause) -> ColumnElement[bool] | None:
        return access.record_filter(obj, table, "read")

    def field_mask(obj: ObjectDef, f: FieldDef) -> bool:
        return access.field_readable(obj.api_name, f.api_name)

    key = getattr(access, "cache_key", None) or ("user", ctx.actor.user_id)
    return {"row_filter": row_filter, "field_mask": field_mask, "security_key": key, "formula_sql": formula_sql(ctx)}


def query(ctx: Context, soql: str, *, query_all: bool = False, api_version: str = API_VERSION,
          batch_size: int | None = None) -> dict[str, Any]:
    with ctx.db.read() as conn:
        schema = ctx.schema(conn)
        return run_soql(conn, schema, soql, dialect=ctx.db.dialect, query_all=query_all, api_version=api_version,
                        time_zone=ctx.actor.time_zone, now=ctx.clock(),
                        batch_size=batch_size or ctx.settings.query_batch_size, **_security(ctx))


def query_more(ctx: Context, locator: str, *, api_version: str = API_VERSION) -> dict[str, Any]:
    with ctx.db.read() as conn:
        schema = ctx.schema(conn)
        sec = _security(ctx)
        sec.pop("security_key")
        return fetch_more(conn, schema, locator, dialect=ctx.db.dialect, api_version=api_version, **sec)


def query_all_records(ctx: Context, soql: str, *, query_all: bool = False) -> Any:
    """Every record of a query, page by page (keyset cursors), as shaped JSON-ready dicts."""
    page = query(ctx, soql, query_all=query_all)
    while True:
        yield from page["records"]
        if page.get("done", True) or not page.get("nextRecordsUrl"):
            return
        page = query_more(ctx, page["nextRecordsUrl"].rsplit("/", 1)[-1])
