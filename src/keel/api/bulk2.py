"""Bulk API 2.0: ``/services/data/vNN.N/jobs/ingest`` and ``/jobs/query`` (salesforce-api.md §2.9).

These routes sit before the generic data API because uploads must stream: a batch is written to disk as it arrives
(``keel.services.bulk.Upload``) instead of being read into memory, and result files stream back out. Everything
else (authentication, rate limits, error bodies) is the same as the rest of the REST API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from keel.api.auth import bearer_token
from keel.api.backend import Session
from keel.api.errors import error_body, from_exception, invalid_session, json_response
from keel.context import Context
from keel.errors import ErrorDetail, KeelError
from keel.services import bulk as B
from keel.storage import ids

CSV_TYPE = "text/csv"


def sf_date(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def fail(code: str, message: str, status: int) -> Response:
    return json_response(error_body([ErrorDetail(code, message)]), status)


def keel_error(e: KeelError) -> Response:
    status, body = from_exception(e)
    return json_response(body, status)


async def authenticate(request: Request) -> tuple[Context, Session] | Response:
    """The same checks as the data API: a valid token, API permission, and the per-user rate limit."""
    token = bearer_token(request.headers)
    if token is None:
        return invalid_session()

    def resolve() -> tuple[Context, Session] | Response:
        state = request.app.state
        session: Session | None = state.auth.resolve(state.ctx, token)
        if session is None:
            return invalid_session()
        if not session.api_enabled:
            return fail("API_CURRENTLY_DISABLED", "API is disabled for this User", 403)
        retry = state.limits.hit((f"u:{session.user_id}", f"t:{token}"))
        if retry is not None:
            return json_response(error_body([ErrorDetail("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")]),
                                 403, {"Retry-After": str(retry)})
        if not getattr(state, "bulk_ready", False):  # first bulk call of this app: create the job tables
            B.ensure_tables(state.ctx)
            state.bulk_ready = True
        return state.ctx.as_actor(session.actor), session

    return await run_in_threadpool(resolve)


def notify(request: Request) -> None:
    worker = getattr(request.app.state, "bulk_worker", None)
    if worker is not None:
        worker.notify()


def job_info(job: B.Job) -> dict[str, Any]:
    """Every field jsforce and simple-salesforce read (counters as ints)."""
    info: dict[str, Any] = {
        "id": job.id, "operation": job.operation, "object": job.object,
        "createdById": ids.encode("005", job.owner_pk), "createdDate": sf_date(job.created),
        "systemModstamp": sf_date(job.modstamp), "state": job.state, "concurrencyMode": "Parallel",
        "contentType": "CSV", "apiVersion": float(job.api_version), "jobType": job.job_type,
        "lineEnding": job.line_ending, "columnDelimiter": job.delimiter,
        "numberRecordsProcessed": job.processed, "retries": job.retries,
        "totalProcessingTime": job.total_ms, "apiActiveProcessingTime": job.total_ms, "apexProcessingTime": 0,
    }
    if job.is_query:
        info["query"] = job.query
    else:
        info["numberRecordsFailed"] = job.failed
        info["contentUrl"] = f"services/data/v{job.api_version}/jobs/ingest/{job.id}/batches"
        if job.external_id:
            info["externalIdFieldName"] = job.external_id
    if job.error:
        info["errorMessage"] = job.error
    return info


async def endpoint(request: Request) -> Response:
    ver = request.path_params["ver"]
    if not (ver[:1] in "vV" and ver[1:].replace(".", "", 1).isdigit()):
        return fail("NOT_FOUND", "The requested resource does not exist", 404)
    parts = [p for p in request.path_params["rest"].split("/") if p]
    if not parts or parts[0].lower() not in ("ingest", "query"):
        return fail("NOT_FOUND", "The requested resource does not exist", 404)
    who = await authenticate(request)
    if isinstance(who, Response):
        return who
    ctx, _session = who
    kind = parts[0].lower()
    method = request.method
    try:
        if len(parts) == 1:
            if method == "POST":
                spec = await _json(request)
                job = await run_in_threadpool(
                    B.create_job, ctx, spec, job_type="V2Query" if kind == "query" else "V2Ingest",
                    api_version=ver[1:])
                notify(request)
                return json_response(job_info(job))
            if method in ("GET", "HEAD"):
                jobs = await run_in_threadpool(B.list_jobs, ctx, kind=kind)
                return json_response({"done": True, "records": [job_info(j) for j in jobs],
                                      "nextRecordsUrl": None})
            return _not_allowed(method, "GET, POST")
        job_id = parts[1]
        if len(parts) == 2:
            return await _job(request, ctx, kind, job_id)
        if len(parts) == 3:
            return await _sub(request, ctx, kind, job_id, parts[2].lower())
    except KeelError as e:
        return keel_error(e)
    return fail("NOT_FOUND", "The requested resource does not exist", 404)


def _not_allowed(method: str, allowed: str) -> Response:
    return fail("METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are {allowed}", 405)


async def _json(request: Request) -> dict[str, Any]:
    import orjson

    body = await request.body()
    try:
        data = orjson.loads(body or b"null")
    except orjson.JSONDecodeError as e:
        raise KeelError(f"The request body is not valid JSON: {e}", code="JSON_PARSER_ERROR") from None
    if not isinstance(data, dict):
        raise KeelError("The request body must be a JSON object.", code="JSON_PARSER_ERROR")
    return data


def _read(ctx: Context, job_id: str, kind: str) -> B.Job:
    with ctx.db.read() as conn:
        job = B.read_job(ctx, conn, job_id)
    if (kind == "query") != (job.job_type == "V2Query") or job.job_type == "Classic":
        raise KeelError(f"Unknown job id: {job_id}", code="NOT_FOUND")
    return job


async def _job(request: Request, ctx: Context, kind: str, job_id: str) -> Response:
    method = request.method
    if method in ("GET", "HEAD"):
        return json_response(job_info(await run_in_threadpool(_read, ctx, job_id, kind)))
    if method == "PATCH":
        spec = await _json(request)
        await run_in_threadpool(_read, ctx, job_id, kind)
        job = await run_in_threadpool(B.set_state, ctx, job_id, str(spec.get("state") or ""))
        notify(request)
        return json_response(job_info(job))
    if method == "DELETE":
        await run_in_threadpool(_read, ctx, job_id, kind)
        await run_in_threadpool(B.delete_job, ctx, job_id)
        return Response(b"", 204)
    return _not_allowed(method, "GET, PATCH, DELETE")


async def _sub(request: Request, ctx: Context, kind: str, job_id: str, what: str) -> Response:
    method = request.method
    if kind == "ingest" and what == "batches":
        if method != "PUT":
            return _not_allowed(method, "PUT")
        job = await run_in_threadpool(_read, ctx, job_id, kind)
        if job.state != "Open":
            raise KeelError(f"The job is {job.state}; data can only be uploaded to an Open job.", code="INVALIDJOB")
        await receive_upload(request, ctx, job)
        return Response(b"", 201)
    if method not in ("GET", "HEAD"):
        return _not_allowed(method, "GET")
    job = await run_in_threadpool(_read, ctx, job_id, kind)
    if job.expired:
        raise KeelError(f"The job's results have expired: they are kept for {B.limits(ctx).retention_days} days.",
                        code="INVALIDJOB")
    if kind == "ingest" and what in ("successfulresults", "failedresults", "unprocessedrecords"):
        from keel.services.bulk_results import ingest_results

        return csv_stream(lambda: ingest_results(ctx, job, what))
    if kind == "query" and what == "results":
        return await run_in_threadpool(_query_page, ctx, job, dict(request.query_params))
    return fail("NOT_FOUND", "The requested resource does not exist", 404)


async def receive_upload(request: Request, ctx: Context, job: B.Job, kind: str = "csv") -> int:
    """Stream the body to a durable file; returns the upload id once it is fsync'ed and recorded."""
    up = await run_in_threadpool(B.Upload, ctx, job, kind)
    try:
        async for data in request.stream():
            if data:
                up.write(data)
        upload_id = await run_in_threadpool(up.commit)
    except KeelError as e:
        up.discard()
        if e.code == "INVALIDBATCH":
            await run_in_threadpool(B.fail_job, ctx, job.id, e.message)
        raise
    except BaseException:
        up.discard()
        raise
    notify(request)
    return upload_id


def csv_stream(make: Callable[[], Iterator[bytes]], headers: dict[str, str] | None = None) -> Response:
    # Set the header directly: Starlette would append "; charset=utf-8" to a text/* media type.
    return StreamingResponse(make(), 200, headers={**(headers or {}), "content-type": CSV_TYPE})


def _query_page(ctx: Context, job: B.Job, params: dict[str, str]) -> Response:
    from keel.services.bulk_query import result_page

    if job.state != "JobComplete":
        raise KeelError(f"The job is {job.state}; results are available once it is JobComplete.", code="INVALIDJOB")
    with ctx.db.read() as conn:
        res = [u for u in B.uploads_of(conn, job.pk) if u["kind"] == "result"]
    if not res:
        raise KeelError("The job's results have expired.", code="INVALIDJOB")
    try:
        start = int(params.get("locator") or 0)
        max_records = int(params.get("maxRecords") or 50_000)
    except ValueError:
        raise KeelError("Invalid locator or maxRecords.", code="INVALID_QUERY_LOCATOR") from None
    if start < 0 or max_records <= 0:
        raise KeelError("Invalid locator or maxRecords.", code="INVALID_QUERY_LOCATOR")
    body, n, nxt = result_page(res[0]["result_path"], int(res[0]["result_rows"]), start, max_records)
    return Response(body, 200, headers={"Sforce-Locator": "null" if nxt is None else str(nxt),
                                        "Sforce-NumberOfRecords": str(n), "content-type": CSV_TYPE})
