"""``POST /composite/batch``: up to 25 independent subrequests in one HTTP call (Salesforce's Composite Batch).

Unlike ``/composite`` there are no references and no shared transaction: each subrequest is dispatched on its own,
exactly as if the client had sent it directly, so it commits (or fails) as its own unit and runs through the same
handlers, the same actor, the same object, field and record security and the same lifecycle as a direct call.
Salesforce counts every subrequest against the rate limits, so a batch of n is charged as n calls: otherwise a
batch would multiply a user's allowance by 25.

Only the resources Salesforce batches are accepted (limits, sObject resources, query, queryAll, search); the
composite resources cannot be nested. Problems Salesforce finds while reading the request (a missing or unknown
method, a malformed URL, a subrequest version outside 34.0..the batch's version) reject the whole batch with 400
before anything runs; everything else is reported per subrequest and the top-level answer is 200.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from keel.api.errors import error
from keel.api.routing import ApiCall, Reply, dispatch, split_path

MAX_SUBREQUESTS = 25
MIN_VERSION = (34, 0)
METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"})
BATCHABLE = frozenset({"limits", "sobjects", "query", "queryall", "search"})
HALTED = "The subrequest was not run: an earlier subrequest failed and the batch has haltOnError set."
_VERSION = re.compile(r"[vV](\d+)\.(\d+)")


@dataclasses.dataclass(frozen=True)
class _Sub:
    method: str
    version: str
    parts: list[str]
    params: dict[str, str]
    body: Any


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _parse(call: ApiCall, i: int, raw: Any) -> _Sub:
    """One subrequest, checked the way Salesforce checks it while reading the request."""
    if not isinstance(raw, dict):
        raise error("JSON_PARSER_ERROR", f"batchRequests[{i}] must be an object with method and url.")
    method, url = raw.get("method"), raw.get("url")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise error("JSON_PARSER_ERROR", f"batchRequests[{i}].method must be one of "
                    f"{', '.join(sorted(METHODS))}; got {method!r}.")
    if not isinstance(url, str) or not url.strip():
        raise error("JSON_PARSER_ERROR", f"batchRequests[{i}].url is required.")
    if raw.get("binaryPartName") is not None or raw.get("binaryPartNameAlias") is not None:
        raise error("JSON_PARSER_ERROR", f"batchRequests[{i}]: binary parts (multipart batch requests) are not "
                    "supported; send JSON bodies in richInput.")
    parts_url = urlsplit(url.strip())
    segs = split_path(parts_url.path)
    if len(segs) >= 2 and [s.lower() for s in segs[:2]] == ["services", "data"]:
        segs = segs[2:]
    match = _VERSION.fullmatch(segs[0]) if segs else None
    if match is None:
        raise error("INVALID_URL", f"batchRequests[{i}].url must start with vNN.N/ or /services/data/vNN.N/: "
                    f"{url}")
    version = (int(match.group(1)), int(match.group(2)))
    top = tuple(int(x) for x in call.version.split("."))
    if not MIN_VERSION <= version <= top:
        raise error("INVALID_URL", f"batchRequests[{i}].url uses version {version[0]}.{version[1]}; a batch at "
                    f"v{call.version} runs subrequests from v34.0 to v{call.version}.")
    return _Sub(method.upper(), f"{version[0]}.{version[1]}", segs[1:],
                dict(parse_qsl(parts_url.query, keep_blank_values=True)), raw.get("richInput"))


def batch(call: ApiCall) -> Reply:
    body = call.json_object()
    raw = body.get("batchRequests")
    if not isinstance(raw, list) or not raw:
        raise error("JSON_PARSER_ERROR", "batchRequests must be a non-empty array.")
    if len(raw) > MAX_SUBREQUESTS:
        raise error("LIMIT_EXCEEDED", f"A batch request holds at most {MAX_SUBREQUESTS} subrequests; "
                    f"this one has {len(raw)}.")
    halt = _flag(body.get("haltOnError", False))
    subs = [_parse(call, i, r) for i, r in enumerate(raw)]
    results: list[dict[str, Any]] = []
    halted = False
    for i, sub in enumerate(subs):
        if halted:
            results.append({"statusCode": 412, "result": [{"errorCode": "BATCH_PROCESSING_HALTED",
                                                            "message": HALTED}]})
            continue
        reply = _run(call, sub, charge=i > 0)
        results.append({"statusCode": reply.status, "result": reply.body})
        if reply.status >= 400 and halt:
            halted = True
    return Reply(200, {"hasErrors": any(r["statusCode"] >= 400 for r in results), "results": results})


def _run(call: ApiCall, sub: _Sub, *, charge: bool) -> Reply:
    """Dispatch one subrequest as its own call; ``charge`` counts it against the caller's rate limit."""
    if charge and call.meter is not None:
        retry = call.meter()
        if retry is not None:
            return Reply(403, [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}])
    head = sub.parts[0].lower() if sub.parts else ""
    if head not in BATCHABLE:
        what = "/".join(sub.parts) or "the resources list"
        return Reply(400, [{"errorCode": "INVALID_URL",
                            "message": f"{what} cannot be batched: /composite/batch runs limits, sobjects, query, "
                                       "queryAll and search subrequests."}])
    inner = dataclasses.replace(call.sub(sub.method, sub.parts, sub.params, sub.body), version=sub.version)
    reply = dispatch(inner)
    if sub.method == "HEAD":
        return Reply(reply.status, None)
    return reply
