"""Request dispatch for ``/services/data/vNN.N/…``.

Handlers are plain synchronous functions from an ``ApiCall`` to a ``Reply``; they never see Starlette. That lets
``/composite`` run subrequests through exactly the same code as top-level requests, and keeps the database work on
worker threads. Path matching is case-insensitive and ignores trailing slashes, as the clients require.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from keel.api.backend import Session
from keel.api.errors import error, from_exception
from keel.api.groupcommit import GroupCommit, PendingCreate
from keel.context import Context
from keel.errors import KeelError

_MISSING = object()


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-ready; None means an empty body
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # a non-JSON body (OpenAPI YAML, CSV …)
    media_type: str | None = None


@dataclass
class ApiCall:
    """One REST call as the authenticated user."""

    ctx: Context
    session: Session
    method: str
    version: str  # "59.0"
    parts: list[str]  # path segments after /services/data/vNN.N/, trailing empties removed
    params: Mapping[str, str]
    body: bytes = b""
    base_url: str = ""  # scheme://host[:port] as the client addressed us
    headers: Mapping[str, str] = field(default_factory=dict)
    parsed: Any = _MISSING
    conn: Connection | None = None  # set by /composite with allOrNone: every subrequest shares one transaction
    api_usage: int = 0
    group_commit: GroupCommit | None = None  # coalesces concurrent single-record creates (api/groupcommit.py)
    meter: Callable[[], int | None] | None = None  # counts one more request; seconds to wait when over the limit
    # Set when this call is one of a batch of creates handled together (keel.api.batching): a single-record
    # create is appended here and answered DEFERRED; the batch saves them all and builds the replies.
    deferred: list[PendingCreate] | None = None

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        if self.conn is not None:
            yield self.conn
        else:
            with self.ctx.db.transaction() as c:
                yield c

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        if self.conn is not None:
            yield self.conn
        else:
            with self.ctx.db.read() as c:
                yield c

    @property
    def prefix(self) -> str:
        return f"/services/data/v{self.version}"

    def json(self) -> Any:
        if self.parsed is _MISSING:
            if not self.body.strip():
                raise error("JSON_PARSER_ERROR", "The request body is empty; a JSON document was expected.")
            try:
                self.parsed = orjson.loads(self.body)
            except orjson.JSONDecodeError as e:
                raise error("JSON_PARSER_ERROR", f"The request body is not valid JSON: {e}") from None
        return self.parsed

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise error("JSON_PARSER_ERROR", "The request body must be a JSON object.")
        return data

    def sub(self, method: str, parts: list[str], params: Mapping[str, str], body: Any) -> ApiCall:
        """A subrequest of ``/composite``, already parsed."""
        return ApiCall(self.ctx, self.session, method, self.version, parts, params, b"", self.base_url, self.headers,
                       _MISSING if body is None else body, self.conn, self.api_usage)  # no group commit inside


Handler = Callable[[ApiCall], Reply]
DEFERRED = Reply(202)  # a create left to its batch (ApiCall.deferred); compared by identity, never sent


def split_path(path: str) -> list[str]:
    return [p for p in path.split("/") if p != ""]


def not_found(what: str = "The requested resource does not exist") -> KeelError:
    return error("NOT_FOUND", what)


def method_not_allowed(call: ApiCall, allowed: str) -> KeelError:
    return error("METHOD_NOT_ALLOWED", f"HTTP Method '{call.method}' not allowed. Allowed are {allowed}")


def dispatch(call: ApiCall) -> Reply:
    """Route a call and turn every ``KeelError`` into its error reply; other exceptions are bugs and propagate."""
    return guarded(lambda: _route(call))


def guarded(handler: Callable[[], Reply]) -> Reply:
    try:
        return handler()
    except KeelError as e:
        status, body = from_exception(e)
        return Reply(status, body)


def _route(call: ApiCall) -> Reply:
    from keel.api import (
        approvals,
        collections,
        composite,
        composite_batch,
        composite_tree,
        describe,
        query,
        search,
        sobjects,
    )

    p = call.parts
    if not p:
        return _only(call, "GET", describe.resources)
    head = p[0].lower()
    rest = p[1:]
    if head == "sobjects":
        return sobjects.route(call, rest)
    if head in ("query", "queryall"):
        return query.route(call, head == "queryall", rest)
    if head == "search" and not rest:
        return _only(call, "GET", search.search)
    if head == "limits" and not rest:
        return _only(call, "GET", describe.limits)
    if head == "process":
        return approvals.route(call, rest)
    if head == "openapi.json" and not rest:
        return _only(call, "GET", describe.openapi)
    if head == "composite":
        if not rest:
            if call.method in ("GET", "HEAD"):
                return describe.composite_resources(call)
            if call.method != "POST":
                raise method_not_allowed(call, "GET, POST")
            return composite.composite(call)
        sub = rest[0].lower()
        if sub == "sobjects":
            return collections.route(call, rest[1:])
        if sub == "batch" and len(rest) == 1:
            return _only(call, "POST", composite_batch.batch)
        if sub == "tree" and len(rest) == 2:
            return _only(call, "POST", lambda c: composite_tree.tree(c, rest[1]))
    raise not_found()


def _only(call: ApiCall, method: str, handler: Handler) -> Reply:
    if call.method == "HEAD" and method == "GET":
        return handler(call)
    if call.method != method:
        raise method_not_allowed(call, method)
    return handler(call)
