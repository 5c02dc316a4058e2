"""List view definitions and the SOQL they compile to.

A list view (``list_views`` in an object's YAML, see docs/metadata.md) names columns, filters and a sort. Every
page is one SOQL statement run as the user through ``services.query``, so sharing and field-level security are
compiled in. Paging is keyset, never OFFSET: the page token holds the last sort value and the ids already shown
with that value (SOQL has no ``Id >``), so page 5,000 costs what page 1 costs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keel.context import Context
from keel.errors import KeelError
from keel.metadata.model import FieldDef, ObjectDef, SchemaSnapshot
from keel.web.base import readable, relation_select, soql_literal

PAGE = 50
COUNT_CAP = 2000
OPS = ("=", "!=", "<", ">", "<=", ">=", "contains", "starts")
UNSORTABLE = ("longtext", "textarea", "multipicklist", "composite")


@dataclass
class ListView:
    name: str
    label: str
    columns: list[str]
    filters: list[dict[str, str]] = field(default_factory=list)
    sort: str = "Name"
    desc: bool = False
    visibility: str = "shared"
    owner_id: int | None = None  # set for views users saved (``my_<id>``); package views have none


def default_columns(obj: ObjectDef) -> list[str]:
    compact = list(obj.extra.get("compact_fields") or [])
    cols = ["Name", *compact]
    if not compact:
        cols += [f.api_name for f in obj.fields if f.custom and f.type not in UNSORTABLE][:5]
    return cols


def views_for(obj: ObjectDef, extra: list[ListView] | None = None) -> list[ListView]:
    """Package views (``list_views`` in YAML, shared by definition) then the user's own and shared saved views."""
    out = []
    for raw in obj.extra.get("list_views") or []:
        sort = str(raw.get("sort") or "Name")
        desc = sort.lower().endswith(" desc")
        out.append(ListView(str(raw["name"]), str(raw.get("label") or raw["name"]),
                            [str(c) for c in raw.get("columns") or default_columns(obj)],
                            [dict(f) for f in raw.get("filters") or []], sort.split()[0], desc,
                            str(raw.get("visibility") or "shared")))
    if not out:
        out.append(ListView("all", f"All {obj.plural_label}", default_columns(obj)))
    return out + list(extra or [])


def resolve_path(schema: SchemaSnapshot, obj: ObjectDef, path: str) -> FieldDef:
    """A field or a parent path (``Position__r.Department__c``), for filter literals."""
    parts = path.split(".")
    cur = obj
    for rel in parts[:-1]:
        ref = cur.find_relationship(rel)
        if ref is None or not ref.reference_to:
            raise KeelError(f"No relationship '{rel}' on {cur.label}.", code="INVALID_FIELD")
        cur = schema.get_object(ref.reference_to[0])
    return cur.get_field(parts[-1])


def condition(schema: SchemaSnapshot, obj: ObjectDef, flt: Mapping[str, str]) -> str:
    path, op, value = str(flt.get("field", "")), str(flt.get("op", "=")), flt.get("value", "")
    if op not in OPS:
        raise KeelError(f"Unknown filter operator {op!r}.", code="INVALID_FIELD")
    f = resolve_path(schema, obj, path)
    if not all(part.replace("_", "").replace(".", "").isalnum() for part in path.split(".")):
        raise KeelError("Bad field name.", code="INVALID_FIELD")
    if op in ("contains", "starts"):
        v = str(value).replace("%", "").replace("_", "")
        return f"{path} LIKE {soql_literal(None, ('%' if op == 'contains' else '') + v + '%')}"
    return f"{path} {op} {soql_literal(f, value)}"


def encode_token(value: Any, ids: list[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps({"v": value, "ids": ids[-500:]}).encode()).decode().rstrip("=")


def decode_token(token: str) -> tuple[Any, list[str]]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        ids = [str(i) for i in raw["ids"] if str(i).isalnum()]
        return raw["v"], ids
    except (ValueError, KeyError, TypeError):
        raise KeelError("That page link is invalid; start from the first page.", code="INVALID_FIELD") from None


@dataclass
class ListQuery:
    """What a list request asks for, after checking every name against metadata and field-level security."""

    obj: ObjectDef
    view: ListView
    columns: list[FieldDef]
    sort: FieldDef
    desc: bool
    where: list[str]
    ctx: Context  # the user the list is for: which parents' names it may show

    def select_list(self) -> str:
        names = ["Id"]
        for f in self.columns:
            names.append(f.api_name)
            rel = relation_select(f, self.ctx)
            if rel:
                names.append(rel)
        if self.sort.api_name not in names:
            names.append(self.sort.api_name)
        return ", ".join(dict.fromkeys(names))

    def where_sql(self, extra: list[str] | None = None) -> str:
        conds = self.where + (extra or [])
        return (" WHERE " + " AND ".join(f"({c})" for c in conds)) if conds else ""

    def keyset(self, token: str | None) -> list[str]:
        if not token:
            return []
        v, ids = decode_token(token)
        s = self.sort.api_name
        not_in = f"Id NOT IN ({', '.join(soql_literal(None, i) for i in ids)})" if ids else "Id != null"
        lit = soql_literal(self.sort, v)
        if v is None:
            return [f"({s} = null AND {not_in}) OR {s} != null"] if not self.desc else [f"{s} = null AND {not_in}"]
        op = "<" if self.desc else ">"
        tail = f" OR {s} = null" if self.desc else ""
        return [f"{s} {op} {lit}{tail} OR ({s} = {lit} AND {not_in})"]

    def page_soql(self, token: str | None, limit: int = PAGE + 1) -> str:
        order = f"{self.sort.api_name} {'DESC NULLS LAST' if self.desc else 'ASC NULLS FIRST'}, Id " \
                f"{'DESC' if self.desc else 'ASC'}"
        return f"SELECT {self.select_list()} FROM {self.obj.api_name}{self.where_sql(self.keyset(token))} " \
               f"ORDER BY {order} LIMIT {limit}"

    def count_soql(self) -> str:
        return f"SELECT Id FROM {self.obj.api_name}{self.where_sql()} LIMIT {COUNT_CAP}"

    def exact_count_soql(self) -> str:
        return f"SELECT COUNT() FROM {self.obj.api_name}{self.where_sql()}"

    def next_token(self, records: list[dict[str, Any]]) -> str:
        last = records[-1].get(self.sort.api_name)
        ids = [str(r["Id"]) for r in records if r.get(self.sort.api_name) == last]
        return encode_token(last, ids)


def build_query(ctx: Context, obj: ObjectDef, params: Mapping[str, str],
                extra: list[ListView] | None = None) -> ListQuery:
    schema = ctx.schema()
    views = views_for(obj, extra)
    view = next((v for v in views if v.name == params.get("view")), views[0])
    if view.owner_id is not None:  # a colleague's view must not let the viewer filter on what they cannot read
        for flt in view.filters:
            name = str(flt.get("field", ""))
            if "." not in name and not readable(ctx, obj, name):
                raise KeelError("This view filters on a field you cannot read.", code="INVALID_FIELD")
    cols = [obj.get_field(c) for c in view.columns if obj.find_field(c) and readable(ctx, obj, c)]
    sort_name = params.get("sort") or view.sort
    sf = obj.find_field(sort_name) or obj.name_field
    if sf.type in UNSORTABLE or not readable(ctx, obj, sf.api_name):
        sf = obj.name_field
    desc = params.get("dir", "desc" if view.desc else "asc") == "desc"
    where = [condition(schema, obj, flt) for flt in view.filters]
    q = (params.get("q") or "").strip()
    if q:
        where.append(condition(schema, obj, {"field": "Name", "op": "contains", "value": q}))
    ff, fo, fv = params.get("ff"), params.get("fo", "="), params.get("fv")
    if ff and fv is not None and fv != "":
        if "." not in ff and not readable(ctx, obj, ff):  # parent paths are masked by the SOQL compiler
            raise KeelError("You cannot filter on a field you cannot read.", code="INVALID_FIELD")
        where.append(condition(schema, obj, {"field": ff, "op": fo, "value": fv}))
    return ListQuery(obj, view, cols, sf, desc, where, ctx)
