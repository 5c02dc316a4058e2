"""CSV export of an object's records, read through SOQL as the acting user (so sharing and field-level security
apply), streamed page by page."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from keel.context import Context
from keel.services.csvio import neutralise
from keel.services.query import query_all_records


def exportable_fields(ctx: Context, obj_name: str) -> list[str]:
    obj = ctx.schema().get_object(obj_name)
    access = ctx.actor.access
    out = ["Id"]
    for f in obj.fields:
        if f.type == "id" or not f.column or f.type in ("formula",):
            continue
        if f.standard and f.api_name not in ("Name", "OwnerId"):
            continue
        if f.type in ("auto_number", "composite", "rollup"):
            continue
        if ctx.actor.is_system or access.field_readable(obj.api_name, f.api_name):
            out.append(f.api_name)
    return out


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return neutralise(str(value))


def export_csv(ctx: Context, obj_name: str, path: str | Path, *, fields: list[str] | None = None) -> int:
    obj = ctx.schema().get_object(obj_name)
    columns = fields or exportable_fields(ctx, obj.api_name)
    soql = f"SELECT {', '.join(columns)} FROM {obj.api_name} ORDER BY Id"
    n = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        w = csv.writer(out)
        w.writerow(columns)
        for rec in query_all_records(ctx, soql, surface="export"):
            w.writerow([cell(rec.get(c)) for c in columns])
            n += 1
    audit = ctx.extras.get("audit")
    if audit is not None:
        audit(ctx, "export", obj.api_name, n)
    return n
