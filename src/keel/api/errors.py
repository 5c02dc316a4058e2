"""KeelError codes to HTTP statuses, and the JSON error bodies clients parse.

This is the only place an HTTP status is chosen for an error, so every surface (REST, collections, composite
subrequests) answers the same code with the same status. Clients branch on the status (simple-salesforce maps
400/401/403/404/300 to exception classes, jsforce retries 5xx), so user errors must never become 5xx.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from starlette.responses import Response

from keel.errors import BatchError, ErrorDetail, KeelError

JSON_TYPE = "application/json;charset=UTF-8"

STATUS: dict[str, int] = {
    "INVALID_SESSION_ID": 401,
    "INVALID_AUTH_HEADER": 401,
    "NOT_FOUND": 404,
    "ENTITY_IS_DELETED": 404,
    "MULTIPLE_RECORDS_FOUND": 300,
    "REQUEST_LIMIT_EXCEEDED": 403,
    "API_DISABLED_FOR_ORG": 403,
    "API_CURRENTLY_DISABLED": 403,
    "INSUFFICIENT_ACCESS": 403,
    "FUNCTIONALITY_NOT_ENABLED": 403,
    "METHOD_NOT_ALLOWED": 405,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "REQUEST_ENTITY_TOO_LARGE": 413,
    "CONCURRENT_MODIFICATION": 409,
    "UNKNOWN_EXCEPTION": 500,
}


def status_for(code: str) -> int:
    """Every code not listed is a client error: Salesforce answers 400 for DML and query problems."""
    return STATUS.get(code, 400)


class ApiError(KeelError):
    """An error raised by the API layer itself (bad URL, bad JSON, wrong method)."""


def dumps(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS, default=_default)


def _default(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(dumps(data), status_code=status, headers=dict(headers or {}), media_type=JSON_TYPE)


def error_body(details: Iterable[ErrorDetail]) -> list[dict[str, Any]]:
    """The REST error array: ``[{"message", "errorCode", "fields"}]``."""
    out: list[dict[str, Any]] = []
    for d in details:
        item: dict[str, Any] = {"message": d.message, "errorCode": d.code}
        if d.fields:
            item["fields"] = list(d.fields)
        out.append(item)
    return out


def item_errors(details: Sequence[ErrorDetail]) -> list[dict[str, Any]]:
    """Per-item errors inside collections and DML results use ``statusCode``, not ``errorCode``."""
    return [{"statusCode": d.code, "message": d.message, "fields": list(d.fields)} for d in details]


def from_exception(exc: KeelError) -> tuple[int, list[dict[str, Any]]]:
    details = exc.details() if isinstance(exc, BatchError) else [ErrorDetail(exc.code, exc.message, exc.fields)]
    if not details:
        details = [ErrorDetail(exc.code, exc.message, exc.fields)]
    return status_for(details[0].code), error_body(details)


def error(code: str, message: str, fields: Sequence[str] = ()) -> ApiError:
    return ApiError(message, code=code, fields=fields)


INVALID_SESSION_BODY = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def invalid_session() -> Response:
    return json_response(INVALID_SESSION_BODY, 401)
