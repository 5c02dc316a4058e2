"""/healthz, /readyz (also with the database gone), /metrics (also bulk throughput), request ids, JSON access logs
and the slow-query log."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import socket
import threading
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from keel.api.app import create_app
from keel.api.observability import JsonFormatter, readiness
from keel.context import SYSTEM_ACTOR, Context
from keel.services.bulk_worker import run_pending
from keel.settings import Settings
from keel.storage import migrate
from keel.storage import system as S
from keel.storage.engine import Database
from tests.conftest import PG_URL
from tests.livehttp import serving
from tests.ops.apiclient import V, client_and_token

PG_ONLY = ["postgresql"] if PG_URL else []


def test_probes_metrics_and_access_log(org: Context, caplog: pytest.LogCaptureFixture) -> None:
    client, token = client_and_token(org)
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["migrations"]["ok"] is True
    with caplog.at_level(logging.INFO, logger="keel.access"):
        r = client.post(f"/services/data/{V}/sobjects/Account", json={"Name": "Metrics"}, auth=None, headers={
            **auth, "X-Request-Id": "req-123"})
        assert r.status_code == 201, r.text
        assert r.headers["x-request-id"] == "req-123"
        q = client.get(f"/services/data/{V}/query", params={"q": "SELECT Id FROM Account"}, headers=auth)
        assert q.status_code == 200
        assert client.get(f"/services/data/{V}/query", params={"q": "SELECT"}, headers=auth).status_code == 400
    lines = [r for r in caplog.records if r.name == "keel.access"]
    created = next(r for r in lines if getattr(r, "fields", {}).get("request_id") == "req-123")
    doc = json.loads(JsonFormatter().format(created))
    assert doc["user"] == "admin@example.com" and doc["status"] == 201 and doc["duration_ms"] > 0
    assert doc["route"] == "data_api:sobjects"
    bad = client.post("/services/oauth2/token", data={"grant_type": "password", "client_id": "x",
                                                      "client_secret": "y", "username": "admin@example.com",
                                                      "password": "wrong"})
    assert bad.status_code >= 400
    text = client.get("/metrics").text
    assert 'keel_http_requests_total{method="POST",route="data_api:sobjects",status="201"} 1.0' in text
    assert 'keel_http_requests_total{method="GET",route="data_api:query",status="400"} 1.0' in text
    assert "keel_http_request_duration_seconds_bucket" in text
    assert 'keel_lifecycle_batch_size_count{operation="save"}' in text
    assert "keel_outbox_depth" in text and "keel_outbox_oldest_age_seconds" in text
    assert "keel_login_failures_total" in text


def test_readyz_fails_on_pending_migrations_and_stale_worker(org: Context) -> None:
    with org.db.transaction() as conn:
        S.set_meta(conn, "worker_heartbeat", "2000-01-01T00:00:00+00:00")
    checks = readiness(org)
    assert checks["worker"]["ok"] is False and checks["migrations"]["ok"] is True
    with org.db.transaction() as conn:
        conn.exec_driver_sql(f'DROP TABLE "{migrate.VERSION_TABLE}"')
        conn.exec_driver_sql('DROP INDEX "ix_keel_outbox_age"')
    client, _ = client_and_token(org)
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["migrations"]["current"] == migrate.BASELINE


def test_slow_queries_are_logged_with_soql_and_sql(org: Context, caplog: pytest.LogCaptureFixture) -> None:
    slow = replace(org, settings=replace(org.settings, slow_query_ms=0))
    client, token = client_and_token(slow)
    with caplog.at_level(logging.WARNING, logger="keel.slow"):
        r = client.get(f"/services/data/{V}/query", params={"q": "SELECT Name FROM Account"},
                       headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    fields = [getattr(r, "fields", {}) for r in caplog.records if r.name == "keel.slow"]
    assert any(f.get("soql") == "SELECT Name FROM Account" and "SELECT" in f.get("sql", "") for f in fields)


def _bulk_rows_metric(text: str, outcome: str) -> float:
    """The counter's value; 0 while no bulk job has ever run (its table does not exist yet)."""
    prefix = f'keel_bulk_rows_processed_total{{outcome="{outcome}"}} '
    found = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(found[0].rsplit(" ", 1)[1]) if found else 0.0


def test_bulk_throughput_metric_moves_after_an_ingest(org: Context) -> None:
    """A real Bulk API 2.0 ingest (upload over HTTP, the job runner's chunks) shows in the throughput counter."""
    client, token = client_and_token(org)
    auth = {"Authorization": f"Bearer {token}"}
    before = client.get("/metrics").text
    start = {o: _bulk_rows_metric(before, o) for o in ("processed", "failed")}
    job = client.post(f"/services/data/{V}/jobs/ingest", json={"object": "Account", "operation": "insert"},
                      headers=auth).json()
    body = "Name,NumberOfEmployees\n" + "".join(f"Metered {i},{i}\n" for i in range(120)) + "Bad row,not a number\n"
    put = client.put(f"/services/data/{V}/jobs/ingest/{job['id']}/batches", content=body.encode(),
                     headers={**auth, "Content-Type": "text/csv"})
    assert put.status_code == 201, put.text
    closed = client.patch(f"/services/data/{V}/jobs/ingest/{job['id']}", json={"state": "UploadComplete"},
                          headers=auth)
    assert closed.status_code == 200, closed.text
    run_pending(org)
    info = client.get(f"/services/data/{V}/jobs/ingest/{job['id']}", headers=auth).json()
    assert info["state"] == "JobComplete" and info["numberRecordsFailed"] == 1, info
    after = client.get("/metrics").text
    assert _bulk_rows_metric(after, "processed") - start["processed"] == 121  # Salesforce counts failed rows too
    assert _bulk_rows_metric(after, "failed") - start["failed"] == 1


class Relay:
    """A TCP relay on loopback between Keel and its PostgreSQL server. ``stop`` is the server going away: open
    connections drop, and new ones are refused because nothing listens on the port any more."""

    def __init__(self, upstream: tuple[str, int], port: int = 0) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = int(self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # stopped
                return
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        with contextlib.suppress(OSError):  # wakes the blocked accept(); close() alone leaves the port listening
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def _assert_unreachable(r: httpx.Response, expected: str) -> None:
    assert r.status_code == 503, r.text
    doc = r.json()
    assert doc["status"] == "unavailable" and doc["checks"]["database"]["ok"] is False
    reason = doc["checks"]["database"]["reason"]
    assert reason.startswith("the database is unreachable: ") and expected in reason.lower(), reason
    assert "127.0.0.1" not in reason and "/" not in reason, reason  # unauthenticated: no hosts, ports or paths


@pytest.mark.parametrize("backend", PG_ONLY)
def test_readyz_503_when_postgresql_refuses_connections(org: Context) -> None:
    """A running server whose PostgreSQL goes away (connections dropped, the port closed): /readyz answers 503
    with the reason, /healthz still answers, and readiness returns once the database is back."""
    parts = urlsplit(org.db.url)
    relay = Relay((parts.hostname or "127.0.0.1", parts.port or 5432))
    url = urlunsplit(parts._replace(netloc=parts.netloc.replace(f"{parts.hostname}:{parts.port}",
                                                                f"127.0.0.1:{relay.port}")))
    ctx = replace(org, db=Database(url))
    try:
        with serving(create_app(ctx)) as base:
            assert httpx.get(f"{base}/readyz").status_code == 200, "ready while the database answers"
            relay.stop()
            httpx.get(f"{base}/readyz")  # the pool finds its connections dead and drops them
            assert httpx.get(f"{base}/healthz").status_code == 200
            _assert_unreachable(httpx.get(f"{base}/readyz"), "connection refused")
            relay = Relay(relay.upstream, relay.port)  # the database is back
            assert httpx.get(f"{base}/readyz").status_code == 200, "ready again without a restart"
    finally:
        relay.stop()
        ctx.db.dispose()


def test_readyz_503_when_the_sqlite_volume_is_gone(sqlite_template: Path, tmp_path: Path) -> None:
    """A SQLite file whose volume (directory) went away: /readyz answers 503 with the reason."""
    (tmp_path / "volume").mkdir()
    shutil.copy(sqlite_template, tmp_path / "volume" / "keel.db")
    url = f"sqlite:///{tmp_path / 'volume' / 'keel.db'}"
    ctx = Context(db=Database(url), actor=SYSTEM_ACTOR, settings=Settings(database_url=url))
    try:
        with serving(create_app(ctx)) as base:
            assert httpx.get(f"{base}/readyz").status_code == 200, "ready before the volume went away"
            ctx.db.dispose()  # the pool's open connections would keep the unlinked file readable
            shutil.rmtree(tmp_path / "volume")
            assert httpx.get(f"{base}/healthz").status_code == 200
            _assert_unreachable(httpx.get(f"{base}/readyz"), "cannot open the database file")
    finally:
        ctx.db.dispose()
