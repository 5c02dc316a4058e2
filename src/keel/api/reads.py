"""Reading records for the REST handlers: every read is a SOQL query, so the one security predicate and field
mask the compiler applies also govern retrieve, get-by-external-id, collections retrieve, ``updated`` and search."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from keel.api import backend
from keel.api.errors import error
from keel.api.routing import ApiCall
from keel.context import Actor
from keel.metadata.model import FieldDef, ObjectDef
from keel.metadata.types import effective_type

_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")
_NUMERIC = ("number", "currency", "percent", "rollup")


def quote(value: str) -> str:
    """A SOQL string literal: backslash escapes, as simple-salesforce's ``format_soql`` writes them."""
    out = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    return f"'{out}'"


def literal(f: FieldDef, value: str) -> str:
    """``value`` (from a URL) as a SOQL literal of ``f``'s type; bad numbers are a 400, not a 500."""
    t = effective_type(f)
    if t in _NUMERIC:
        try:
            return str(Decimal(value))
        except InvalidOperation:
            raise error("MALFORMED_QUERY", f"{value!r} is not a valid value for {f.api_name}.") from None
    if t == "checkbox":
        return "true" if value.lower() == "true" else "false"
    return quote(value)


def readable_fields(actor: Actor, obj: ObjectDef) -> list[str]:
    access = actor.access
    return [f.api_name for f in obj.fields
            if f.type == "id" or actor.is_system or access.field_readable(obj.api_name, f.api_name)]


def field_list(call: ApiCall, obj: ObjectDef, requested: str | list[str] | None) -> list[str]:
    """``?fields=a,b`` (or a JSON list), checked to be identifiers; the compiler checks them against metadata."""
    if requested is None or requested == "" or requested == []:
        return readable_fields(call.ctx.actor, obj)
    names = requested.split(",") if isinstance(requested, str) else [str(x) for x in requested]
    out = []
    for n in (x.strip() for x in names):
        if not n:
            continue
        if not _IDENT.match(n):
            raise error("INVALID_FIELD", f"No such column '{n}' on entity '{obj.api_name}'.", [n])
        out.append(n)
    if not any(n.lower() == "id" for n in out):
        out.insert(0, "Id")
    return out


def select_all(call: ApiCall, soql: str, *, query_all: bool = False) -> list[dict[str, Any]]:
    """Every record of a query, following cursors (for bounded internal reads only)."""
    with call.reading() as conn:
        page = backend.run_soql(call.ctx, conn, soql, query_all=query_all, api_version=call.version)
        records: list[dict[str, Any]] = list(page["records"])
        while not page.get("done", True) and page.get("nextRecordsUrl"):
            locator = str(page["nextRecordsUrl"]).rsplit("/", 1)[-1]
            page = backend.fetch_more(call.ctx, conn, locator, api_version=call.version)
            records.extend(page["records"])
    return records


def by_field(call: ApiCall, obj: ObjectDef, f: FieldDef, value: str, fields: list[str], *,
             query_all: bool = False, limit: int | None = None) -> list[dict[str, Any]]:
    soql = f"SELECT {', '.join(fields)} FROM {obj.api_name} WHERE {f.api_name} = {literal(f, value)}"
    if limit is not None:
        soql += f" LIMIT {limit}"
    return select_all(call, soql, query_all=query_all)
