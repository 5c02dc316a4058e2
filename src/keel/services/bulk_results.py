"""Result files of ingest jobs, produced on request by zipping the uploaded CSV with the per-chunk outcomes.

Nothing is materialised: the response streams while the upload is re-read, so a 1M-row result costs the same
flat memory as the ingest did. Rows beyond the progress marker are the unprocessed records.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import sqlalchemy as sa

from keel.context import Context
from keel.services import bulk as B
from keel.services import bulk_tables as T
from keel.services.bulk_worker import JobFailure, read_csv

KINDS = ("successfulresults", "failedresults", "unprocessedrecords")


def _outcomes(ctx: Context, upload_id: int) -> Iterator[list[Any]]:
    """Per-row outcomes of one upload in row order, one chunk in memory at a time."""
    c = T.chunks
    with ctx.db.read() as conn:
        chunk_ids = list(conn.execute(sa.select(c.c.id).where(c.c.upload_id == upload_id).order_by(
            c.c.first_row)).scalars())
    for cid in chunk_ids:
        with ctx.db.read() as conn:
            payload = conn.execute(sa.select(c.c.results).where(c.c.id == cid)).scalar_one()
        yield from orjson.loads(payload)


def ingest_results(ctx: Context, job: B.Job, kind: str, *, bulk1: bool = False) -> Iterator[bytes]:
    """CSV bytes of ``successfulResults``, ``failedResults`` or ``unprocessedRecords`` (Bulk 2.0 shapes)."""
    kind = kind.lower()
    with ctx.db.read() as conn:
        ups = [dict(u) for u in B.uploads_of(conn, job.pk) if u["kind"] == "csv"]
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=job.sep, lineterminator=job.eol, quoting=csv.QUOTE_ALL)
    wrote_header = False
    for up in ups:
        yield from _one(ctx, job, up, kind, w, buf, not wrote_header)
        wrote_header = True
    if not wrote_header:
        w.writerow({"successfulresults": ["sf__Id", "sf__Created"], "failedresults": ["sf__Id", "sf__Error"]}
                   .get(kind, []))
    if buf.tell():
        yield buf.getvalue().encode()


def _one(ctx: Context, job: B.Job, up: Mapping[str, Any], kind: str, w: Any, buf: io.StringIO,
         header: bool) -> Iterator[bytes]:
    rows = read_csv(up["path"], job.sep)
    try:
        head = next(rows, [])
        if header:
            lead = {"successfulresults": ["sf__Id", "sf__Created"], "failedresults": ["sf__Id", "sf__Error"]}
            w.writerow(lead.get(kind, []) + head)
        data = (r for r in rows if r)
        done = int(up["rows_done"])
        if kind == "unprocessedrecords":
            for i, r in enumerate(data):
                if i >= done:
                    w.writerow(r)
                if buf.tell() > 1 << 16:
                    yield _drain(buf)
            return
        want_ok = kind == "successfulresults"
        for outcome, r in zip(_outcomes(ctx, up["id"]), data, strict=False):
            ok = isinstance(outcome[1], bool)
            if ok and want_ok:
                w.writerow([outcome[0] or "", "true" if outcome[1] else "false", *r])
            elif not ok and not want_ok:
                w.writerow([outcome[0] or "", outcome[1], *r])
            if buf.tell() > 1 << 16:
                yield _drain(buf)
    except JobFailure:
        return  # an unreadable upload has no rows to report; the job's errorMessage says why


def _drain(buf: io.StringIO) -> bytes:
    data = buf.getvalue().encode()
    buf.seek(0)
    buf.truncate()
    return data


def v1_results(ctx: Context, job: B.Job, up: Mapping[str, Any]) -> list[dict[str, Any]] | Iterator[bytes]:
    """Bulk 1.0 batch results: a JSON list for JSON jobs, ``Id,Success,Created,Error`` CSV otherwise."""
    if job.content_type == "JSON":
        out: list[dict[str, Any]] = []
        for outcome in _outcomes(ctx, up["id"]):
            ok = isinstance(outcome[1], bool)
            errors = [] if ok else [_v1_error(e) for e in str(outcome[1]).split(" --") if e.strip()]
            out.append({"success": ok, "created": bool(outcome[1]) if ok else False, "id": outcome[0],
                        "errors": errors})
        return out
    return _v1_csv(ctx, up)


def _v1_error(text: str) -> dict[str, Any]:
    code, _, rest = text.strip().partition(":")
    message, _, fields = rest.rpartition(":")
    return {"statusCode": code, "message": message, "fields": [f for f in fields.split(",") if f]}


def _v1_csv(ctx: Context, up: Mapping[str, Any]) -> Iterator[bytes]:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)
    w.writerow(["Id", "Success", "Created", "Error"])
    for outcome in _outcomes(ctx, up["id"]):
        ok = isinstance(outcome[1], bool)
        w.writerow([outcome[0] or "", "true" if ok else "false", "true" if ok and outcome[1] else "false",
                    "" if ok else outcome[1]])
        if buf.tell() > 1 << 16:
            yield _drain(buf)
    yield _drain(buf)
