"""``query``, ``queryAll`` and ``query/{locator}`` (salesforce-api.md §2.4), served by the SOQL engine.

The engine owns the record shapes, cursors and locators; this module only reads the request. jsforce asks for the
next page of a queryAll cursor at ``/query/{locator}``, so both paths serve both kinds of cursor.
"""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from keel.api import backend
from keel.api.errors import error
from keel.api.routing import ApiCall, Reply, method_not_allowed, not_found

MIN_BATCH, MAX_BATCH = 200, 2000


def batch_size(call: ApiCall) -> int:
    """``Sforce-Query-Options: batchSize=N``, clamped to 200–2000 as Salesforce does."""
    raw = call.headers.get("sforce-query-options", "")
    for part in raw.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "batchsize" and value.strip().isdigit():
            return max(MIN_BATCH, min(MAX_BATCH, int(value)))
    return MAX_BATCH


def route(call: ApiCall, query_all: bool, rest: list[str]) -> Reply:
    if call.method not in ("GET", "HEAD"):
        raise method_not_allowed(call, "GET, HEAD")
    if len(rest) > 1:
        raise not_found()
    if rest:  # a next page always updates its cursor row: take the write path directly
        with call.writing() as conn:
            return Reply(200, backend.fetch_more(call.ctx, conn, rest[0], api_version=call.version))
    if "explain" in call.params:
        raise error("FUNCTIONALITY_NOT_ENABLED", "Query plans (explain) are not supported yet.")
    text = call.params.get("q")
    if not text or not text.strip():
        raise error("MALFORMED_QUERY", "A query is required: pass it as the q parameter.")
    size = batch_size(call)
    try:
        with call.reading() as conn:
            page = backend.run_soql(call.ctx, conn, text, query_all=query_all, api_version=call.version,
                                    batch_size=size)
    except OperationalError as e:
        # A first page that needs a cursor writes one; under SQLite a read transaction cannot always upgrade to a
        # write (another writer committed meanwhile), so retry that rare case on the write path.
        if "locked" not in str(e) and "busy" not in str(e).lower():
            raise
        with call.writing() as conn:
            page = backend.run_soql(call.ctx, conn, text, query_all=query_all, api_version=call.version,
                                    batch_size=size)
    return Reply(200, page)
