"""The CSV import wizard: upload, map columns to fields, choose a match key, dry-run, import.

The import itself runs as a Bulk job (``import_jobs``) with a progress page and "undo this import".
The uploaded file is kept under the organisation's data directory (outside the web root), named by the user's id
and a random token so nobody else can replay it. The dry run is the real lifecycle in a transaction that is
rolled back, so it reports exactly the errors the import would hit (validation rules, required fields, picklists,
permissions), per row.
"""

from __future__ import annotations

import csv
import io
import secrets
from pathlib import Path
from typing import Any

from starlette.responses import Response

from keel.errors import BatchError, KeelError, RowResult
from keel.metadata.model import FieldDef, ObjectDef
from keel.records import save_many, upsert_many
from keel.services.csvio import unneutralise
from keel.web.base import Web, editable, require
from keel.web.import_jobs import start_job

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 50_000


class _Rollback(Exception):
    pass


def _dir(web: Web) -> Path:
    d = Path(web.ctx.settings.data_dir) / "imports"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _path(web: Web, token: str) -> Path:
    if not token.isalnum():
        raise KeelError("That upload has expired; upload the file again.", code="INVALID_FIELD")
    return _dir(web) / f"{web.ctx.actor.user_id}-{token}.csv"


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise KeelError("That upload has expired; upload the file again.", code="INVALID_FIELD")
    reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig")))
    rows = [r for r in reader if r]
    if not rows:
        raise KeelError("The CSV file is empty.", code="INVALID_CSV")
    return [h.strip() for h in rows[0]], rows[1:MAX_ROWS + 1]


def _auto(header: str, fields: list[FieldDef]) -> str:
    h = header.strip().lower().replace(" ", "").replace("_", "")
    for f in fields:
        if h in (f.api_name.lower().replace("_", ""), f.label.lower().replace(" ", "").replace("_", ""),
                 f.api_name.lower().removesuffix("__c").replace("_", "")):
            return f.api_name
    return ""


def wizard(web: Web) -> Response:
    found = web.schema().find_object(str(web.path["obj"]))
    if found is None:
        raise KeelError("No such object.", code="NOT_FOUND")
    obj: ObjectDef = found
    require(web.ctx, obj, "create")
    fields = [f for f in obj.fields if editable(web.ctx, obj, f)]
    keys = [f for f in obj.fields if f.external_id or f.api_name == "Id"]
    step = str(web.form.get("step", "")) if web.request.method == "POST" else ""
    if step == "upload":
        upload = web.files.get("file")
        if upload is None or not upload.filename:
            return web.render("import.html", obj=obj, step="start", error="Choose a CSV file.", status=400)
        data = upload.file.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            return web.render("import.html", obj=obj, step="start", error="The file is larger than 5 MB.",
                              status=400)
        token = secrets.token_hex(16)
        _path(web, token).write_bytes(data)
        header, rows = _read(_path(web, token))
        mapping = [(h, _auto(h, fields)) for h in header]
        return web.render("import.html", obj=obj, step="map", token=token, mapping=mapping, fields=fields,
                          keys=keys, rows=len(rows), error="")
    if step in ("dry", "run"):
        token = str(web.form.get("token", ""))
        header, rows = _read(_path(web, token))
        mapping = [(h, str(web.form.get(f"map_{i}", ""))) for i, h in enumerate(header)]
        names = {f.api_name for f in fields}
        drafts = [{m: unneutralise(v) for (h, m), v in zip(mapping, row, strict=False) if m in names and v != ""}
                  for row in rows]
        key = str(web.form.get("key", ""))
        if key and key != "Id" and not obj.find_field(key):
            raise KeelError("Unknown match key.", code="INVALID_FIELD")
        if step == "run":  # a Bulk job with a progress page (import_jobs); the dry run stays synchronous
            used = [(i, m) for i, (_h, m) in enumerate(mapping) if m in names]
            if not used:
                raise KeelError("Map at least one column to a field.", code="INVALID_FIELD")
            return start_job(web, obj, [m for _, m in used],
                             [[unneutralise(row[i]) if i < len(row) else "" for i, _ in used] for row in rows], key)
        results = _execute(web, obj, drafts, key, dry=step == "dry")
        issues = [(r.index + 1, ", ".join(e.fields), e.code, e.message) for r in results for e in r.errors]
        ok = sum(1 for r in results if r.success)
        created = sum(1 for r in results if r.success and r.created)
        return web.render("import.html", obj=obj, step="result", dry=step == "dry", token=token, ok=ok,
                          created=created, updated=ok - created, issues=issues[:500], total=len(drafts),
                          mapping=mapping, key=key, fields=fields, keys=keys, error="")
    return web.render("import.html", obj=obj, step="start", error="")


def _execute(web: Web, obj: ObjectDef, drafts: list[dict[str, Any]], key: str, *, dry: bool) -> list[RowResult]:
    results: list[RowResult] = []
    try:
        with web.ctx.db.transaction() as conn:
            try:
                if key and key != "Id" and not obj.find_field(key):
                    raise KeelError("Unknown match key.", code="INVALID_FIELD")
                if key:
                    results = upsert_many(web.ctx, obj.api_name, drafts, key, all_or_none=False, conn=conn)
                else:
                    results = save_many(web.ctx, obj.api_name, drafts, all_or_none=False, conn=conn)
            except BatchError as e:
                results = e.results
            if dry:
                raise _Rollback
    except _Rollback:
        pass
    return results
