"""The ASGI application: the Salesforce-compatible API (and, mounted beside it, the web app).

Everything request-scoped hangs off ``app.state`` (the base Context, the auth backend, the rate limiter): there is
no module-level state, so several apps (tests, benchmarks) can live in one process.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.api import events, oauth, soap
from keel.api.auth import RateLimiter, bearer_token
from keel.api.backend import AuthBackend, Session
from keel.api.batching import RequestBatcher
from keel.api.describe import versions_list
from keel.api.errors import JSON_TYPE, dumps, error_body, invalid_session, json_response
from keel.api.groupcommit import GroupCommit, PendingCreate, save_pending
from keel.api.routing import DEFERRED, ApiCall, Reply, dispatch, guarded, split_path
from keel.api.sobjects import created
from keel.context import Context
from keel.errors import ErrorDetail

log = logging.getLogger("keel.api")
METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"]
MAX_BODY = 50_000_000  # Salesforce's REST limit; bulk uploads have their own streaming routes


def base_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def to_response(reply: Reply, extra: dict[str, str] | None = None) -> Response:
    headers = dict(reply.headers)
    if extra:
        headers.update(extra)
    if reply.raw is not None:
        return Response(reply.raw, reply.status, headers=headers, media_type=reply.media_type)
    if reply.body is None:
        return Response(b"", reply.status, headers=headers)
    return Response(dumps(reply.body), reply.status, headers=headers, media_type=JSON_TYPE)


def _fail(code: str, message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return json_response(error_body([ErrorDetail(code, message)]), status, headers)


def _internal_error(headers: dict[str, str] | None = None) -> Response:
    return _fail("UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this ErrorId if you contact "
                 "support.", 500, headers)


async def versions(request: Request) -> Response:
    return json_response(versions_list())


async def data_api(request: Request) -> Response:
    """``/services/data/vNN.N/…``: authenticate, rate-limit, then dispatch on a worker thread."""
    parts = split_path(request.path_params["rest"])
    if not parts:
        return json_response(versions_list())
    ver = parts[0]
    if not (ver[:1] in "vV" and _is_version(ver[1:])):
        return _fail("NOT_FOUND", "The requested resource does not exist", 404)
    token = bearer_token(request.headers)
    if token is None:
        return invalid_session()
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        return _fail("REQUEST_ENTITY_TOO_LARGE", f"The request body exceeds {MAX_BODY // 1_000_000} MB.", 413)
    body = await request.body()
    if len(body) > MAX_BODY:
        return _fail("REQUEST_ENTITY_TOO_LARGE", f"The request body exceeds {MAX_BODY // 1_000_000} MB.", 413)
    if request.method == "POST" and len(parts) == 3 and parts[1].lower() == "sobjects":
        # A single-record create: concurrent ones share a worker-thread hop and a group commit (keel.api.batching).
        outcome = await request.app.state.creates.submit(
            (contextvars.copy_context(), request, token, ver[1:], parts[1:], body))
    else:
        # One worker-thread hop per request: resolving the token and the handler's database work run together.
        outcome = await run_in_threadpool(_authorised, request, token, ver[1:], parts[1:], body)
    if isinstance(outcome, Response):
        return outcome
    reply, usage = outcome
    if request.method == "HEAD":
        reply = Reply(reply.status, None, reply.headers)
    return to_response(reply, usage)


Outcome = Response | tuple[Reply, dict[str, str]]
# the request's context variables (its request id for logs), request, token, version, parts, body
CreateRequest = tuple[contextvars.Context, Request, str, str, list[str], bytes]


def _authorised(request: Request, token: str, version: str, parts: list[str], body: bytes, *,
                sessions: dict[str, Session | None] | None = None,
                deferred: list[PendingCreate] | None = None) -> Outcome:
    """Resolve the token, check API access and the rate limit, then dispatch, all on the calling worker thread.
    ``sessions`` memoises token resolution across one batch of requests; ``deferred`` collects a batch's
    single-record creates (``ApiCall.deferred``)."""
    state = request.app.state
    ctx: Context = state.ctx
    auth: AuthBackend = state.auth
    if sessions is None:
        session = auth.resolve(ctx, token)
    elif token in sessions:
        session = sessions[token]
    else:
        session = sessions[token] = auth.resolve(ctx, token)
    if session is None:
        return invalid_session()
    request.state.keel_user = session.username  # for the access log (keel.api.observability)
    if not session.api_enabled:
        return _fail("API_CURRENTLY_DISABLED", "API is disabled for this User", 403)
    limiter: RateLimiter = state.limits
    keys = (f"u:{session.user_id}", f"t:{token}")
    retry = limiter.hit(keys)
    usage = {"Sforce-Limit-Info": limiter.usage_header()}
    if retry is not None:
        return _fail("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", 403,
                     {"Retry-After": str(retry), **usage})
    call = ApiCall(ctx.as_actor(session.actor), session, request.method, version, parts,
                   dict(request.query_params), body, base_url(request), request.headers,
                   api_usage=limiter.used_today, group_commit=state.group_commit,
                   meter=lambda: limiter.hit(keys), deferred=deferred)  # /composite/batch charges each subrequest
    try:
        return dispatch(call), usage
    except Exception:  # a real bug: log it, answer 500 (jsforce retries 5xx, so user errors never get here)
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return _internal_error(usage)


def _creates(items: Sequence[CreateRequest]) -> list[Outcome]:
    """A batch of single-record create requests on one worker thread: each is authorised and checked as on its
    own; their saves then run together, one group commit per user and object (``save_pending``).

    Every request in the batch arrived before any of it ran, so resolving a token once for the batch still means
    a revoked session or a permission change takes effect on the very next request."""
    sessions: dict[str, Session | None] = {}
    pending: list[PendingCreate] = []
    outcomes: list[Outcome] = []
    waiting: list[tuple[int, int]] = []  # (place in outcomes, place in pending)
    for context, request, token, version, parts, body in items:
        mine: list[PendingCreate] = []
        try:
            outcome: Outcome = context.run(_authorised, request, token, version, parts, body, sessions=sessions,
                                           deferred=mine)
        except Exception:  # a bug while authorising this one request: its own 500, never its neighbours'
            log.exception("unhandled error in %s %s", request.method, request.url.path)
            outcome, mine = _internal_error(), []
        if mine:
            waiting.append((len(outcomes), len(pending)))
            pending.extend(mine)
        outcomes.append(outcome)
    if not pending:
        return outcomes
    results = save_pending(pending)
    for i, j in waiting:
        deferred_reply = outcomes[i]
        assert isinstance(deferred_reply, tuple) and deferred_reply[0] is DEFERRED
        result = results[j]
        # None: the save of this request's group failed on a bug (logged by save_pending); only its group fails
        outcomes[i] = _internal_error() if result is None else (guarded(partial(created, result)),
                                                                deferred_reply[1])
    return outcomes


def _is_version(text: str) -> bool:
    head, dot, tail = text.partition(".")
    return head.isdigit() and dot == "." and tail.isdigit()


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def not_found(request: Request) -> Response:
    return _fail("NOT_FOUND", "The requested resource does not exist", 404)


def bulk_routes() -> list[Route]:
    """Bulk API 2.0 and 1.0 (keel.api.bulk2 / bulk1)."""
    from keel.api import bulk1, bulk2

    return [Route("/services/data/{ver}/jobs/{rest:path}", bulk2.endpoint, methods=METHODS),
            Route("/services/async/{ver}/{rest:path}", bulk1.endpoint, methods=METHODS)]


def create_app(ctx: Context, *, auth: AuthBackend | None = None) -> Starlette:
    """The app for one organisation. ``auth`` defaults to the security layer's implementation."""
    from keel.query import create_cursor_tables
    from keel.services.security import wire_security

    ctx = wire_security(ctx)  # the lifecycle hooks that keep sharing data consistent on every API write
    with ctx.db.transaction() as conn:
        create_cursor_tables(conn)
    if auth is None:
        from keel.api.backend import default_auth

        auth = default_auth(ctx)
    routes = [
        Route("/healthz", healthz),
        *events.ROUTES,  # change data capture (server-sent events)
        Route("/services/data", versions, methods=["GET", "HEAD"]),
        Route("/services/data/", versions, methods=["GET", "HEAD"]),
        *bulk_routes(),  # before the data API: bulk uploads and results stream
        Route("/services/data/{rest:path}", data_api, methods=METHODS),
        Route("/services/Soap/u/{ver:path}", soap.login_endpoint, methods=["POST"]),
        Route("/services/oauth2/token", oauth.token, methods=["POST"]),
        Route("/services/oauth2/token/", oauth.token, methods=["POST"]),
        Route("/services/oauth2/revoke", oauth.revoke, methods=["POST", "GET"]),
        Route("/services/oauth2/revoke/", oauth.revoke, methods=["POST", "GET"]),
        Route("/services/oauth2/userinfo", oauth.userinfo, methods=["GET"]),
        Route("/id/{org}/{user}", oauth.identity, methods=["GET"]),
        Route("/id/{org}/{user}/", oauth.identity, methods=["GET"]),
        Route("/services/{rest:path}", not_found, methods=METHODS),
    ]
    app = Starlette(routes=routes)
    app.router.redirect_slashes = False
    app.state.ctx = ctx
    app.state.auth = auth
    app.state.limits = RateLimiter(ctx.settings.api_requests_per_minute)
    app.state.group_commit = GroupCommit()
    # SQLite has one writer, so one batch at a time loses nothing; PostgreSQL commits several groups at once.
    app.state.creates = RequestBatcher(_creates, max_inflight=1 if ctx.db.dialect == "sqlite" else 4)
    from keel.api.observability import install as install_observability

    install_observability(app)  # /readyz, /metrics, request ids and JSON access logs, slow-query log
    return app


def app_state(request: Request) -> Any:
    return request.app.state
