"""The import wizard's last step as a Bulk job: progress while it runs, the outcome, and "undo this import".

Why a Bulk job: a 50,000-row import must not hold a request (and a database transaction) open for minutes. The
wizard writes the mapped rows as a Bulk 2.0 ingest job owned by the user (``services.bulk``: durable upload,
chunked transactions, crash-safe progress marker), and the in-process worker (or ``keel worker``) runs it with the
user's permissions, field-level security, validation and automation, exactly as ``save_many`` would. The page
polls the job's counters with htmx.

Undo: the job *is* the import batch. Its successful results list every row's id and whether it was created, so
"undo" deletes exactly the records this import created (never ones it updated), through ``delete_many`` as the
user, so the recycle bin, cascade rules and delete permissions apply.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from starlette.responses import RedirectResponse, Response

from keel.errors import KeelError
from keel.metadata.model import ObjectDef
from keel.records import delete_many
from keel.services import bulk as B
from keel.services.bulk_results import ingest_results
from keel.web.base import Web, require

DONE = ("JobComplete", "Failed", "Aborted")


def start_job(web: Web, obj: ObjectDef, header: list[str], rows: list[list[str]], key: str) -> Response:
    """Write the mapped rows as CSV into a new ingest job and hand it to the worker."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    B.ensure_tables(web.ctx)
    spec: dict[str, Any] = {"object": obj.api_name, "operation": "upsert" if key else "insert"}
    if key:
        spec["externalIdFieldName"] = key
    job = B.create_job(web.ctx, spec, job_type="V2Ingest")
    up = B.Upload(web.ctx, job)
    try:
        up.write(buf.getvalue().encode())
        up.commit()
    except BaseException:
        up.discard()
        raise
    B.set_state(web.ctx, job.id, "UploadComplete")
    notify = web.ctx.extras.get("bulk_notify")
    if callable(notify):
        notify()
    return RedirectResponse(f"/imports/{job.id}?rows={len(rows)}", status_code=303)


def _job(web: Web) -> B.Job:
    job_id = str(web.path["id"])
    with web.ctx.db.read() as conn:
        job = B.read_job(web.ctx, conn, job_id)  # the user's own jobs only (or View All)
    if job.is_query:
        raise KeelError("Not an import.", code="NOT_FOUND")
    return job


def progress(web: Web) -> Response:
    """``/imports/{job}``: the whole page, or (htmx poll) just the progress panel."""
    job = _job(web)
    total = int(web.params.get("rows", "0") or 0) if str(web.params.get("rows", "")).isdigit() else 0
    created = 0
    failures: list[tuple[str, str]] = []
    if job.state == "JobComplete":
        created = len(_created_ids(web, job))
        if job.failed:
            failures = _failures(web, job)[:200]
    undone = int(web.params.get("undone", "0")) if str(web.params.get("undone", "")).isdigit() else 0
    obj = web.schema().find_object(job.object)
    values: dict[str, Any] = {"job": job, "total": max(total, job.processed), "created": created, "failures": failures,
              "done": job.state in DONE, "obj": obj, "undone": undone, "rows": total}
    if web.htmx:
        return web.render("import_progress.html", **values)
    return web.render("import_job.html", **values)


def _results(web: Web, job: B.Job, kind: str) -> list[dict[str, str]]:
    data = b"".join(ingest_results(web.ctx, job, kind)).decode()
    return list(csv.DictReader(io.StringIO(data)))


def _created_ids(web: Web, job: B.Job) -> list[str]:
    return [r["sf__Id"] for r in _results(web, job, "successfulResults")
            if r.get("sf__Id") and str(r.get("sf__Created", "")).lower() == "true"]


def _failures(web: Web, job: B.Job) -> list[tuple[str, str]]:
    return [(r.get("Name") or r.get("sf__Id") or "", r.get("sf__Error", "")) for r in _results(web, job,
                                                                                                "failedResults")]


def undo(web: Web) -> Response:
    """``POST /imports/{job}/undo``: delete the records this import created (as the user)."""
    job = _job(web)
    if job.state != "JobComplete":
        raise KeelError("Only a finished import can be undone.", code="INVALID_OPERATION")
    obj = web.schema().get_object(job.object)
    require(web.ctx, obj, "delete")
    ids = _created_ids(web, job)
    deleted = 0
    for i in range(0, len(ids), 2000):
        results = delete_many(web.ctx, obj.api_name, ids[i:i + 2000], all_or_none=False)
        deleted += sum(1 for r in results if r.success)
    return RedirectResponse(f"/imports/{job.id}?undone={deleted}", status_code=303)
