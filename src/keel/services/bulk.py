"""Bulk jobs (Bulk API 2.0 and 1.0): creating jobs, storing uploads durably, state changes, job info.

A job IS a ``BulkJob`` record (key prefix ``750``), written through ``save_many`` as the audited system context and
owned by the user who created it, so jobs are queryable in SOQL with the usual sharing (users see their own jobs,
administrators every job). Uploaded CSV goes to a file under ``data_dir/bulk/<job>/`` that is fsync'ed and recorded
in ``keel_bulk_upload`` before the upload is acknowledged. The worker (``bulk_worker``) turns uploads into records
chunk by chunk; result files are produced on request by ``bulk_results``.

The API layers (``api/bulk2.py``, ``api/bulk1.py``) only translate HTTP to these functions.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.context import Context
from keel.errors import BatchError, KeelError
from keel.metadata.model import ObjectDef
from keel.metadata.tables import table_for
from keel.records import save_many
from keel.services import bulk_tables as T
from keel.settings import Settings
from keel.storage import ids

JOB_OBJECT = "BulkJob"
JOB_PREFIX = "750"
BATCH_PREFIX = "751"
RESULT_PREFIX = "752"
DELIMITERS = {"BACKQUOTE": "`", "CARET": "^", "COMMA": ",", "PIPE": "|", "SEMICOLON": ";", "TAB": "\t"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
INGEST_OPS = ("insert", "update", "upsert", "delete", "hardDelete")
QUERY_OPS = ("query", "queryAll")
TERMINAL = ("JobComplete", "Failed", "Aborted", "Closed")
EXPIRED_NOTE = "Results expired after the retention period."
ACTIVE = ("Open", "UploadComplete", "InProgress")


@dataclass(frozen=True)
class BulkLimits:
    """Limits of the bulk engine. Defaults follow Salesforce's where it has one (150 MB per upload, 7 days of
    results); they come from the ``bulk_*`` settings (``KEEL_BULK_*`` or ``keel.toml``), see docs/bulk.md."""

    max_upload_bytes: int = 150 * 1024 * 1024
    max_job_bytes: int = 2 * 1024 * 1024 * 1024
    max_active_jobs_per_user: int = 25
    retention_days: int = 7
    chunk_rows: int = 10_000
    poll_seconds: float = 0.5

    @classmethod
    def from_settings(cls, settings: Settings) -> BulkLimits:
        return cls(max_upload_bytes=settings.bulk_max_upload_bytes, max_job_bytes=settings.bulk_max_job_bytes,
                   max_active_jobs_per_user=settings.bulk_max_active_jobs_per_user,
                   retention_days=settings.bulk_retention_days, chunk_rows=settings.bulk_chunk_rows,
                   poll_seconds=settings.bulk_poll_seconds)


def limits(ctx: Context) -> BulkLimits:
    """The organisation's settings, unless a caller put a ``BulkLimits`` of its own in the context's extras."""
    found = ctx.extras.get("bulk_limits")
    return found if isinstance(found, BulkLimits) else BulkLimits.from_settings(ctx.settings)


def bulk_error(message: str, code: str = "INVALIDJOB") -> KeelError:
    return KeelError(message, code=code)


@dataclass
class Job:
    pk: int
    id: str
    job_type: str  # V2Ingest | V2Query | Classic
    operation: str
    object: str
    state: str
    owner_pk: int
    external_id: str | None = None
    content_type: str = "CSV"
    delimiter: str = "COMMA"
    line_ending: str = "LF"
    concurrency: str = "Parallel"
    api_version: str = "59.0"
    query: str | None = None
    error: str | None = None
    created: datetime | None = None
    modstamp: datetime | None = None
    started: datetime | None = None
    completed: datetime | None = None
    retries: int = 0
    total_ms: int = 0
    processed: int = 0
    failed: int = 0
    batches: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_query(self) -> bool:
        return self.operation in QUERY_OPS

    @property
    def expired(self) -> bool:
        """The retention sweep removed the uploads and results; the record and its counters remain."""
        return EXPIRED_NOTE in (self.error or "")

    @property
    def sep(self) -> str:
        return DELIMITERS.get(self.delimiter, ",")

    @property
    def eol(self) -> str:
        return LINE_ENDINGS.get(self.line_ending, "\n")


# Job record fields and Job attributes, in one place.
_FIELDS = {"JobType": "job_type", "Operation": "operation", "SObjectType": "object", "State": "state",
           "ExternalIdFieldName": "external_id", "ContentType": "content_type", "ColumnDelimiter": "delimiter",
           "LineEnding": "line_ending", "ConcurrencyMode": "concurrency", "ApiVersion": "api_version",
           "QueryText": "query", "ErrorMessage": "error", "StartedDate": "started", "CompletedDate": "completed",
           "Retries": "retries", "TotalProcessingTime": "total_ms"}


def ensure_tables(ctx: Context) -> None:
    with ctx.db.transaction() as conn:
        T.create_bulk_tables(conn)
        if ctx.schema(conn).find_object(JOB_OBJECT) is None:
            raise bulk_error("This organisation has no BulkJob object; it was initialised by an older Keel. Apply "
                             "the standard package (keel apply) to enable bulk jobs.", "FUNCTIONALITY_NOT_ENABLED")


def job_dir(ctx: Context, job_id: str) -> Path:
    return Path(ctx.settings.data_dir) / "bulk" / job_id


def _job_object(ctx: Context, conn: Connection) -> tuple[ObjectDef, sa.Table]:
    schema = ctx.schema(conn)
    obj = schema.find_object(JOB_OBJECT)
    if obj is None:
        raise bulk_error("Bulk jobs are not enabled: the BulkJob object is missing.", "FUNCTIONALITY_NOT_ENABLED")
    return obj, table_for(schema, obj)


def _as_system(ctx: Context, conn: Connection, reason: str) -> Context:
    from keel.services.security import system_context

    return system_context(ctx, reason, conn=conn)


def write_job(ctx: Context, conn: Connection, values: dict[str, Any], *, reason: str,
              sys_ctx: Context | None = None) -> str:
    """Create or update the job record through the lifecycle, as the audited system."""
    sctx = sys_ctx or _as_system(ctx, conn, reason)
    try:
        res = save_many(sctx, JOB_OBJECT, [values], conn=conn)[0]
    except BatchError as e:
        raise bulk_error("; ".join(d.message for d in e.details()), "UNKNOWN_EXCEPTION") from None
    assert res.id is not None
    return res.id


def read_job(ctx: Context, conn: Connection, job_id: str, *, for_update: bool = False) -> Job:
    """A job as the acting user may see it: their own, or any job for users who may view all jobs."""
    try:
        pk = ids.decode(job_id, JOB_PREFIX)
    except KeelError:
        raise bulk_error(f"Unknown job id: {job_id}", "NOT_FOUND") from None
    job = _load(ctx, conn, pk, for_update=for_update)
    if job is None or not _visible(ctx, job):
        raise bulk_error(f"Unknown job id: {job_id}", "NOT_FOUND")
    return job


def _visible(ctx: Context, job: Job) -> bool:
    a = ctx.actor
    return a.is_system or job.owner_pk == a.user_id or a.access.can(JOB_OBJECT, "view_all")


def _load(ctx: Context, conn: Connection, pk: int, *, for_update: bool = False) -> Job | None:
    obj, t = _job_object(ctx, conn)
    q = sa.select(t).where(t.c.id == pk, t.c.is_deleted == sa.false())
    if for_update and ctx.db.dialect == "postgresql":
        q = q.with_for_update()
    row = conn.execute(q).mappings().first()
    if row is None:
        return None
    job = _from_row(obj, row)
    _counters(conn, [job])
    return job


def _from_row(obj: ObjectDef, row: Mapping[Any, Any]) -> Job:
    kw: dict[str, Any] = {}
    for fname, attr in _FIELDS.items():
        col = obj.get_field(fname).column
        value = row[col] if col else None
        if attr in ("retries", "total_ms"):
            value = int(value or 0)
        kw[attr] = value
    kw = {k: v for k, v in kw.items() if v is not None}
    # The counters the worker last wrote to the record; the upload rows override them while they exist (see
    # ``_counters``), and after the retention sweep removed those rows these are what is left.
    for fname, attr in (("NumberRecordsProcessed", "processed"), ("NumberRecordsFailed", "failed"),
                        ("NumberBatches", "batches")):
        col = obj.get_field(fname).column
        kw[attr] = int(row[col] or 0) if col else 0
    return Job(pk=row["id"], id=ids.encode(JOB_PREFIX, row["id"]), owner_pk=row["owner_id"],
               created=row["created_date"], modstamp=row["system_modstamp"], **kw)


def _counters(conn: Connection, jobs: list[Job]) -> None:
    """Counters come from the upload rows, which the worker advances in each chunk's transaction."""
    if not jobs:
        return
    u = T.uploads
    by_pk = {j.pk: j for j in jobs}
    q = sa.select(u.c.job_id, sa.func.count(), sa.func.coalesce(sa.func.sum(u.c.rows_done), 0),
                  sa.func.coalesce(sa.func.sum(u.c.rows_failed), 0), sa.func.coalesce(sa.func.sum(u.c.result_rows), 0)
                  ).where(u.c.job_id.in_(list(by_pk))).group_by(u.c.job_id)
    for job_pk, n, done, failed, result_rows in conn.execute(q):
        j = by_pk[job_pk]
        j.batches = int(n)
        j.processed = int(result_rows) if j.is_query else int(done)
        j.failed = int(failed)


def list_jobs(ctx: Context, *, kind: str | None = None, limit: int = 1000) -> list[Job]:
    with ctx.db.read() as conn:
        obj, t = _job_object(ctx, conn)
        q = sa.select(t).where(t.c.is_deleted == sa.false()).order_by(t.c.id.desc()).limit(limit)
        a = ctx.actor
        if not (a.is_system or a.access.can(JOB_OBJECT, "view_all")):
            q = q.where(t.c.owner_id == a.user_id)
        jobs = [_from_row(obj, r) for r in conn.execute(q).mappings()]
        if kind is not None:
            jobs = [j for j in jobs if (j.job_type == "V2Query") == (kind == "query")]
        _counters(conn, jobs)
    return jobs


def create_job(ctx: Context, spec: Mapping[str, Any], *, job_type: str, api_version: str = "59.0") -> Job:
    """Validate a job spec (Bulk 2.0 or 1.0 shape) and create the job as the acting user."""
    op = str(spec.get("operation") or "")
    if op.lower() == "harddelete":
        op = "hardDelete"
    elif op.lower() == "queryall":
        op = "queryAll"
    else:
        op = op.lower()
    allowed = QUERY_OPS if job_type == "V2Query" else INGEST_OPS + (QUERY_OPS if job_type == "Classic" else ())
    if op not in allowed:
        raise bulk_error(f"Invalid operation '{spec.get('operation')}'; expected one of {', '.join(allowed)}.",
                         "INVALIDJOB")
    delimiter = str(spec.get("columnDelimiter") or "COMMA").upper()
    if delimiter not in DELIMITERS:
        raise bulk_error(f"Invalid columnDelimiter '{delimiter}'; expected one of {', '.join(DELIMITERS)}.")
    line_ending = str(spec.get("lineEnding") or "LF").upper()
    if line_ending not in LINE_ENDINGS:
        raise bulk_error(f"Invalid lineEnding '{line_ending}'; expected LF or CRLF.")
    content = str(spec.get("contentType") or "CSV").upper()
    if content not in ("CSV", "JSON", "XML"):
        raise bulk_error(f"Invalid contentType '{content}'.")
    if job_type != "Classic" and content != "CSV":
        raise bulk_error("Bulk API 2.0 jobs take contentType CSV only.")
    actor = ctx.actor
    lim = limits(ctx)
    values: dict[str, Any] = {
        "JobType": job_type, "Operation": op, "ContentType": content, "ColumnDelimiter": delimiter,
        "LineEnding": line_ending, "ApiVersion": api_version, "Retries": 0, "TotalProcessingTime": 0,
        "NumberRecordsProcessed": 0, "NumberRecordsFailed": 0, "NumberBatches": 0, "UploadBytes": 0,
        "ConcurrencyMode": "Serial" if str(spec.get("concurrencyMode")) in ("Serial", "1") else "Parallel",
        "OwnerId": ids.encode("005", actor.user_id),
    }
    with ctx.db.transaction() as conn:
        schema = ctx.schema(conn)
        if op in QUERY_OPS and job_type != "Classic":
            soql = str(spec.get("query") or "").strip()
            if not soql:
                raise bulk_error("A query job needs a 'query'.", "INVALIDJOB")
            _check_soql(ctx, conn, soql, op == "queryAll")
            values.update({"QueryText": soql, "State": "UploadComplete", "SObjectType": _from_object(soql)})
        else:
            name = str(spec.get("object") or "")
            obj = schema.find_object(name)
            if obj is None:
                raise bulk_error(f"sObject type '{name}' is not supported.", "INVALIDJOB")
            needed = {"insert": "create", "update": "edit", "upsert": "edit", "delete": "delete",
                      "hardDelete": "delete", "query": "read", "queryAll": "read"}[op]
            if not actor.access.can(obj.api_name, needed):
                raise bulk_error(f"You do not have permission to {needed} {obj.label} records.", "INSUFFICIENT_ACCESS")
            has = getattr(actor.access, "has", None)
            if op == "hardDelete" and has is not None and not (has("BulkApiHardDelete") or has("ModifyAllData")):
                raise bulk_error("hardDelete needs the Bulk API Hard Delete (or Modify All Data) permission: it "
                                 "bypasses the recycle bin.", "INSUFFICIENT_ACCESS")
            values.update({"SObjectType": obj.api_name, "State": "Open"})
            if op == "upsert":
                ext = str(spec.get("externalIdFieldName") or "")
                f = obj.find_field(ext) if ext else None
                if f is None or not (f.api_name == "Id" or f.external_id or f.unique):
                    raise bulk_error(f"The upsert needs externalIdFieldName naming an external id field of "
                                     f"{obj.api_name}; got '{ext}'.", "INVALIDJOB")
                values["ExternalIdFieldName"] = f.api_name
        _check_active(ctx, conn, lim)
        values["Name"] = f"{op} {values['SObjectType']}"[:80]
        job_id = write_job(ctx, conn, values, reason=f"bulk job create for user {actor.user_id}")
        job = _load(ctx, conn, ids.decode(job_id, JOB_PREFIX))
        assert job is not None
    return job


def _from_object(soql: str) -> str:
    from keel.query import parse

    return parse(soql).from_


def _check_soql(ctx: Context, conn: Connection, soql: str, query_all: bool) -> None:
    """Compile the query as the user now, so a malformed query is a 400 at creation, not a failed job later."""
    from keel.query import compile_soql
    from keel.services.query import soql_options

    opts = soql_options(ctx)
    compile_soql(soql, ctx.schema(conn), dialect=ctx.db.dialect, row_filter=opts["row_filter"],
                 field_mask=opts["field_mask"], formula_sql=opts["formula_sql"], query_all=query_all)


def _check_active(ctx: Context, conn: Connection, lim: BulkLimits) -> None:
    obj, t = _job_object(ctx, conn)
    state = t.c[obj.get_field("State").column or ""]
    n = conn.execute(sa.select(sa.func.count()).select_from(t).where(
        t.c.owner_id == ctx.actor.user_id, t.c.is_deleted == sa.false(), state.in_(ACTIVE))).scalar_one()
    if n >= lim.max_active_jobs_per_user:
        raise bulk_error(f"You have {n} open or running bulk jobs; the limit is {lim.max_active_jobs_per_user}. "
                         "Close or abort a job first.", "LIMIT_EXCEEDED")


def set_state(ctx: Context, job_id: str, state: str) -> Job:
    """Client-requested transitions: UploadComplete (Bulk 2.0 close), Closed (Bulk 1.0 close) and Aborted."""
    with ctx.db.transaction() as conn:
        job = read_job(ctx, conn, job_id, for_update=True)
        if state == "Aborted":
            if job.state in TERMINAL and job.state != "Closed":
                raise bulk_error(f"The job is already {job.state}.", "INVALIDJOB")
        elif state in ("UploadComplete", "Closed"):
            if job.state != "Open":
                raise bulk_error(f"The job is {job.state}; only an Open job can be closed.", "INVALIDJOB")
            if job.job_type == "Classic":
                state = "Closed"
        else:
            raise bulk_error(f"Invalid state '{state}'; use UploadComplete or Aborted.", "INVALIDJOB")
        values: dict[str, Any] = {"Id": job.id, "State": state}
        if state == "Aborted":
            values["CompletedDate"] = ctx.clock()
        write_job(ctx, conn, values, reason=f"bulk job {state} by user {ctx.actor.user_id}")
        found = _load(ctx, conn, job.pk)
        assert found is not None
    notify = ctx.extras.get("bulk_notify")
    if callable(notify):
        notify()
    return found


def delete_job(ctx: Context, job_id: str) -> None:
    """Delete a finished job, its uploads and results (Bulk 2.0 DELETE)."""
    from keel.records.delete import hard_delete_many

    with ctx.db.transaction() as conn:
        job = read_job(ctx, conn, job_id, for_update=True)
        if job.state in ("UploadComplete", "InProgress"):
            raise bulk_error("The job is still running; abort it before deleting it.", "INVALIDJOB")
        _purge(ctx, conn, job)
        sctx = _as_system(ctx, conn, f"bulk job delete by user {ctx.actor.user_id}")
        hard_delete_many(sctx, JOB_OBJECT, [job.id], conn=conn)
    shutil.rmtree(job_dir(ctx, job.id), ignore_errors=True)


def _purge(ctx: Context, conn: Connection, job: Job) -> None:
    u, c = T.uploads, T.chunks
    conn.execute(sa.delete(c).where(c.c.upload_id.in_(sa.select(u.c.id).where(u.c.job_id == job.pk))))
    conn.execute(sa.delete(u).where(u.c.job_id == job.pk))


def sweep(ctx: Context) -> int:
    """Apply the retention period: finished jobs older than it lose their uploads and results, and Open jobs
    idle for longer are aborted. Returns the number of jobs purged."""
    lim = limits(ctx)
    cutoff = ctx.clock() - timedelta(days=lim.retention_days)
    n = 0
    with ctx.db.read() as conn:
        obj, t = _job_object(ctx, conn)
        state = t.c[obj.get_field("State").column or ""]
        old = [(pk, s) for pk, s in conn.execute(sa.select(t.c.id, state).where(
            t.c.is_deleted == sa.false(), t.c.system_modstamp < cutoff, state.notin_(("UploadComplete",
                                                                                      "InProgress"))))]
    for pk, s in old:
        job_id = ids.encode(JOB_PREFIX, pk)
        with ctx.db.transaction() as conn:
            job = _load(ctx, conn, pk)
            if job is None:
                continue
            _purge(ctx, conn, job)
            values: dict[str, Any] = {"Id": job_id}
            if s == "Open":
                values.update({"State": "Aborted", "ErrorMessage": "Aborted: the job stayed open longer than the "
                               f"{lim.retention_days}-day retention period."})
            elif not job.expired:
                values["ErrorMessage"] = f"{job.error or ''} {EXPIRED_NOTE}".strip()
            write_job(ctx, conn, values, reason="bulk retention sweep")
        shutil.rmtree(job_dir(ctx, job_id), ignore_errors=True)
        n += 1
    return n


# -- uploads ---------------------------------------------------------------------------------------------------


class Upload:
    """One batch upload being streamed to disk. ``write`` as bytes arrive; ``commit`` fsyncs the file and records
    it in one transaction, and only then may the API acknowledge it. UTF-8 and size limits are checked while
    streaming, so a bad upload is refused without ever being held in memory."""

    def __init__(self, ctx: Context, job: Job, kind: str = "csv") -> None:
        self.ctx, self.job, self.kind = ctx, job, kind
        lim = limits(ctx)
        self.max_bytes = lim.max_upload_bytes
        self.room = lim.max_job_bytes - _job_bytes(ctx, job.pk)
        d = job_dir(ctx, job.id)
        self.path = d / f"upload-{uuid.uuid4().hex}.{'soql' if kind == 'query' else 'csv'}"
        try:
            d.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "wb")  # noqa: SIM115 - closed in commit/discard
        except OSError as e:
            _raise_if_full(e)
            raise
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise bulk_error(f"The upload is larger than the limit of {self.max_bytes} bytes per batch; split it "
                             "into several jobs.", "LIMIT_EXCEEDED")
        if self.size > self.room:
            raise bulk_error("The job's uploads exceed the limit of "
                             f"{limits(self.ctx).max_job_bytes} bytes per job.", "LIMIT_EXCEEDED")
        try:
            self._decoder.decode(data)
        except UnicodeDecodeError as e:
            raise bulk_error(f"InvalidBatch : the upload is not valid UTF-8 (byte 0x{data[e.start]:02x} near byte "
                             f"{self.size - len(data) + e.start}).", "INVALIDBATCH") from None
        try:
            self._fh.write(data)
        except OSError as e:
            _raise_if_full(e)
            raise

    def commit(self) -> int:
        """fsync the file and its directory, then record the upload. Returns the upload's row id."""
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise bulk_error("InvalidBatch : the upload ends inside a UTF-8 character.", "INVALIDBATCH") from None
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            _raise_if_full(e)
            raise
        u = T.uploads
        with self.ctx.db.transaction() as conn:
            job = read_job(self.ctx, conn, self.job.id, for_update=True)
            if job.state != "Open":
                raise bulk_error(f"The job is {job.state}; data can only be added to an Open job.", "INVALIDJOB")
            seq = conn.execute(sa.select(sa.func.coalesce(sa.func.max(u.c.seq), 0)).where(
                u.c.job_id == job.pk)).scalar_one() + 1
            key = conn.execute(sa.insert(u).values(
                job_id=job.pk, seq=seq, kind=self.kind, path=str(self.path), size=self.size, state="Queued",
                rows_done=0, rows_failed=0, result_rows=0, created_date=self.ctx.clock())).inserted_primary_key
            assert key is not None
            upload_id = int(key[0])
        notify = self.ctx.extras.get("bulk_notify")
        if callable(notify):
            notify()
        return upload_id

    def discard(self) -> None:
        if not self._fh.closed:
            with contextlib.suppress(OSError):  # closing flushes the buffer, which fails again on a full disk
                self._fh.close()
        self.path.unlink(missing_ok=True)


_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # no space, over quota, over the file size limit


def _raise_if_full(e: OSError) -> None:
    """Out of room for uploads is the operator's problem and the client's retry, not a crash; other I/O errors stay
    what they are (a server fault)."""
    if e.errno in _FULL:
        raise KeelError("The server has no room to store this upload (" + (e.strerror or "disk full") + "); nothing "
                        "of it was kept and the job is unchanged. Upload it again when space is available.",
                        code="STORAGE_LIMIT_EXCEEDED") from e


def fail_job(ctx: Context, job_id: str, message: str, *, sys_ctx: Context | None = None) -> None:
    """Mark a job Failed with ``message`` (idempotent for jobs already finished)."""
    with ctx.db.transaction() as conn:
        job = _load(ctx, conn, ids.decode(job_id, JOB_PREFIX), for_update=True)
        if job is None or job.state in ("JobComplete", "Failed", "Aborted"):
            return
        write_job(ctx, conn, {"Id": job_id, "State": "Failed", "ErrorMessage": message[:32000],
                              "CompletedDate": ctx.clock()}, reason="bulk job failed", sys_ctx=sys_ctx)


def _job_bytes(ctx: Context, job_pk: int) -> int:
    u = T.uploads
    with ctx.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(u.c.size), 0)).where(
            u.c.job_id == job_pk)).scalar_one())


def uploads_of(conn: Connection, job_pk: int) -> list[dict[str, Any]]:
    u = T.uploads
    return [dict(r) for r in conn.execute(sa.select(u).where(u.c.job_id == job_pk).order_by(u.c.seq)).mappings()]


def upload_by_id(ctx: Context, conn: Connection, job: Job, batch_id: str) -> dict[str, Any]:
    try:
        pk = ids.decode(batch_id, BATCH_PREFIX)
    except KeelError:
        raise bulk_error(f"Unknown batch id: {batch_id}", "InvalidBatch") from None
    u = T.uploads
    row = conn.execute(sa.select(u).where(u.c.id == pk, u.c.job_id == job.pk)).mappings().first()
    if row is None:
        raise bulk_error(f"Unknown batch id: {batch_id}", "InvalidBatch")
    return dict(row)


def stream_file(path: str | Path, chunk: int = 1 << 16) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while data := f.read(chunk):
            yield data
