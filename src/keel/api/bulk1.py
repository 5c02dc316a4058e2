"""Bulk API 1.0: ``/services/async/{ver}/job…`` (salesforce-api.md §2.10), on the same engine as Bulk 2.0.

Two flavours, chosen by the job's content type: JSON (simple-salesforce ``sf.bulk``: JSON records in, JSON results
out) and XML/CSV (jsforce ``conn.bulk`` and salesforce-bulk: ``jobInfo`` XML, CSV batches, CSV results). A batch is
an upload; JSON batches are converted to CSV on arrival so the worker has one input format. Content-Types are the
bare values salesforce-bulk compares for equality.
"""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import escape

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from keel.api.auth import bearer_token
from keel.api.bulk2 import notify, receive_upload, sf_date
from keel.context import Context
from keel.errors import KeelError
from keel.services import bulk as B
from keel.storage import ids

NS = "http://www.force.com/2009/06/asyncapi/dataload"
JSON = "application/json"
XML = "application/xml"
CSV = "text/csv"
_V1_CODES = {"NOT_FOUND": "InvalidJob", "INVALIDJOB": "InvalidJob", "INVALIDBATCH": "InvalidBatch",
             "InvalidBatch": "InvalidBatch", "LIMIT_EXCEEDED": "ExceededQuota", "INSUFFICIENT_ACCESS": "InvalidJob",
             "JSON_PARSER_ERROR": "InvalidJob", "INVALID_SESSION_ID": "InvalidSessionId"}


def _wants_json(request: Request) -> bool:
    return "json" in request.headers.get("content-type", "").lower()


def _error(code: str, message: str, as_json: bool, status: int = 400) -> Response:
    if as_json:
        return Response(orjson.dumps({"exceptionCode": code, "exceptionMessage": message}), status,
                        headers={"content-type": JSON})
    body = (f'<?xml version="1.0" encoding="UTF-8"?><error xmlns="{NS}"><exceptionCode>{escape(code)}'
            f"</exceptionCode><exceptionMessage>{escape(message)}</exceptionMessage></error>")
    return Response(body.encode(), status, headers={"content-type": XML})


def _reply(data: dict[str, Any] | list[Any], root: str, as_json: bool, status: int = 200) -> Response:
    if as_json:
        return Response(orjson.dumps(data), status, headers={"content-type": JSON})
    assert isinstance(data, dict)
    inner = "".join(f"<{k}>{escape(_xml_text(v))}</{k}>" for k, v in data.items() if v is not None)
    body = f'<?xml version="1.0" encoding="UTF-8"?><{root} xmlns="{NS}">{inner}</{root}>'
    return Response(body.encode(), status, headers={"content-type": XML})


def _xml_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _parse_xml(body: bytes) -> dict[str, str]:
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise KeelError("DOCTYPE is not allowed.", code="INVALIDJOB")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise KeelError(f"Unable to parse the XML request: {e}", code="INVALIDJOB") from None
    return {el.tag.rsplit("}", 1)[-1]: (el.text or "").strip() for el in root}


def job_info(job: B.Job, batches: list[dict[str, Any]]) -> dict[str, Any]:
    states = [b["state"] for b in batches]
    info: dict[str, Any] = {
        "id": job.id, "operation": job.operation, "object": job.object,
        "createdById": ids.encode("005", job.owner_pk), "createdDate": sf_date(job.created),
        "systemModstamp": sf_date(job.modstamp), "state": job.state, "externalIdFieldName": job.external_id,
        "concurrencyMode": job.concurrency, "contentType": job.content_type,
        "numberBatchesQueued": states.count("Queued"), "numberBatchesInProgress": states.count("InProgress"),
        "numberBatchesCompleted": states.count("Completed"), "numberBatchesFailed": states.count("Failed"),
        "numberBatchesTotal": len(states), "numberRecordsProcessed": job.processed, "numberRetries": 0,
        "apiVersion": float(job.api_version), "numberRecordsFailed": job.failed,
        "totalProcessingTime": job.total_ms, "apiActiveProcessingTime": job.total_ms, "apexProcessingTime": 0,
    }
    return info


def batch_info(job: B.Job, up: dict[str, Any]) -> dict[str, Any]:
    return {"id": ids.encode(B.BATCH_PREFIX, up["id"]), "jobId": job.id, "state": up["state"],
            "stateMessage": up["state_message"], "createdDate": sf_date(up["created_date"]),
            "systemModstamp": sf_date(up["done_date"] or up["created_date"]),
            "numberRecordsProcessed": int(up["result_rows"] if up["kind"] == "query" else up["rows_done"]),
            "numberRecordsFailed": int(up["rows_failed"]), "totalProcessingTime": 0,
            "apiActiveProcessingTime": 0, "apexProcessingTime": 0}


async def endpoint(request: Request) -> Response:
    parts = [p for p in request.path_params["rest"].split("/") if p]
    as_json = _wants_json(request)
    token = bearer_token(request.headers)
    if token is None:
        return _error("InvalidSessionId", "Invalid session id", as_json)
    state = request.app.state
    session = await run_in_threadpool(state.auth.resolve, state.ctx, token)
    if session is None or not session.api_enabled:
        return _error("InvalidSessionId", "Invalid session id", as_json)
    if state.limits.hit((f"u:{session.user_id}", f"t:{token}")) is not None:
        return _error("ExceededQuota", "TotalRequests Limit exceeded.", as_json, 403)
    if not getattr(state, "bulk_ready", False):  # first bulk call of this app: create the job tables
        await run_in_threadpool(B.ensure_tables, state.ctx)
        state.bulk_ready = True
    ctx: Context = state.ctx.as_actor(session.actor)
    ver = request.path_params["ver"]
    try:
        return await _route(request, ctx, ver, parts, as_json)
    except KeelError as e:
        return _error(_V1_CODES.get(e.code, e.code), e.message, as_json)


def _load(ctx: Context, job_id: str) -> tuple[B.Job, list[dict[str, Any]]]:
    with ctx.db.read() as conn:
        job = B.read_job(ctx, conn, job_id)
        if job.job_type != "Classic":
            raise KeelError(f"Unknown job id: {job_id}", code="NOT_FOUND")
        return job, [dict(u) for u in B.uploads_of(conn, job.pk)]


async def _route(request: Request, ctx: Context, ver: str, parts: list[str], as_json: bool) -> Response:
    m = request.method
    if not parts or parts[0].lower() != "job":
        raise KeelError("Unknown resource.", code="NOT_FOUND")
    if len(parts) == 1 and m == "POST":
        body = await request.body()
        spec: dict[str, Any] = orjson.loads(body) if as_json else _parse_xml(body)
        job = await run_in_threadpool(B.create_job, ctx, spec, job_type="Classic", api_version=ver)
        return _reply(job_info(job, []), "jobInfo", job.content_type == "JSON", 201 if not as_json else 200)
    job_id = parts[1] if len(parts) > 1 else ""
    if len(parts) == 2:
        if m == "GET":
            job, ups = await run_in_threadpool(_load, ctx, job_id)
            return _reply(job_info(job, ups), "jobInfo", job.content_type == "JSON")
        if m == "POST":
            body = await request.body()
            spec = orjson.loads(body) if as_json else _parse_xml(body)
            await run_in_threadpool(_load, ctx, job_id)
            await run_in_threadpool(B.set_state, ctx, job_id, str(spec.get("state") or ""))
            notify(request)
            job, ups = await run_in_threadpool(_load, ctx, job_id)
            return _reply(job_info(job, ups), "jobInfo", job.content_type == "JSON")
    job, ups = await run_in_threadpool(_load, ctx, job_id)
    is_json = job.content_type == "JSON"
    if len(parts) == 3 and parts[2].lower() == "batch":
        if m == "POST":
            if job.state != "Open":
                raise KeelError(f"Job {job.id} is not open.", code="INVALIDJOB")
            kind = "query" if job.is_query else "csv"
            if is_json and kind == "csv":
                upload_id = await _json_batch(request, ctx, job)
            else:
                upload_id = await receive_upload(request, ctx, job, kind)
            _, ups = await run_in_threadpool(_load, ctx, job_id)
            up = next(u for u in ups if u["id"] == upload_id)
            return _reply(batch_info(job, up), "batchInfo", is_json, 201 if not is_json else 200)
        if is_json:
            return _reply([batch_info(job, u) for u in ups if u["kind"] != "result"], "", True)
        inner = "".join(bytes(_reply(batch_info(job, u), "batchInfo", False).body).decode().split("?>", 1)[1]
                        for u in ups if u["kind"] != "result")
        xml = f'<?xml version="1.0" encoding="UTF-8"?><batchInfoList xmlns="{NS}">{inner}</batchInfoList>'
        return Response(xml.encode(), 200, headers={"content-type": XML})
    if len(parts) >= 4 and parts[2].lower() == "batch":
        up = await run_in_threadpool(_upload, ctx, job, parts[3])
        if len(parts) == 4:
            return _reply(batch_info(job, up), "batchInfo", is_json)
        what = parts[4].lower()
        if what == "request":
            return await run_in_threadpool(_request_body, job, up)
        if what == "result":
            if up["state"] not in ("Completed", "Failed"):
                raise KeelError(f"Batch {parts[3]} is not finished.", code="InvalidBatch")
            if up["kind"] == "query":
                rid = ids.encode(B.RESULT_PREFIX, up["id"])
                if len(parts) == 5:
                    if is_json:
                        return _reply([rid], "", True)
                    xml = (f'<?xml version="1.0" encoding="UTF-8"?><result-list xmlns="{NS}"><result>{rid}'
                           "</result></result-list>")
                    return Response(xml.encode(), 200, headers={"content-type": XML})
                return _query_result(job, up)
            from keel.services.bulk_results import v1_results

            out = await run_in_threadpool(v1_results, ctx, job, up)
            if isinstance(out, list):
                return _reply(out, "", True)
            return StreamingResponse(out, 200, headers={"content-type": CSV})
    raise KeelError("Unknown resource.", code="NOT_FOUND")


def _upload(ctx: Context, job: B.Job, batch_id: str) -> dict[str, Any]:
    with ctx.db.read() as conn:
        return dict(B.upload_by_id(ctx, conn, job, batch_id))


async def _json_batch(request: Request, ctx: Context, job: B.Job) -> int:
    """JSON records -> a CSV upload (relationship objects become dotted columns, null becomes ``#N/A``)."""
    try:
        records = orjson.loads(await request.body())
    except orjson.JSONDecodeError as e:
        raise KeelError(f"The batch is not valid JSON: {e}", code="INVALIDBATCH") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise KeelError("A JSON batch must be an array of records.", code="INVALIDBATCH")
    flat = [_flatten(r) for r in records]
    cols = list(dict.fromkeys(k for f in flat for k in f))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for f in flat:
        w.writerow([_csv_value(f[c]) if c in f else "" for c in cols])
    data = buf.getvalue().encode()

    def store() -> int:
        up = B.Upload(ctx, job)
        try:
            up.write(data)
            return up.commit()
        except BaseException:
            up.discard()
            raise

    upload_id = await run_in_threadpool(store)
    notify(request)
    return upload_id


def _flatten(rec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in rec.items():
        if k == "attributes":
            continue
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _csv_value(v: Any) -> str:
    if v is None:
        return "#N/A"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _request_body(job: B.Job, up: dict[str, Any]) -> Response:
    raw = open(up["path"], "rb").read()  # noqa: SIM115 - a batch is bounded by the upload limit
    if job.content_type != "JSON" or up["kind"] == "query":
        return Response(raw, 200, headers={"content-type": CSV if up["kind"] != "query" else "text/plain"})
    rows = list(csv.DictReader(io.StringIO(raw.decode())))
    return Response(orjson.dumps([{k: (None if v == "#N/A" else v) for k, v in r.items() if v != ""} for r in rows]),
                    200, headers={"content-type": JSON})


def _query_result(job: B.Job, up: dict[str, Any]) -> Response:
    path = up["result_path"]
    if job.content_type == "JSON":
        def gen() -> Any:
            yield b"["
            first = True
            with open(path, "rb") as f:
                for line in f:
                    yield (b"" if first else b",") + line.rstrip(b"\n")
                    first = False
            yield b"]"
        return StreamingResponse(gen(), 200, headers={"content-type": JSON})

    def raw() -> Any:
        yield from B.stream_file(path)
    return StreamingResponse(raw(), 200, headers={"content-type": CSV})
