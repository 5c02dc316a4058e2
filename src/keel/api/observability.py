"""Observability: JSON request logs, ``/readyz``, Prometheus ``/metrics`` and slow-query logs.

Everything hangs off one ``Observability`` object per app (its own ``CollectorRegistry``), so several apps in one
process (tests, benchmarks) never share counters. Under ``keel serve --workers N`` each worker process counts in
prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor), and ``/metrics``
reads every process's files, so whichever worker answers a scrape reports the sum over all of them.

- Every response carries ``X-Request-Id`` (the client's, when it sent a sane one). One JSON log line per request on
  the ``keel.access`` logger: request id, method, path, route, status, user and duration.
- ``/healthz`` says the process is alive; ``/readyz`` says it can do useful work: the database answers, the system
  tables are at this Keel's revision, and, when a worker is configured, its heartbeat is fresh. A load balancer
  should route on ``/readyz``.
- ``/metrics``: requests by route and status, latency histograms, lifecycle batch sizes, and, read from the
  database at scrape time (so every worker process reports the same truth), outbox depth and oldest-event age,
  rows processed by bulk jobs, and login failures.
- Statements slower than ``settings.slow_query_ms`` are logged on ``keel.slow`` with the SQL and, when the request
  was a SOQL query, the SOQL.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.engine import Connection
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.context import Context
from keel.metadata.model import ObjectDef
from keel.records.hooks import RowState, find_hook
from keel.services.automation import WORKER_HEARTBEAT_KEY
from keel.storage import migrate
from keel.storage import system as S

access_log = logging.getLogger("keel.access")
slow_log = logging.getLogger("keel.slow")
log = logging.getLogger("keel.readiness")
_REQUEST: ContextVar[dict[str, Any] | None] = ContextVar("keel_request", default=None)
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Request ids: a random per-process prefix and a counter. They correlate log lines and need no secrecy; calling
# os.urandom per request on the event loop thread released the GIL and queued the loop behind busy worker threads
# (0.3 ms per request under load).
_ID_PREFIX = secrets.token_hex(4)
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFF:08x}"


_API_KINDS = frozenset({"sobjects", "query", "queryAll", "composite", "search", "parameterizedSearch", "limits",
                        "jobs", "tooling", "recent", "ui-api", "actions"})


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields passed with ``extra={"fields": {...}}`` are merged in. ``pid`` tells
    the worker processes of ``keel serve --workers`` apart."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                               "level": record.levelname.lower(), "logger": record.name, "pid": record.process,
                               "message": record.getMessage()}
        out.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()  # on the event loop for every request: json.dumps cost 5x


def configure_json_logging(level: int = logging.INFO) -> None:
    """Send Keel's logs to stderr as JSON lines (``keel serve`` calls this; idempotent)."""
    root = logging.getLogger("keel")
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level)
    # The JSON lines carry no caller file or line, so skip the stack walk logging does for every record (the
    # logging HOWTO's "Optimization"): one access line per request made it a few percent of a busy server's CPU.
    logging._srcfile = None


def _route_label(scope: Scope) -> str:
    endpoint = scope.get("endpoint")
    name = getattr(endpoint, "__name__", None) or "unmatched"
    if name == "data_api":
        parts = [p for p in scope.get("path", "").split("/") if p]
        kind = parts[3] if len(parts) > 3 else ""
        return f"data_api:{kind}" if kind in _API_KINDS else name
    return str(name)


class BatchMetrics:
    """Lifecycle hooks that observe batch sizes and pass everything on to the hooks they wrap."""

    def __init__(self, inner: Any, histogram: Histogram) -> None:
        self.inner = inner
        self.histogram = histogram

    def before_save(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None:
        if self.inner is not None:
            self.inner.before_save(ctx, conn, obj, rows)

    def after_save(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None:
        self.histogram.labels("save").observe(len(rows))
        if self.inner is not None:
            self.inner.after_save(ctx, conn, obj, rows)

    def before_delete(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None:
        if self.inner is not None:
            self.inner.before_delete(ctx, conn, obj, rows)

    def after_delete(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None:
        self.histogram.labels("delete").observe(len(rows))
        if self.inner is not None:
            self.inner.after_delete(ctx, conn, obj, rows)

    def after_undelete(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None:
        if self.inner is not None:
            self.inner.after_undelete(ctx, conn, obj, rows)


class DatabaseCollector(Collector):
    """Gauges and counters read from the organisation's tables at scrape time."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterable[Any]:
        depth = GaugeMetricFamily("keel_outbox_depth", "Outbox events not yet delivered.", labels=["state"])
        age = GaugeMetricFamily("keel_outbox_oldest_age_seconds", "Age of the oldest undelivered outbox event.")
        bulk = CounterMetricFamily("keel_bulk_rows_processed", "Rows processed by bulk jobs (all time).",
                                   labels=["outcome"])
        logins = CounterMetricFamily("keel_login_failures", "Failed logins recorded in the audit log.")
        try:
            with self.ctx.db.read() as conn:
                tables = set(sa.inspect(conn).get_table_names())
                now = datetime.now(UTC).replace(tzinfo=None)
                oldest = None
                for state, count, first in conn.exec_driver_sql(
                        "SELECT state, COUNT(*), MIN(created_date) FROM keel_outbox "
                        "WHERE state <> 'delivered' GROUP BY state"):
                    depth.add_metric([str(state)], float(count))
                    first = datetime.fromisoformat(first) if isinstance(first, str) else first
                    if first is not None and state == "pending":
                        oldest = first if oldest is None else min(oldest, first)
                age.add_metric([], (now - oldest).total_seconds() if oldest else 0.0)
                if "keel_bulk_upload" in tables:
                    done, failed = conn.exec_driver_sql(
                        "SELECT COALESCE(SUM(rows_done), 0), COALESCE(SUM(rows_failed), 0) FROM keel_bulk_upload"
                    ).one()
                    bulk.add_metric(["processed"], float(done))
                    bulk.add_metric(["failed"], float(failed))
                logins.add_metric([], float(conn.exec_driver_sql(
                    "SELECT COUNT(*) FROM keel_audit WHERE action IN ('login_failure', 'login_throttled')").scalar()
                    or 0))
        except sa.exc.SQLAlchemyError:  # /readyz reports the outage; metrics stay scrapeable
            return
        yield from (depth, age, bulk, logins)


class Observability:
    """The per-app registry, the middleware's state and the two endpoints."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.registry = CollectorRegistry()
        self.requests = Counter("keel_http_requests", "HTTP requests.", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("keel_http_request_duration_seconds", "Request latency.", ["route"],
                                 buckets=(.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10),
                                 registry=self.registry)
        self.batches = Histogram("keel_lifecycle_batch_size", "Records per lifecycle batch.", ["operation"],
                                 buckets=(1, 2, 5, 10, 50, 200, 1000, 5000, 10000), registry=self.registry)
        self.slow = Counter("keel_slow_queries", "SQL statements slower than slow_query_ms.", registry=self.registry)
        self.registry.register(DatabaseCollector(ctx))
        self.multiprocess_dir = multiprocess_dir()
        self.exposed = self.registry
        if self.multiprocess_dir is not None:  # every process's counters from their files, plus the database's
            from prometheus_client.multiprocess import MultiProcessCollector

            self.exposed = CollectorRegistry()
            MultiProcessCollector(self.exposed, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            self.exposed.register(DatabaseCollector(ctx))

    async def metrics(self, request: Request) -> Response:
        body = await run_in_threadpool(generate_latest, self.exposed)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def readyz(self, request: Request) -> Response:
        checks = await run_in_threadpool(readiness, self.ctx)
        ok = all(c["ok"] for c in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503)

    def watch_sql(self) -> None:
        """Log statements slower than the threshold (SQLAlchemy cursor events on this organisation's engine)."""
        threshold = self.ctx.settings.slow_query_ms / 1000.0
        engine = self.ctx.db.engine

        @event.listens_for(engine, "before_cursor_execute")
        def _start(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
            conn.info.setdefault("keel_started", []).append(time.perf_counter())

        @event.listens_for(engine, "after_cursor_execute")
        def _end(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
            started = conn.info.get("keel_started")
            if not started:
                return
            took = time.perf_counter() - started.pop()
            if took >= threshold:
                self.slow.inc()
                req = _REQUEST.get() or {}
                slow_log.warning("slow query", extra={"fields": {
                    "duration_ms": round(took * 1000, 1), "sql": statement[:4000], "soql": req.get("soql"),
                    "request_id": req.get("id")}})


def multiprocess_dir() -> str | None:
    """The multiprocess directory when this process's metric values really live there. prometheus_client picks
    its value class once, when it is first imported: a variable set later would make ``/metrics`` read files that
    this process never writes."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return path if path and values.ValueClass is not values.MutexValue else None


def _failure_kind(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).lower()
    for needle, kind in (("refused", "connection refused"), ("password", "authentication failed"),
                         ("authentication", "authentication failed"), ("could not translate host", "unknown host"),
                         ("timeout", "connection timed out"), ("timed out", "connection timed out"),
                         ("unable to open", "cannot open the database file"), ("no such table", "schema missing"),
                         ("does not exist", "database or schema missing"), ("locked", "database is locked")):
        if needle in text:
            return kind
    return "see the server log"


def readiness(ctx: Context) -> dict[str, dict[str, Any]]:
    checks: dict[str, dict[str, Any]] = {}
    try:
        status = migrate.status(ctx.db)
        checks["database"] = {"ok": True}
        checks["migrations"] = {"ok": status.up_to_date, "current": status.current, "head": status.head}
        with ctx.db.read() as conn:
            beat = S.get_meta(conn, WORKER_HEARTBEAT_KEY)
    except sa.exc.SQLAlchemyError as e:
        # The probe is unauthenticated: it says which way the database failed, never the driver's text (hosts,
        # ports, user names, file paths), which goes to the server's log.
        log.warning("readiness: the database is unreachable: %s", e)
        return {"database": {"ok": False, "error": type(e).__name__,
                             "reason": f"the database is unreachable: {_failure_kind(e)}"}}
    if beat is None:
        checks["worker"] = {"ok": True, "configured": False}
    else:
        seen = datetime.fromisoformat(str(beat))
        seen = seen if seen.tzinfo else seen.replace(tzinfo=UTC)
        age = (datetime.now(UTC) - seen).total_seconds()
        checks["worker"] = {"ok": age < 120, "configured": True, "heartbeat_age_seconds": round(age, 1)}
    return checks


class ObservabilityMiddleware:
    """Pure ASGI middleware: request id, timing, access log, request metrics."""

    def __init__(self, app: ASGIApp, obs: Observability) -> None:
        self.app = app
        self.obs = obs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _SANE_ID.match(given) else new_request_id()
        soql = None
        if scope.get("path", "").rstrip("/").endswith(("/query", "/queryAll")):
            soql = Request(scope).query_params.get("q")
        info: dict[str, Any] = {"id": rid, "soql": soql}
        token = _REQUEST.set(info)
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            took = time.perf_counter() - started
            route = _route_label(scope)
            if route not in ("metrics", "readyz", "healthz"):
                self.obs.requests.labels(route, scope.get("method", ""), str(status)).inc()
                self.obs.latency.labels(route).observe(took)
            state = scope.get("state") or {}
            access_log.info("request", extra={"fields": {
                "request_id": rid, "method": scope.get("method"), "path": scope.get("path"), "route": route,
                "status": status, "user": state.get("keel_user"), "duration_ms": round(took * 1000, 2)}})
            _REQUEST.reset(token)


def install(app: Starlette) -> Observability:
    """Add ``/readyz`` and ``/metrics``, the middleware, batch-size hooks and slow-query logging to an app."""
    ctx: Context = app.state.ctx
    obs = Observability(ctx)
    if find_hook(ctx.hooks, BatchMetrics) is None:  # wrap, never mutate: other contexts share these hooks
        app.state.ctx = replace(ctx, hooks=BatchMetrics(ctx.hooks, obs.batches))
    obs.watch_sql()
    app.router.routes.insert(0, Route("/readyz", obs.readyz, methods=["GET", "HEAD"]))
    app.router.routes.insert(0, Route("/metrics", obs.metrics, methods=["GET"]))
    app.add_middleware(ObservabilityMiddleware, obs=obs)
    app.state.observability = obs
    return obs
