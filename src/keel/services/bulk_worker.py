"""The bulk worker: turns uploaded CSV into records, chunk by chunk, and materialises query jobs.

Crash safety rests on one rule: a chunk's records, its results and its progress marker (``rows_done`` on the
upload) are written in ONE transaction, and the marker is re-read inside that transaction before anything is
written. After a crash the worker reads the marker, skips that many rows of the (durable) upload and carries on,
so no row is lost and none is written twice. The uploaded file is read with the csv module in a streaming fashion:
memory holds one chunk, never the upload.

The worker runs as a daemon thread in the server process (``keel up`` / ``keel serve``); ``run_pending`` does one
pass and is what tests and the CLI call directly.
"""

from __future__ import annotations

import csv
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.context import SYSTEM_ACTOR, Context
from keel.errors import ErrorDetail, KeelError, RowResult
from keel.metadata.model import FieldDef, ObjectDef, SchemaSnapshot
from keel.records import delete_many, hard_delete_many, save_many, upsert_many
from keel.records.gcpause import gc_paused
from keel.records.validate import match_external_ids
from keel.services import bulk as B
from keel.services import bulk_tables as T
from keel.storage import ids

log = logging.getLogger("keel.bulk")
NULL = "#N/A"


class JobFailure(Exception):
    """The whole job cannot go on (bad header, unreadable file): it is marked Failed with this message."""


class Moved(Exception):
    """Another worker advanced the marker first; this pass stops without writing."""


def read_csv(path: str, sep: str) -> Iterator[list[str]]:
    """Rows of an upload, header first. Strict parsing: bad quoting (text after a closing quote, a quote left open
    at the end) fails the job with the line number, rather than silently gluing rows together."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter=sep, strict=True)
        try:
            yield from reader
        except csv.Error as e:
            raise JobFailure(f"InvalidBatch : the CSV cannot be parsed near line {reader.line_num}: {e}") from None
        except UnicodeDecodeError as e:
            raise JobFailure(f"InvalidBatch : the upload is not valid UTF-8: {e}") from None


@dataclass
class Column:
    index: int
    name: str
    field: str | None = None  # api name written in the draft
    target: ObjectDef | None = None  # relationship column: the parent object ...
    ext: FieldDef | None = None  # ... and its external id field


@dataclass
class Layout:
    header: list[str]
    columns: list[Column] = field(default_factory=list)
    id_index: int | None = None
    key_index: int | None = None  # upsert key column


def layout(schema: SchemaSnapshot, job: B.Job, header: list[str]) -> Layout:
    """Map a header onto fields; unknown columns fail the job, as in Salesforce ("Field name not found")."""
    obj = schema.get_object(job.object)
    out = Layout(header)
    if not header or header == [""]:
        raise JobFailure("InvalidBatch : the upload is empty; a header row of field names is required.")
    seen: set[str] = set()
    for i, raw in enumerate(header):
        name = raw.strip().lstrip("\ufeff")
        if not name:
            raise JobFailure(f"InvalidBatch : column {i + 1} of the header has no name.")
        if name.lower() in seen:
            raise JobFailure(f"InvalidBatch : duplicate column {name} in the header.")
        seen.add(name.lower())
        if name.lower() == "id":
            out.id_index = i
            continue
        if job.operation in ("delete", "hardDelete"):
            continue  # only Id matters; Salesforce ignores the rest
        if "." in name:
            rel, _, ext = name.partition(".")
            lookup = obj.find_relationship(rel) or obj.find_field(rel)
            target = schema.find_object(lookup.reference_to[0]) if lookup and lookup.reference_to else None
            ext_field = target.find_field(ext) if target else None
            if lookup is None or target is None or ext_field is None or not (
                    ext_field.external_id or ext_field.unique or ext_field.api_name == "Id"):
                raise JobFailure(f"InvalidBatch : Field name not found : {name} (a relationship column must name "
                                 "a lookup and an external id field of its parent)")
            out.columns.append(Column(i, name, lookup.api_name, target, ext_field))
            continue
        f = obj.find_field(name)
        if f is None:
            raise JobFailure(f"InvalidBatch : Field name not found : {name}")
        out.columns.append(Column(i, name, f.api_name))
        if job.external_id and f.api_name == job.external_id:
            out.key_index = i
    if job.operation in ("delete", "hardDelete", "update") and out.id_index is None:
        raise JobFailure(f"InvalidBatch : an {job.operation} job needs an Id column.")
    if job.operation == "upsert" and job.external_id != "Id" and out.key_index is None:
        raise JobFailure(f"InvalidBatch : the upsert key column {job.external_id} is missing.")
    if job.operation == "upsert" and job.external_id == "Id" and out.id_index is None:
        raise JobFailure("InvalidBatch : the upsert key column Id is missing.")
    return out


def error_text(errors: Sequence[ErrorDetail]) -> str:
    """``CODE:message:fields --`` per error, the form of Salesforce's ``sf__Error``."""
    return " ".join(f"{e.code}:{e.message}:{','.join(e.fields)} --" for e in errors)


def apply_chunk(ctx: Context, conn: Connection, job: B.Job, lay: Layout, rows: Sequence[list[str]],
                ) -> list[list[Any]]:
    """Write one chunk as the job's user with partial success; one ``[id|None, created|error]`` per row."""
    n = len(rows)
    out: list[list[Any] | None] = [None] * n
    width = len(lay.header)
    ok: list[int] = []
    for i, row in enumerate(rows):
        if len(row) != width:
            out[i] = [None, f"MALFORMED_ROW:Row has {len(row)} values but the header has {width}: --"]
        else:
            ok.append(i)
    if job.operation in ("delete", "hardDelete"):
        assert lay.id_index is not None
        idx = lay.id_index
        fn = hard_delete_many if job.operation == "hardDelete" else delete_many
        res = fn(ctx, job.object, [rows[i][idx] for i in ok], all_or_none=False, conn=conn)
        return _merge(out, ok, res, [rows[i][idx] or None for i in ok])
    drafts: list[dict[str, Any]] = []
    keep: list[int] = []
    parents = _resolve_parents(conn, ctx.schema(conn), lay, [rows[i] for i in ok])
    # The common shape: every column a plain field, no Id column. A row with no empty cell and no #N/A is then
    # exactly ``dict(zip(fields, row))``; the others take the general path below.
    names = [c.field or "" for c in lay.columns]
    plain = lay.id_index is None and [c.index for c in lay.columns] == list(range(width)) and all(
        c.ext is None for c in lay.columns)
    for pos, i in enumerate(ok):
        row = rows[i]
        if plain and "" not in row and NULL not in row:
            drafts.append(dict(zip(names, row, strict=True)))
            keep.append(pos)
            continue
        d, bad = _draft(job, lay, row, parents)
        if bad is not None:
            out[i] = [row[lay.id_index] if lay.id_index is not None else None, bad]
            continue
        drafts.append(d)
        keep.append(pos)
    good = [ok[p] for p in keep]
    if job.operation == "upsert":
        res = upsert_many(ctx, job.object, drafts, job.external_id or "Id", all_or_none=False, conn=conn)
    else:
        res = save_many(ctx, job.object, drafts, all_or_none=False, conn=conn)
    return _merge(out, good, res, [d.get("Id") for d in drafts])


def _draft(job: B.Job, lay: Layout, row: list[str], parents: dict[int, dict[str, str | list[str]]],
           ) -> tuple[dict[str, Any], str | None]:
    """One CSV row as a draft: empty cells left out, ``#N/A`` as null, relationship columns resolved; or the
    row's ``sf__Error`` text."""
    d: dict[str, Any] = {}
    for c in lay.columns:
        v = row[c.index]
        if v == "":
            continue  # empty means "leave unchanged"
        if c.ext is not None:
            if v == NULL:
                d[c.field or ""] = None
                continue
            hit = parents[c.index].get(v)
            if not isinstance(hit, str):
                return d, (f"INVALID_FIELD:Foreign key external ID: {v} not found for field {c.ext.api_name} in "
                           f"entity {c.target.api_name if c.target else ''}:{c.name} --" if not hit else
                           f"DUPLICATE_EXTERNAL_ID:More than 1 record found for external id field: {v}:{c.name} --")
            d[c.field or ""] = hit
        else:
            d[c.field or ""] = None if v == NULL else v
    if lay.id_index is not None:
        rid = row[lay.id_index]
        if job.operation == "insert" and rid:
            return d, "INVALID_FIELD_FOR_INSERT_UPDATE:cannot specify Id in an insert call:Id --"
        if job.operation == "update" and not rid:
            return d, "MISSING_ARGUMENT:Id not specified in an update call:Id --"
        if rid:
            d["Id"] = rid
    return d, None


def _merge(out: list[list[Any] | None], positions: Sequence[int], results: Sequence[RowResult],
           given_ids: Sequence[Any]) -> list[list[Any]]:
    for pos, r, given in zip(positions, results, given_ids, strict=True):
        if r.errors:
            out[pos] = [r.id or given, error_text(r.errors)]
        else:
            out[pos] = [r.id, bool(r.created)]
    return [o if o is not None else [None, "UNKNOWN_EXCEPTION:row was not processed: --"] for o in out]


def _resolve_parents(conn: Connection, schema: SchemaSnapshot, lay: Layout, rows: Sequence[list[str]],
                     ) -> dict[int, dict[str, str | list[str]]]:
    """One query per relationship column per chunk: external id value -> parent id (or the list of matches)."""
    out: dict[int, dict[str, str | list[str]]] = {}
    for c in lay.columns:
        if c.ext is None or c.target is None:
            continue
        values = sorted({r[c.index] for r in rows if r[c.index] not in ("", NULL)})
        found = match_external_ids(conn, schema, c.target, c.ext, [{c.ext.api_name: v} for v in values])
        out[c.index] = {v: found.get(i, []) for i, v in enumerate(values)}
    return out


# -- running jobs ------------------------------------------------------------------------------------------------


def pending_jobs(ctx: Context) -> list[int]:
    """Jobs with work: Bulk 2.0 jobs once closed, Bulk 1.0 jobs whose batches are queued, query jobs to run."""
    u = T.uploads
    with ctx.db.read() as conn:
        obj, t = B._job_object(ctx, conn)
        state = t.c[obj.get_field("State").column or ""]
        jtype = t.c[obj.get_field("JobType").column or ""]
        v2 = sa.select(t.c.id).where(t.c.is_deleted == sa.false(), jtype != "Classic",
                                     state.in_(("UploadComplete", "InProgress")))
        v1 = sa.select(u.c.job_id).distinct().join(t, t.c.id == u.c.job_id).where(
            jtype == "Classic", u.c.state.in_(("Queued", "InProgress")))
        found = {int(x) for x in conn.execute(v2).scalars()} | {int(x) for x in conn.execute(v1).scalars()}
    return sorted(found)


def run_pending(ctx: Context, *, stop: threading.Event | None = None) -> int:
    """Process every job with work, oldest first; returns how many jobs were touched."""
    n = 0
    for pk in pending_jobs(ctx):
        if stop is not None and stop.is_set():
            break
        run_job(ctx, pk, stop=stop)
        n += 1
    return n


TRANSIENT = frozenset({"STORAGE_LIMIT_EXCEEDED"})  # errors a later pass can get past
PAUSED = "Paused: "  # ErrorMessage of an InProgress job stopped by a TRANSIENT error, so its owner can see why


def _note_pause(ctx: Context, job_id: str, message: str, sys_ctx: Context) -> None:
    """Show the owner why an InProgress job stopped moving. The disk may still be full, so this can fail too; the
    log line above is then the only trace, and the job resumes all the same."""
    try:
        with ctx.db.transaction() as conn:
            B.write_job(ctx, conn, {"Id": job_id, "ErrorMessage": message}, reason="", sys_ctx=sys_ctx)
    except (KeelError, sa.exc.SQLAlchemyError) as e:
        log.warning("bulk job %s: could not record the pause: %s", job_id, e)


def run_job(ctx: Context, pk: int, *, stop: threading.Event | None = None) -> None:
    job_id = ids.encode(B.JOB_PREFIX, pk)
    with ctx.db.transaction() as conn:
        job = B._load(ctx, conn, pk, for_update=True)
        if job is None or job.state in ("Aborted", "Failed", "JobComplete"):
            if job is not None:  # nothing more will run: queued batches of an aborted job are not processed
                conn.execute(sa.update(T.uploads).where(T.uploads.c.job_id == pk, T.uploads.c.state.in_(
                    ("Queued", "InProgress"))).values(state="NotProcessed"))
            return
        if job.job_type != "Classic" and job.state == "Open":
            return  # Bulk 2.0 data is processed only after UploadComplete
        sys_ctx = B._as_system(ctx, conn, f"bulk worker runs job {job_id}")
        if job.job_type != "Classic" and job.state == "UploadComplete":
            B.write_job(ctx, conn, {"Id": job_id, "State": "InProgress", "StartedDate": ctx.clock()},
                        reason="", sys_ctx=sys_ctx)
        elif (job.error or "").startswith(PAUSED):  # resuming: the pause note no longer describes the job
            B.write_job(ctx, conn, {"Id": job_id, "ErrorMessage": None}, reason="", sys_ctx=sys_ctx)
    from keel.services.security import user_context

    started = time.monotonic()
    try:
        # A job owned by the system user (``keel import --bulk``) runs in the audited system context.
        user_ctx = sys_ctx if job.owner_pk == SYSTEM_ACTOR.user_id else user_context(ctx, job.owner_pk)
        if job.job_type == "V2Query":
            from keel.services.bulk_query import materialise_v2

            materialise_v2(user_ctx, job, stop)
        else:
            _run_uploads(user_ctx, sys_ctx, job, stop)
    except JobFailure as e:
        B.fail_job(ctx, job_id, str(e), sys_ctx=sys_ctx)
        return
    except Moved:
        return
    except KeelError as e:
        if e.code in TRANSIENT:  # e.g. a full disk: the job stays InProgress and resumes from its progress marker
            log.warning("bulk job %s paused: %s", job_id, e.message)
            _note_pause(ctx, job_id, f"{PAUSED}{e.code}: {e.message} The job resumes where it stopped once there "
                                     "is room.", sys_ctx)
            return
        B.fail_job(ctx, job_id, f"{e.code}: {e.message}", sys_ctx=sys_ctx)
        return
    except Exception as e:  # a bug: the job must still end, never hang in InProgress
        log.exception("bulk job %s failed", job_id)
        B.fail_job(ctx, job_id, f"UNKNOWN_EXCEPTION: {type(e).__name__}: {e}", sys_ctx=sys_ctx)
        return
    if stop is not None and stop.is_set():
        return
    if job.job_type != "Classic":
        with ctx.db.transaction() as conn:
            cur = B._load(ctx, conn, pk, for_update=True)
            if cur is None or cur.state != "InProgress":
                return
            B.write_job(ctx, conn, {"Id": job_id, "State": "JobComplete", "CompletedDate": ctx.clock(),
                                    "NumberRecordsProcessed": cur.processed, "NumberRecordsFailed": cur.failed,
                                    "TotalProcessingTime": cur.total_ms + int((time.monotonic() - started) * 1000)},
                        reason="", sys_ctx=sys_ctx)


def _run_uploads(ctx: Context, sys_ctx: Context, job: B.Job, stop: threading.Event | None) -> None:
    with ctx.db.read() as conn:
        ups = [dict(u) for u in B.uploads_of(conn, job.pk)]
    for up in ups:
        if up["state"] in ("Completed", "Failed", "NotProcessed"):
            continue
        if up["kind"] == "query":
            from keel.services.bulk_query import materialise_v1

            materialise_v1(ctx, sys_ctx, job, up)
            continue
        try:
            _run_upload(ctx, sys_ctx, job, up, stop)
        except JobFailure as e:
            if job.job_type != "Classic":
                raise
            with ctx.db.transaction() as conn:  # Bulk 1.0: a bad batch fails alone
                conn.execute(sa.update(T.uploads).where(T.uploads.c.id == up["id"]).values(
                    state="Failed", state_message=str(e), done_date=ctx.clock()))
        if stop is not None and stop.is_set():
            return


def _run_upload(ctx: Context, sys_ctx: Context, job: B.Job, up: Mapping[str, Any],
                stop: threading.Event | None) -> None:
    chunk_rows = B.limits(ctx).chunk_rows
    rows = read_csv(up["path"], job.sep)
    header = next(rows, [])
    done = int(up["rows_done"])
    lay = layout(ctx.schema(), job, header)
    rows = (r for r in rows if r)  # blank lines are not records
    for _ in islice(rows, done):
        pass
    while True:
        if stop is not None and stop.is_set():
            return
        part = list(islice(rows, chunk_rows))
        last = len(part) < chunk_rows
        if not _write_chunk(ctx, sys_ctx, job, lay, up, done, part, last):
            return  # aborted
        done += len(part)
        if last:
            return


def _write_chunk(ctx: Context, sys_ctx: Context, job: B.Job, lay: Layout, up: Mapping[str, Any], first: int,
                 part: list[list[str]], last: bool) -> bool:
    """Records, results and marker in one transaction; False when the job was aborted meanwhile."""
    u = T.uploads
    with ctx.db.transaction() as conn:
        q = sa.select(u.c.rows_done, u.c.state).where(u.c.id == up["id"])
        if ctx.db.dialect == "postgresql":
            q = q.with_for_update()
        marker = conn.execute(q).one()
        if int(marker.rows_done) != first or marker.state in ("Completed", "NotProcessed"):
            raise Moved()
        cur = B._load(ctx, conn, job.pk)
        if cur is None or cur.state in ("Aborted", "Failed"):
            return False
        with gc_paused(len(part)):
            results = apply_chunk(ctx, conn, job, lay, part) if part else []
        failed = sum(1 for r in results if not isinstance(r[1], bool))
        if part:
            conn.execute(sa.insert(T.chunks).values(upload_id=up["id"], first_row=first, row_count=len(part),
                                                    failed=failed, results=orjson.dumps(results)))
        values: dict[str, Any] = {"rows_done": first + len(part), "rows_failed": u.c.rows_failed + failed,
                                  "state": "Completed" if last else "InProgress"}
        if last:
            values["done_date"] = ctx.clock()
        conn.execute(sa.update(u).where(u.c.id == up["id"]).values(**values))
        B.write_job(ctx, conn, {"Id": job.id, "NumberRecordsProcessed": cur.processed + len(part),
                                "NumberRecordsFailed": cur.failed + failed}, reason="", sys_ctx=sys_ctx)
    return True


class BulkWorker:
    """A daemon thread polling for bulk work; ``notify`` wakes it at once (set as ``ctx.extras['bulk_notify']``)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_sweep = 0.0

    def notify(self) -> None:
        self._wake.set()

    def start(self) -> BulkWorker:
        B.ensure_tables(self.ctx)
        self._thread = threading.Thread(target=self._loop, name="keel-bulk-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        poll = B.limits(self.ctx).poll_seconds
        while not self._stop.is_set():
            self._wake.clear()
            try:
                busy = run_pending(self.ctx, stop=self._stop)
                if time.monotonic() - self._last_sweep > 3600:
                    self._last_sweep = time.monotonic()
                    B.sweep(self.ctx)
            except Exception:
                log.exception("bulk worker pass failed")
                busy = 0
            if not busy:
                self._wake.wait(poll)
