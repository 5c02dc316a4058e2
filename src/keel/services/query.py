"""Running SOQL as the acting user. Every read surface (CLI, REST, Bulk, export, UI) comes through here, so the
row filter, the field mask and the formula hook from the actor's context are always compiled in, the same way, and
every page that returns a field marked sensitive is written to the audit log (one entry per object and page)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, FromClause
from sqlalchemy.engine import Connection

from keel.context import Context
from keel.formula import field_sql
from keel.metadata.model import FieldDef, ObjectDef
from keel.query import CompiledQuery, fetch_more, run_soql
from keel.query.run import plan_cache
from keel.query.sensitive import SensitiveAccess
from keel.security.audit import audit_sensitive_read

API_VERSION = "59.0"


def formula_sql(ctx: Context) -> Any:
    """The hook that lets SOQL select, filter, sort and group by formula fields, computed in the database."""
    dialect = ctx.db.dialect

    def compile_formula(obj: ObjectDef, f: FieldDef, alias: FromClause) -> ColumnElement[Any]:
        return field_sql(f, obj, ctx.schema(), dialect, table_alias=alias)

    return compile_formula


def soql_options(ctx: Context) -> dict[str, Any]:
    """Keyword arguments for ``run_soql``/``fetch_more`` that make a query run as ``ctx.actor``."""
    actor = ctx.actor
    opts: dict[str, Any] = {
        "dialect": ctx.db.dialect, "formula_sql": formula_sql(ctx), "owner": str(actor.user_id),
        "cursor_idle": timedelta(seconds=ctx.settings.query_cursor_idle_seconds),
    }
    if actor.is_system:
        opts.update(row_filter=None, field_mask=None, security_key=("system",))
        return opts
    access = actor.access

    def row_filter(obj: ObjectDef, table: FromClause) -> ColumnElement[bool] | None:
        return access.record_filter(obj, table, "read")

    def field_mask(obj: ObjectDef, f: FieldDef) -> bool:
        return f.type == "id" or access.field_readable(obj.api_name, f.api_name)

    opts.update(row_filter=row_filter, field_mask=field_mask,
                security_key=getattr(access, "cache_key", None) or ("user", actor.user_id))
    return opts


def sensitive_auditor(ctx: Context, conn: Connection, surface: str) -> Any:
    """The ``on_sensitive`` hook for one page read on ``conn``: it writes one ``sensitive_read`` entry per object.

    The entry is written after a read transaction ends (in its own short write transaction), or at once inside a
    write transaction (``Database.write_after_read``), so read connections never write and a failed audit fails the
    request before the caller sees the records. System-context reads return None: the system context itself is
    audited when it is opened, with the reason and the real actor."""
    actor = ctx.actor
    if actor.is_system:
        return None

    def on_sensitive(found: list[SensitiveAccess]) -> None:
        at = ctx.clock()

        def write(w: Connection) -> None:
            for a in found:
                audit_sensitive_read(w, actor_id=actor.user_id, object=a.obj, fields=a.fields, count=a.count,
                                     ids=a.ids, record_id=a.record_pk, surface=surface, via=a.via,
                                     aggregate=a.aggregate, at=at)

        ctx.db.write_after_read(conn, write)

    return on_sensitive


def query(ctx: Context, soql: str, *, query_all: bool = False, api_version: str = API_VERSION,
          batch_size: int | None = None, conn: Connection | None = None, surface: str = "soql") -> dict[str, Any]:
    """The first page of a query (``totalSize``, ``done``, ``records``, ``nextRecordsUrl``). ``surface`` names the
    caller in the audit entry of a page that returns sensitive fields (``soql``, ``export``, ``bulk_query``, …)."""
    if conn is None:
        with ctx.db.read() as c:
            return query(ctx, soql, query_all=query_all, api_version=api_version, batch_size=batch_size, conn=c,
                         surface=surface)
    return run_soql(conn, ctx.schema(conn), soql, query_all=query_all, api_version=api_version,
                    time_zone=ctx.actor.time_zone, now=ctx.clock(), user_id=ctx.actor.user_id,
                    batch_size=batch_size or ctx.settings.query_batch_size,
                    on_sensitive=sensitive_auditor(ctx, conn, surface), **soql_options(ctx))


def query_more(ctx: Context, locator: str, *, api_version: str = API_VERSION,
               conn: Connection | None = None, surface: str = "soql") -> dict[str, Any]:
    """The next page of a cursor started by ``query`` (the locator is ``{cursorId}-{offset}``)."""
    if conn is None:
        with ctx.db.read() as c:
            return query_more(ctx, locator, api_version=api_version, conn=c, surface=surface)
    return fetch_more(conn, ctx.schema(conn), locator, api_version=api_version,
                      on_sensitive=sensitive_auditor(ctx, conn, surface), **soql_options(ctx))


def query_all_records(ctx: Context, soql: str, *, query_all: bool = False,
                      surface: str = "soql") -> Iterator[dict[str, Any]]:
    """Every record of a query, page by page (keyset cursors), as shaped JSON-ready dicts."""
    page = query(ctx, soql, query_all=query_all, surface=surface)
    while True:
        yield from page["records"]
        if page.get("done", True) or not page.get("nextRecordsUrl"):
            return
        page = query_more(ctx, page["nextRecordsUrl"].rsplit("/", 1)[-1], surface=surface)


def compiled(ctx: Context, soql: str, *, query_all: bool = False, conn: Connection) -> CompiledQuery:
    """The plan of ``soql`` as the acting user (through the plan cache), for callers that execute it themselves:
    bulk query jobs stream every row with ``keel.query.run.stream_rows``."""
    opts = soql_options(ctx)
    schema = ctx.schema(conn)
    return plan_cache(schema).get(soql, schema, dialect=opts["dialect"], security_key=opts["security_key"],
                                  query_all=query_all, row_filter=opts["row_filter"], field_mask=opts["field_mask"],
                                  time_zone=ctx.actor.time_zone, formula_sql=opts["formula_sql"],
                                  user_id=ctx.actor.user_id)
