"""``POST /composite``: up to 25 subrequests in order, with ``@{ref.field}`` references and ``allOrNone``
(salesforce-api.md §2.8).

Subrequests run through the same dispatcher as top-level requests, as the same user. With ``allOrNone`` they share
one transaction that is rolled back when any subrequest fails; the failing subrequest keeps its error body and all
others report ``PROCESSING_HALTED``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from keel.api.errors import error
from keel.api.routing import ApiCall, Reply, dispatch, split_path
from keel.errors import KeelError

MAX_SUBREQUESTS = 25
_REF = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")
HALTED = "The transaction was rolled back since another operation in the same transaction failed."


class _Rollback(Exception):
    pass


class _Unresolved(Exception):
    pass


def _lookup(results: dict[str, Any], ref: str, path: str) -> Any:
    if ref not in results:
        raise _Unresolved(ref)
    value = results[ref]
    for step in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
        key, idx = step
        if key:
            if not isinstance(value, dict):
                raise _Unresolved(ref + path)
            hit = next((v for k, v in value.items() if k.lower() == key.lower()), _Unresolved)
            if hit is _Unresolved:
                raise _Unresolved(ref + path)
            value = hit
        else:
            if not isinstance(value, list) or int(idx) >= len(value):
                raise _Unresolved(ref + path)
            value = value[int(idx)]
    return value


def _substitute(value: Any, results: dict[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _REF.fullmatch(value)
        if whole:
            return _lookup(results, whole.group(1), whole.group(2))
        return _REF.sub(lambda m: str(_lookup(results, m.group(1), m.group(2))), value)
    if isinstance(value, list):
        return [_substitute(v, results) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, results) for k, v in value.items()}
    return value


def _parse_url(call: ApiCall, url: str) -> tuple[list[str], dict[str, str]]:
    parts = urlsplit(url)
    segs = split_path(parts.path)
    if len(segs) < 3 or [s.lower() for s in segs[:2]] != ["services", "data"] or segs[2][:1] not in "vV":
        raise error("INVALID_URL", f"The url must start with /services/data/vNN.N/: {url}")
    return segs[3:], dict(parse_qsl(parts.query, keep_blank_values=True))


def _nested_composite(parts: list[str]) -> bool:
    """Like Salesforce, /composite runs sObject Collections but not itself, /composite/batch or /composite/tree."""
    if not parts or parts[0].lower() != "composite":
        return False
    return len(parts) == 1 or parts[1].lower() in ("batch", "tree")


def composite(call: ApiCall) -> Reply:
    body = call.json_object()
    subs = body.get("compositeRequest")
    if not isinstance(subs, list) or not subs:
        raise error("JSON_PARSER_ERROR", "compositeRequest must be a non-empty array.")
    if len(subs) > MAX_SUBREQUESTS:
        raise error("LIMIT_EXCEEDED", f"A composite request holds at most {MAX_SUBREQUESTS} subrequests.")
    aon = body.get("allOrNone") is True or str(body.get("allOrNone")).lower() == "true"
    for s in subs:
        if not isinstance(s, dict) or not s.get("method") or not s.get("url") or not s.get("referenceId"):
            raise error("JSON_PARSER_ERROR", "Each subrequest needs method, url and referenceId.")
    out: list[dict[str, Any]] = []
    if not aon:
        _run_all(call, subs, out, halt_on_error=False)
        return Reply(200, {"compositeResponse": out})
    try:
        with call.ctx.db.transaction() as conn:
            inner = ApiCall(call.ctx, call.session, call.method, call.version, call.parts, call.params, call.body,
                            call.base_url, call.headers, call.parsed, conn, call.api_usage)
            failed = _run_all(inner, subs, out, halt_on_error=True)
            if failed is not None:
                raise _Rollback
    except _Rollback:
        for i, item in enumerate(out):
            if i != failed:
                item.update(httpStatusCode=400, httpHeaders={},
                            body=[{"errorCode": "PROCESSING_HALTED", "message": HALTED}])
    return Reply(200, {"compositeResponse": out})


def _run_all(call: ApiCall, subs: list[dict[str, Any]], out: list[dict[str, Any]], *,
             halt_on_error: bool) -> int | None:
    results: dict[str, Any] = {}
    failed: int | None = None
    for i, s in enumerate(subs):
        ref = str(s["referenceId"])
        parts: list[str] = []
        if failed is not None:
            out.append({"body": [{"errorCode": "PROCESSING_HALTED", "message": HALTED}], "httpHeaders": {},
                        "httpStatusCode": 400, "referenceId": ref})
            continue
        try:
            url = _substitute(str(s["url"]), results)
            sub_body = _substitute(s.get("body"), results)
        except _Unresolved as e:
            reply = Reply(400, [{"errorCode": "PROCESSING_HALTED",
                                 "message": f"Invalid reference specified. No value for {e} found in {ref}."}])
        else:
            try:
                parts, params = _parse_url(call, url)
            except KeelError as e:
                reply = Reply(400, [{"errorCode": e.code, "message": e.message}])
            else:
                method = str(s["method"]).upper()
                if _nested_composite(parts):
                    reply = Reply(400, [{"errorCode": "INVALID_URL", "message": "composite cannot be nested"}])
                else:
                    reply = dispatch(call.sub(method, parts, params, sub_body))
        headers = dict(reply.headers)
        if reply.status == 201 and isinstance(reply.body, dict) and reply.body.get("id") and parts:
            headers["Location"] = f"{call.prefix}/{'/'.join(parts[:2])}/{reply.body['id']}"
        out.append({"body": reply.body, "httpHeaders": headers, "httpStatusCode": reply.status, "referenceId": ref})
        if reply.status < 300:
            results[ref] = reply.body
        elif halt_on_error:
            failed = i
    return failed
