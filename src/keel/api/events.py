"""``GET /events/data/{channel}``: change data capture as server-sent events.

Channels follow Salesforce: ``ChangeEvents`` (every object the user can read) or ``<Object>ChangeEvent``.
Replay: ``replayId=-1`` (new events only, the default), ``-2`` (everything stored), or an event id to resume
after; the ``Last-Event-ID`` header of a reconnecting EventSource wins. ``subscriber=<name>`` keeps the position
server-side, so a consumer resumes where it stopped. ``limit`` and ``idle`` (seconds) end the stream, for batch
consumers and tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from keel.api.auth import bearer_token
from keel.api.errors import error_body, invalid_session, json_response
from keel.automation import cdc
from keel.context import Context
from keel.errors import ErrorDetail


async def stream(request: Request) -> Response:
    state = request.app.state
    ctx: Context = state.ctx
    token = bearer_token(request.headers)
    session = None if token is None else await run_in_threadpool(state.auth.resolve, ctx, token)
    if session is None:
        return invalid_session()
    user = ctx.as_actor(session.actor)
    entity = cdc.channel_object(request.path_params["channel"])
    if entity is not None and ctx.schema().find_object(entity) is None:
        return json_response(error_body([ErrorDetail("NOT_FOUND", f"Unknown channel {entity}")]), 404)
    params = request.query_params
    subscriber = params.get("subscriber")
    try:
        replay = int(request.headers.get("last-event-id") or params.get("replayId", "-1"))
        limit = int(params.get("limit", "0"))
        idle = float(params.get("idle", "0"))
    except ValueError:
        return json_response(error_body([ErrorDetail("INVALID_FIELD", "replayId, limit and idle are numbers")]), 400)

    def start() -> int:
        with ctx.db.read() as conn:
            if subscriber and "replayId" not in params and "last-event-id" not in request.headers:
                stored = cdc.get_position(conn, subscriber)
                if stored is not None:
                    return stored
            return cdc.latest_id(conn) if replay == -1 else 0 if replay == -2 else replay

    position = await run_in_threadpool(start)
    access = user.actor.access
    readable = (lambda name: True) if user.actor.is_system else (lambda name: access.can(name, "read"))
    poll = max(user.settings.dispatcher_poll_ms / 1000, 0.05)

    def fetch(after: int) -> list[tuple[int, dict[str, Any]]]:
        with ctx.db.read() as conn:
            return cdc.read_events(conn, ctx.schema(conn), after, entity=entity, readable=readable)

    def save(pos: int) -> None:
        with ctx.db.transaction() as conn:
            cdc.set_position(conn, str(subscriber), pos, ctx.clock())

    async def events() -> AsyncIterator[bytes]:
        nonlocal position
        sent, quiet = 0, 0.0
        while True:
            batch = await run_in_threadpool(fetch, position)
            for oid, event in batch:
                position = oid
                yield b"id: %d\nevent: change\ndata: %s\n\n" % (oid, orjson.dumps(event))
                sent += 1
                if limit and sent >= limit:
                    break
            if batch and subscriber:
                await run_in_threadpool(save, position)
            if limit and sent >= limit:
                return
            if batch:
                quiet = 0.0
                continue
            if idle and quiet >= idle:
                return
            yield b": keep-alive\n\n"
            await asyncio.sleep(poll)
            quiet += poll

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


ROUTES = [Route("/events/data/{channel}", stream, methods=["GET"])]
